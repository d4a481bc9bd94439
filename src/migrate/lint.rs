//! Unsafe statements in a migration, flagged with the safe form: squawk-linter's
//! migration-safety rules (reused, not rewritten; see `parse` for the choice), run on the
//! same parse as `plan`. Only the rules about locks, scans, rewrites and how `migrate
//! apply` runs a file are used; squawk's style and compatibility rules (prefer-text-field,
//! renaming-column, ban-drop-column, …) judge other things than what a DBA asks of `plan`.
//!
//! A flag never refuses `apply`: `plan` and `apply --dry-run` show it with a severity
//! (`high`: the table has 10,000 rows or more, or 16 MiB, or its size is unknown, or the
//! statement cannot run as written; `low`: a small table, or one a pending migration
//! creates), and the person decides.

use crate::migrate::files::MigrationFile;
use crate::migrate::parse;
use serde::Serialize;
use squawk_linter::{Linter, Rule};
use squawk_syntax::SourceFile;

/// One flagged statement.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Flag {
    /// Index into the migration's statements (as `plan` lists them).
    pub statement: usize,
    /// squawk's rule name, e.g. `require-concurrent-index-creation`.
    pub rule: String,
    /// `high` or `low` (set by `plan` from the table's size; see the module comment).
    pub severity: String,
    /// What is unsafe (squawk's message).
    pub message: String,
    /// What to write instead.
    pub safe_form: String,
    /// The statement rewritten by squawk's own fix, when it has one.
    pub fixed_sql: Option<String>,
}

/// The rules used, with the safe form `plan` prints for each.
const RULES: &[(Rule, &str)] = &[
    (
        Rule::RequireConcurrentIndexCreation,
        "CREATE INDEX CONCURRENTLY, in a migration whose first line is `-- pg-integrity: no-transaction` (writes go on while it builds)",
    ),
    (
        Rule::RequireConcurrentIndexDeletion,
        "DROP INDEX CONCURRENTLY, in a no-transaction migration",
    ),
    (
        Rule::BanConcurrentIndexCreationInTransaction,
        "put the CONCURRENTLY statement in its own migration whose first line is `-- pg-integrity: no-transaction` (it cannot run inside a transaction)",
    ),
    (
        Rule::ConstraintMissingNotValid,
        "ADD CONSTRAINT … NOT VALID (no scan, brief lock), then ALTER TABLE … VALIDATE CONSTRAINT … in a later transaction (scans under SHARE UPDATE EXCLUSIVE: reads and writes go on)",
    ),
    (
        Rule::AddingForeignKeyConstraint,
        "ADD CONSTRAINT … FOREIGN KEY … NOT VALID, then VALIDATE CONSTRAINT in a later transaction",
    ),
    (
        Rule::AddingFieldWithDefault,
        "ADD COLUMN without the volatile default (or with a constant one: no rewrite on PostgreSQL 11+), backfill in batches, then ALTER COLUMN … SET DEFAULT",
    ),
    (
        Rule::AddingNotNullableField,
        "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT c (a later transaction); then SET NOT NULL (no scan on PostgreSQL 12+) and DROP CONSTRAINT c",
    ),
    (
        Rule::AddingRequiredField,
        "ADD COLUMN as nullable or with a constant default, backfill, then add NOT NULL as a validated CHECK",
    ),
    (
        Rule::ChangingColumnType,
        "add a column of the new type, backfill it in batches, switch reads and writes, then drop the old column (a type change rewrites the table under ACCESS EXCLUSIVE unless the types are binary-coercible)",
    ),
    (
        Rule::DisallowedUniqueConstraint,
        "CREATE UNIQUE INDEX CONCURRENTLY (no-transaction migration), then ADD CONSTRAINT … UNIQUE USING INDEX",
    ),
    (
        Rule::AddingSerialPrimaryKeyField,
        "CREATE UNIQUE INDEX CONCURRENTLY (no-transaction migration), then ADD CONSTRAINT … PRIMARY KEY USING INDEX",
    ),
    (
        Rule::RequireConcurrentReindex,
        "REINDEX … CONCURRENTLY, in a no-transaction migration",
    ),
    (
        Rule::RequireConcurrentPartitionDetach,
        "DETACH PARTITION … CONCURRENTLY, in a no-transaction migration",
    ),
];

/// Flags of one migration's statements, for a server of major version `pg_major`
/// (severity `high` until `plan` knows the table's size).
pub fn lint(m: &MigrationFile, pg_major: u32) -> Vec<Flag> {
    let parse = SourceFile::parse(&m.sql);
    let mut linter = Linter::from(RULES.iter().map(|(r, _)| *r));
    if let Ok(v) = format!("{pg_major}").parse() {
        linter.settings.pg_version = v;
    }
    // refinery runs a transactional migration as one transaction.
    linter.settings.assume_in_transaction = !m.no_transaction;
    let statements = parse::statements(&m.sql);
    let mut out = vec![];
    for v in linter.lint(&parse, &m.sql) {
        let at = usize::from(v.text_range.start());
        let Some(i) = statements
            .iter()
            .rposition(|s| s.start <= at)
            .or((!statements.is_empty()).then_some(0))
        else {
            continue;
        };
        let s = &statements[i];
        let fixed_sql = v.fix.as_ref().and_then(|f| {
            let mut text = s.sql.clone();
            // Edits from the last to the first, so earlier offsets stay right.
            let mut edits = f.edits.clone();
            edits.sort_by_key(|e| std::cmp::Reverse(e.text_range.start()));
            for e in edits {
                let a = usize::from(e.text_range.start()).checked_sub(s.start)?;
                let b = usize::from(e.text_range.end()).checked_sub(s.start)?;
                if b > text.len() || !text.is_char_boundary(a) || !text.is_char_boundary(b) {
                    return None;
                }
                text.replace_range(a..b, e.text.as_deref().unwrap_or(""));
            }
            Some(text)
        });
        let safe_form = RULES.iter().find(|(r, _)| *r == v.code).map_or_else(
            || v.help.clone().unwrap_or_default(),
            |(_, f)| f.to_string(),
        );
        out.push(Flag {
            statement: i,
            rule: v.code.to_string(),
            severity: "high".into(),
            message: v.message.clone(),
            safe_form,
            fixed_sql,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sql: &str, no_transaction: bool) -> MigrationFile {
        let mut m = crate::migrate::files::embedded().unwrap().remove(0);
        m.sql = sql.to_string();
        m.no_transaction = no_transaction;
        m
    }

    fn rules(sql: &str) -> Vec<(usize, String)> {
        lint(&file(sql, false), 15)
            .into_iter()
            .map(|f| (f.statement, f.rule))
            .collect()
    }

    #[test]
    fn the_issue_examples_are_flagged_with_the_safe_form() {
        let sql = "create index t_a on t (a);\n\
                   alter table t add column b uuid default gen_random_uuid();\n\
                   alter table t alter column c set not null;\n\
                   alter table t alter column d type bigint;\n\
                   alter table t add constraint k check (a > 0);\n\
                   alter table t add constraint f foreign key (p) references p (id);";
        let got = rules(sql);
        for (i, r) in [
            (0, "require-concurrent-index-creation"),
            (1, "adding-field-with-default"),
            (2, "adding-not-nullable-field"),
            (3, "changing-column-type"),
            (4, "constraint-missing-not-valid"),
            (5, "constraint-missing-not-valid"),
        ] {
            assert!(got.contains(&(i, r.to_string())), "{r} at {i}: {got:?}");
        }
        let f = lint(&file("create index t_a on t (a)", false), 15);
        assert_eq!(
            f[0].fixed_sql.as_deref(),
            Some("create index concurrently t_a on t (a)")
        );
        assert!(f[0].safe_form.contains("CONCURRENTLY"));
    }

    #[test]
    fn the_safe_forms_are_not_flagged() {
        let sql = "alter table t add column b int default 0;\n\
                   alter table t add constraint k check (c is not null) not valid;";
        assert_eq!(rules(sql), vec![]);
        let nt =
            "-- pg-integrity: no-transaction\ncreate index concurrently if not exists t_a on t (a)";
        assert_eq!(lint(&file(nt, true), 15), vec![]);
        // In a transactional migration CONCURRENTLY cannot run at all (squawk's rule
        // leaves a one-statement file alone: tools that run such a file outside a
        // transaction exist; refinery is not one of them, and apply says so when it fails).
        let got = rules("select 1; create index concurrently t_a on t (a)");
        assert_eq!(
            got,
            vec![(
                1,
                "ban-concurrent-index-creation-in-transaction".to_string()
            )]
        );
    }
}

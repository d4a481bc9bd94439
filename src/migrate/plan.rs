//! `plan` and `apply --dry-run`: the pending migrations, statement by statement, with
//! the lock each takes and on which table, whether it scans or rewrites it, the table's
//! size and estimated rows, and every migration's preflight verdict. Changes nothing.
//! The JSON form is a stable contract (docs/plan-format.md).

use crate::migrate::files::{MigrateError, MigrationFile};
use crate::migrate::lint::{self, Flag};
use crate::migrate::locks::{blocks, migration_rules, statement_locks, summary, table_key};
use crate::migrate::parse::name_text;
use crate::migrate::{parse, preflight};
use serde::Serialize;
use squawk_syntax::ast::{self, AstNode};
use std::collections::HashMap;
use tokio_postgres::Client;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub format_version: u32,
    /// Some preflight would refuse: `apply` would change nothing and fail.
    pub refused: bool,
    /// Every transaction of every migration locks one table (SPEC §7): true; some
    /// transaction locks more: false; some statement's lock is unknown: null.
    pub one_table_per_transaction: Option<bool>,
    pub migrations: Vec<PlannedMigration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedMigration {
    pub version: u32,
    pub name: String,
    /// `V{version}__{name}`.
    pub label: String,
    /// false: run statement by statement outside a transaction.
    pub transaction: bool,
    /// Why preflight would refuse it (null: it would not).
    pub preflight_refusal: Option<String>,
    pub statements: Vec<PlannedStatement>,
    /// Unsafe statements, with the safe form (squawk-linter's rules; see `migrate::lint`).
    /// They do not refuse `apply`.
    pub flags: Vec<Flag>,
    /// The transactions it runs, in order (one for a transactional migration).
    pub transactions: Vec<PlannedTransaction>,
}

/// One transaction of a migration and what the one-table rule says of it.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedTransaction {
    /// Indexes into `statements` (a `BEGIN … COMMIT` block's own BEGIN and COMMIT excluded).
    pub statements: Vec<usize>,
    /// An explicit `BEGIN; … COMMIT;` block of a no-transaction migration.
    pub block: bool,
    /// true: it locks one table beyond ACCESS SHARE (a foreign key's parent allowed);
    /// false: more; null: a statement's lock is unknown.
    pub one_table: Option<bool>,
    /// The tables it locks beyond ACCESS SHARE, with the strongest mode on each.
    pub tables: Vec<AlsoLocks>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedStatement {
    pub sql: String,
    /// e.g. `create_index_concurrently`; `unknown` when not recognised.
    pub kind: String,
    pub table: Option<String>,
    /// The lock mode taken on `table`, e.g. `SHARE UPDATE EXCLUSIVE`.
    pub lock: Option<String>,
    /// What that lock keeps waiting: `reads and writes`, `writes`, `neither reads nor writes`.
    pub blocks: Option<String>,
    /// A second table locked (a foreign key's parent), with its mode.
    pub also_locks: Option<AlsoLocks>,
    pub scans: bool,
    pub rewrites: bool,
    /// `pg_total_relation_size` of `table`, when it exists now.
    pub table_bytes: Option<i64>,
    /// `pg_class.reltuples` of `table` (-1 or 0: never analyzed), when it exists now.
    pub estimated_rows: Option<i64>,
    /// Why the lock is unknown (`kind` = `unknown`): the parser's error, or what cannot be
    /// read from the text.
    pub unknown_because: Option<String>,
    /// Every lock it takes: one entry per ALTER TABLE action, foreign key parent, or
    /// statement a DO block runs (the fields above are its strongest).
    pub locks: Vec<ActionLock>,
}

/// One lock of a statement (one action of it).
#[derive(Debug, Clone, Serialize)]
pub struct ActionLock {
    pub kind: String,
    pub table: Option<String>,
    pub lock: Option<String>,
    pub also_locks: Option<AlsoLocks>,
    pub scans: bool,
    pub rewrites: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlsoLocks {
    pub table: String,
    pub lock: String,
}

async fn size(client: &Client, table: &str) -> (Option<i64>, Option<i64>) {
    let row = client
        .query_opt(
            "select pg_total_relation_size(c.oid), c.reltuples::bigint
             from pg_class c where c.oid = to_regclass($1)",
            &[&table],
        )
        .await;
    match row {
        Ok(Some(r)) => (r.get(0), r.get(1)),
        _ => (None, None),
    }
}

/// The plan of `pending` (in order), every preflight run first.
pub async fn plan(client: &Client, pending: &[&MigrationFile]) -> Result<Plan, MigrateError> {
    // The database's foreign keys, carried forward through the pending migrations: what a
    // later one's DROP CONSTRAINT locks depends on the keys the earlier ones add or drop.
    let mut fks = foreign_keys(client).await?;
    let pg_major: u32 = client
        .query_one(
            "select current_setting('server_version_num')::int / 10000",
            &[],
        )
        .await?
        .get::<_, i32>(0)
        .try_into()
        .unwrap_or(15);
    let mut migrations = vec![];
    for m in pending {
        let preflight_refusal = match preflight::check(client, m).await {
            Ok(()) => None,
            Err(MigrateError::Preflight { details, .. }) => Some(details.trim().to_string()),
            Err(e) => Some(format!("preflight could not run: {e}")),
        };
        let mut statements = vec![];
        for sql in parse::split(&m.sql) {
            let all = statement_locks(&sql);
            let c = summary(&all);
            let (table_bytes, estimated_rows) = match &c.table {
                Some(t) => size(client, t).await,
                None => (None, None),
            };
            statements.push(PlannedStatement {
                kind: c.kind.to_string(),
                table: c.table.clone(),
                lock: c.lock.map(str::to_string),
                blocks: c.lock.map(|l| blocks(l).to_string()),
                also_locks: c.also.map(|(table, lock)| AlsoLocks {
                    table,
                    lock: lock.to_string(),
                }),
                scans: c.scans,
                rewrites: c.rewrites,
                table_bytes,
                estimated_rows,
                unknown_because: c.unknown_because.clone(),
                locks: all
                    .into_iter()
                    .map(|a| ActionLock {
                        kind: a.kind.to_string(),
                        table: a.table,
                        lock: a.lock.map(str::to_string),
                        also_locks: a.also.map(|(table, lock)| AlsoLocks {
                            table,
                            lock: lock.to_string(),
                        }),
                        scans: a.scans,
                        rewrites: a.rewrites,
                    })
                    .collect(),
                sql,
            });
        }
        let mut flags = lint::lint(m, pg_major);
        for f in &mut flags {
            f.severity = severity(&f.rule, statements.get(f.statement)).into();
        }
        let changes = fk_changes(&m.sql);
        // Its own transactions see the keys it adds too (a key added, then dropped later in
        // the same no-transaction migration).
        let mut seen = fks.clone();
        carry_forward(
            &mut seen,
            changes
                .iter()
                .filter(|c| matches!(c, FkChange::Added { .. })),
        );
        let transactions = planned_transactions(m, &statements, &seen);
        carry_forward(&mut fks, changes.iter());
        migrations.push(PlannedMigration {
            transactions,
            version: m.version,
            name: m.name.clone(),
            label: m.label(),
            transaction: !m.no_transaction,
            preflight_refusal,
            statements,
            flags,
        });
    }
    let rules: Vec<Option<bool>> = migrations
        .iter()
        .flat_map(|m| m.transactions.iter().map(|t| t.one_table))
        .collect();
    let one_table_per_transaction = if rules.contains(&Some(false)) {
        Some(false)
    } else if rules.contains(&None) {
        None
    } else {
        Some(true)
    };
    Ok(Plan {
        format_version: FORMAT_VERSION,
        one_table_per_transaction,
        refused: migrations.iter().any(|m| m.preflight_refusal.is_some()),
        migrations,
    })
}

/// A flag's severity (see `migrate::lint`): `high` on a table of 10,000 rows or 16 MiB or
/// more, or of unknown size, or when the statement cannot run as written; `low` on a
/// smaller table or one that does not exist yet.
fn severity(rule: &str, s: Option<&PlannedStatement>) -> &'static str {
    if rule == "ban-concurrent-index-creation-in-transaction" {
        return "high";
    }
    let Some(s) = s else { return "high" };
    if s.table.is_some() && s.table_bytes.is_none() {
        return "low"; // created by a pending migration: empty when this one runs
    }
    match (s.estimated_rows, s.table_bytes) {
        (Some(r), Some(b)) if r < 10_000 && b < 16 << 20 => "low",
        _ => "high",
    }
}

/// The database's foreign keys: (table, constraint) -> parent, for what dropping one locks.
pub async fn foreign_keys(
    client: &Client,
) -> Result<HashMap<(String, String), String>, MigrateError> {
    let rows = client
        .query(
            "select conrelid::regclass::text, conname::text, confrelid::regclass::text
             from pg_constraint where contype = 'f'",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                (table_key(&r.get::<_, String>(0)), r.get::<_, String>(1)),
                r.get::<_, String>(2),
            )
        })
        .collect())
}

/// A change a migration makes to the foreign keys, as `plan` carries them forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FkChange {
    /// A key added (its name as written, or PostgreSQL's default `<table>_<columns>_fkey`).
    Added {
        table: String,
        constraint: String,
        parent: String,
    },
    /// A constraint dropped (a foreign key or not).
    Dropped { table: String, constraint: String },
    /// A table dropped, with its keys.
    TableDropped { table: String },
}

/// The foreign keys a migration adds and drops, in order, read from its statements' trees:
/// `ALTER TABLE … ADD [CONSTRAINT] … FOREIGN KEY`, `ADD COLUMN … REFERENCES`,
/// `CREATE TABLE` with either, `DROP CONSTRAINT`, `DROP TABLE`. Statements the parser
/// cannot read, and `DO` blocks, change nothing here.
pub fn fk_changes(sql: &str) -> Vec<FkChange> {
    use ast::AlterTableAction as A;
    let mut out = vec![];
    for s in parse::trees(sql) {
        match s {
            ast::Stmt::CreateTable(t) => {
                let Some(table) = t.table_name().and_then(|n| n.path()) else {
                    continue;
                };
                let table = name_text(table.syntax());
                for c in t.syntax().descendants().filter_map(ast::Constraint::cast) {
                    let column = c
                        .syntax()
                        .ancestors()
                        .find_map(ast::Column::cast)
                        .and_then(|col| col.name())
                        .map(|n| name_text(n.syntax()));
                    out.extend(fk_added(&table, &c, column));
                }
            }
            ast::Stmt::AlterTable(a) => {
                let Some(table) = a
                    .table_relation_name()
                    .and_then(|t| t.table_name_ref())
                    .map(|t| name_text(t.syntax()))
                else {
                    continue;
                };
                for action in a.actions() {
                    match action {
                        A::AddConstraint(add) => {
                            if let Some(c) = add.constraint() {
                                out.extend(fk_added(&table, &c, None));
                            }
                        }
                        A::AddColumn(col) => {
                            let column = col.column_name().map(|n| name_text(n.syntax()));
                            for c in col.constraints() {
                                out.extend(fk_added(&table, &c, column.clone()));
                            }
                        }
                        A::DropConstraint(d) => {
                            if let Some(n) = d.constraint_name_ref() {
                                out.push(FkChange::Dropped {
                                    table: table.clone(),
                                    constraint: name_text(n.syntax()),
                                });
                            }
                        }
                        _ => {}
                    }
                }
            }
            ast::Stmt::DropTable(d) => {
                for t in d.table_name_refs() {
                    out.push(FkChange::TableDropped {
                        table: name_text(t.syntax()),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// A foreign key `c` adds to `table` (`column`: the column it is written on, for a
/// `REFERENCES` column constraint).
fn fk_added(table: &str, c: &ast::Constraint, column: Option<String>) -> Option<FkChange> {
    let (name, columns, parent) = match c {
        ast::Constraint::ForeignKeyConstraint(f) => (
            f.constraint_name_clause(),
            f.from_columns()
                .map(|l| {
                    l.column_name_refs()
                        .map(|n| name_text(n.syntax()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
            f.table_name_ref()?,
        ),
        ast::Constraint::ReferencesConstraint(r) => (
            r.constraint_name_clause(),
            column.into_iter().collect(),
            r.table()?,
        ),
        _ => return None,
    };
    let constraint = match name.and_then(|n| n.constraint_name()) {
        Some(n) => name_text(n.syntax()),
        None => {
            // PostgreSQL's default name; a longer one is truncated in ways not followed here.
            let rel = table_key(table);
            let rel = rel.rsplit('.').next().unwrap_or_default().to_string();
            let cols: Vec<String> = columns.iter().map(|c| table_key(c)).collect();
            let n = format!("{rel}_{}_fkey", cols.join("_"));
            if columns.is_empty() || n.len() > 63 {
                return None;
            }
            format!("\"{}\"", n.replace('"', "\"\""))
        }
    };
    Some(FkChange::Added {
        table: table.to_string(),
        constraint,
        parent: name_text(parent.syntax()),
    })
}

/// Apply `changes` to a (table, constraint) -> parent map (keys as [`table_key`] gives them).
fn carry_forward<'a>(
    fks: &mut HashMap<(String, String), String>,
    changes: impl Iterator<Item = &'a FkChange>,
) {
    for c in changes {
        match c {
            FkChange::Added {
                table,
                constraint,
                parent,
            } => {
                fks.insert((table_key(table), table_key(constraint)), parent.clone());
            }
            FkChange::Dropped { table, constraint } => {
                fks.remove(&(table_key(table), table_key(constraint)));
            }
            FkChange::TableDropped { table } => {
                let t = table_key(table);
                fks.retain(|(child, _), _| *child != t);
            }
        }
    }
}

fn planned_transactions(
    m: &MigrationFile,
    statements: &[PlannedStatement],
    fks: &HashMap<(String, String), String>,
) -> Vec<PlannedTransaction> {
    let lookup = |t: &str, c: &str| fks.get(&(table_key(t), table_key(c))).cloned();
    let rules = match migration_rules(&m.sql, m.no_transaction, &lookup) {
        Ok(r) => r,
        Err(e) => {
            return vec![PlannedTransaction {
                statements: (0..statements.len()).collect(),
                block: false,
                one_table: Some(false),
                tables: vec![],
                reason: Some(e),
            }]
        }
    };
    // Statements in file order: map each transaction's statements back to their index.
    let mut next = 0;
    rules
        .into_iter()
        .map(|(t, rule)| {
            let mut idx = vec![];
            for s in &t.statements {
                while next < statements.len() && statements[next].sql != *s {
                    next += 1;
                }
                if next < statements.len() {
                    idx.push(next);
                    next += 1;
                }
            }
            PlannedTransaction {
                statements: idx,
                block: t.block,
                one_table: rule.one_table,
                tables: rule
                    .tables
                    .into_iter()
                    .map(|(table, lock)| AlsoLocks {
                        table,
                        lock: lock.to_string(),
                    })
                    .collect(),
                reason: rule.reason,
            }
        })
        .collect()
}

/// One comment line saying what a statement locks and does.
pub fn describe(s: &PlannedStatement) -> String {
    let Some(lock) = &s.lock else {
        return match s.kind.as_str() {
            "unknown" => format!(
                "-- lock: unknown ({})",
                s.unknown_because
                    .as_deref()
                    .unwrap_or("statement not recognised")
            ),
            _ => format!("-- {}: locks no existing table", s.kind),
        };
    };
    let mut out = format!(
        "-- {}: {lock} on {} (blocks {})",
        s.kind,
        s.table.as_deref().unwrap_or("?"),
        s.blocks.as_deref().unwrap_or("?")
    );
    if let Some(a) = &s.also_locks {
        out.push_str(&format!(", {} on {}", a.lock, a.table));
    }
    out.push_str(if s.rewrites {
        "; rewrites the table"
    } else if s.scans {
        "; scans the table"
    } else {
        "; no scan"
    });
    if let (Some(b), Some(r)) = (s.table_bytes, s.estimated_rows) {
        out.push_str(&format!("; {} bytes, ~{} rows", b, r.max(0)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_keys_are_carried_forward_through_pending_migrations() {
        let mut fks: HashMap<(String, String), String> = HashMap::new();
        fks.insert(("old".into(), "old_p_fkey".into()), "p".into());
        let v1 = "create table public.c (id int primary key, p_id int references p, q_id int, \
                  constraint \"C_Q\" foreign key (q_id) references q (id));\n\
                  alter table d add constraint d_p foreign key (p_id) references public.p not valid, \
                  add column e_id int references e;\n\
                  alter table old drop constraint old_p_fkey;\n\
                  drop table gone;";
        let changes = fk_changes(v1);
        assert_eq!(changes.len(), 6, "{changes:#?}");
        carry_forward(&mut fks, changes.iter());
        let get = |t: &str, c: &str| fks.get(&(table_key(t), table_key(c))).cloned();
        assert_eq!(get("c", "c_p_id_fkey"), Some("p".into()));
        assert_eq!(get("public.c", "\"C_Q\""), Some("q".into()));
        assert_eq!(get("c", "c_q"), None, "a quoted name keeps its case");
        assert_eq!(get("d", "D_P"), Some("public.p".into()));
        assert_eq!(get("d", "d_e_id_fkey"), Some("e".into()));
        assert_eq!(get("old", "old_p_fkey"), None);
        // What a later migration's DROP CONSTRAINT of a key added before it locks.
        let m = MigrationFile {
            sql: "alter table d drop constraint d_p; alter table d add column z int;".into(),
            no_transaction: false,
            ..crate::migrate::files::embedded().unwrap().remove(0)
        };
        let before = planned_transactions(&m, &statements_of(&m.sql), &HashMap::new());
        assert_eq!(before[0].one_table, Some(true), "{before:?}");
        let after = planned_transactions(&m, &statements_of(&m.sql), &fks);
        assert_eq!(after[0].one_table, Some(false), "{after:?}");
        assert!(
            after[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("parent p ACCESS EXCLUSIVE"),
            "{after:?}"
        );
    }

    fn statements_of(sql: &str) -> Vec<PlannedStatement> {
        parse::split(sql)
            .into_iter()
            .map(|sql| PlannedStatement {
                sql,
                kind: String::new(),
                table: None,
                lock: None,
                blocks: None,
                also_locks: None,
                scans: false,
                rewrites: false,
                table_bytes: None,
                estimated_rows: None,
                unknown_because: None,
                locks: vec![],
            })
            .collect()
    }
}

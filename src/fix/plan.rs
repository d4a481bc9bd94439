//! From findings and their checks' `[fix]` templates to migrations, following SPEC §7:
//! steps in order (every finding's step k before any step k+1, so a constraint is
//! validated in a later migration than the one that added it NOT VALID); a step that
//! runs in a transaction is one migration per finding (one table locked per
//! transaction); a no-transaction step gathers every finding's statements into one
//! migration run statement by statement; a finding that needs a person's decision gets
//! migrations of its own, the first one carrying the data query and a `-- TODO`.

use crate::checks::catalog::Check;
use crate::fix::fill::{elements, fill, truthy, Fields};
use std::collections::BTreeSet;

/// The line that makes `migrate apply` (preflight) refuse a migration until a person
/// has edited it.
pub const TODO_MARK: &str = "-- TODO(pg-integrity):";

/// The first line of a migration run outside a transaction (src/migrate/files.rs).
pub const NO_TRANSACTION_MARK: &str = "-- pg-integrity: no-transaction";

/// A finding `fix` will write migrations for.
#[derive(Debug, Clone)]
pub struct Fixable {
    pub object: String,
    pub fields: Fields,
    /// The decision a person must take first: (what to decide, the data query, what it found).
    pub todo: Option<Todo>,
}

#[derive(Debug, Clone)]
pub struct Todo {
    pub what: String,
    pub query: String,
    pub found: String,
}

/// A finding left to a person, with why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Manual {
    pub check: String,
    pub object: String,
    pub why: String,
}

/// One migration to write (its version is given when it is written).
#[derive(Debug, Clone)]
pub struct Planned {
    pub name: String,
    pub check: String,
    pub no_transaction: bool,
    pub objects: Vec<String>,
    /// The whole file, header included.
    pub sql: String,
    pub todo: bool,
}

/// A finding with the statements of each of its check's steps.
type FilledFinding<'a> = (&'a Fixable, Vec<Vec<String>>);

/// The migrations for `checks` (in report order), each with its fixable findings.
/// A finding whose template cannot be filled goes to `manual`.
pub fn plan(checks: &[(&Check, Vec<Fixable>)], manual: &mut Vec<Manual>) -> Vec<Planned> {
    // Fill every step of every finding first: a finding with a step that cannot be
    // filled is left to a person as a whole, never half-fixed.
    let mut filled: Vec<(&Check, Vec<FilledFinding>)> = vec![];
    for (check, findings) in checks {
        let Some(fix) = &check.fix else { continue };
        let mut ok = vec![];
        for f in findings {
            let steps: Result<Vec<Vec<String>>, String> = fix
                .steps
                .iter()
                .map(|s| match (&s.when, &s.each) {
                    (Some(w), _) if !truthy(&f.fields, w) => Ok(vec![]),
                    (_, Some(each)) => elements(&f.fields, each)
                        .into_iter()
                        .map(|e| {
                            let mut one = f.fields.clone();
                            one.insert(each.clone(), e);
                            fill(&s.sql, &f.object, &one).map(|sql| sql.trim().to_string())
                        })
                        .collect(),
                    _ => fill(&s.sql, &f.object, &f.fields).map(|sql| vec![sql.trim().to_string()]),
                })
                .collect();
            match steps {
                Ok(steps) => ok.push((f, steps)),
                Err(e) => manual.push(Manual {
                    check: check.id.clone(),
                    object: f.object.clone(),
                    why: format!("its fix could not be written: {e}"),
                }),
            }
        }
        filled.push((check, ok));
    }
    let depth = filled
        .iter()
        .filter_map(|(c, _)| c.fix.as_ref().map(|f| f.steps.len()))
        .max()
        .unwrap_or(0);
    let mut seen = BTreeSet::new();
    let mut out = vec![];
    let mut todo_written = BTreeSet::new();
    for k in 0..depth {
        for (check, findings) in &filled {
            let Some(fix) = &check.fix else { continue };
            let Some(step) = fix.steps.get(k) else {
                continue;
            };
            let mut gathered: Vec<(String, String)> = vec![];
            for (f, steps) in findings {
                // The same statement from two checks (or findings) is written once.
                let stmts: Vec<String> = steps
                    .get(k)
                    .into_iter()
                    .flatten()
                    .filter(|sql| seen.insert(normalise(sql)))
                    .cloned()
                    .collect();
                if stmts.is_empty() {
                    continue;
                }
                let own = f.todo.is_some() || step.transaction;
                if !own {
                    gathered.extend(stmts.into_iter().map(|s| (f.object.clone(), s)));
                    continue;
                }
                let todo = f
                    .todo
                    .as_ref()
                    .filter(|_| todo_written.insert((check.id.clone(), f.object.clone())));
                out.push(Planned {
                    name: format!("{}_{}", fix.name, label(&f.object)),
                    check: check.id.clone(),
                    no_transaction: !step.transaction,
                    objects: vec![f.object.clone()],
                    sql: file_text(
                        check,
                        !step.transaction,
                        std::slice::from_ref(&f.object),
                        todo,
                        &stmts,
                    ),
                    todo: todo.is_some(),
                });
            }
            if !gathered.is_empty() {
                let mut objects: Vec<String> = gathered.iter().map(|(o, _)| o.clone()).collect();
                objects.dedup();
                let stmts: Vec<String> = gathered.into_iter().map(|(_, s)| s).collect();
                out.push(Planned {
                    name: format!("{}_{}", fix.name, k + 1),
                    check: check.id.clone(),
                    no_transaction: true,
                    sql: file_text(check, true, &objects, None, &stmts),
                    objects,
                    todo: false,
                });
            }
        }
    }
    out
}

fn normalise(sql: &str) -> String {
    sql.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// A file-name-safe label for an object: `public.order_items.x` → `order_items_x`.
pub fn label(object: &str) -> String {
    let tail = object.split_once('.').map_or(object, |(_, t)| t);
    let mut s: String = tail
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    let s = s.trim_matches('_');
    s.chars()
        .take(48)
        .collect::<String>()
        .trim_end_matches('_')
        .to_string()
}

fn comment(text: &str) -> String {
    text.lines()
        .map(|l| format!("--   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn file_text(
    check: &Check,
    no_transaction: bool,
    objects: &[String],
    todo: Option<&Todo>,
    stmts: &[String],
) -> String {
    let summary = check.fix.as_ref().map_or("", |f| f.summary.as_str());
    let mut s = String::new();
    if no_transaction {
        s.push_str(NO_TRANSACTION_MARK);
        s.push('\n');
    }
    s.push_str(&format!(
        "-- Written by `pg-integrity fix` for {}: {}\n",
        check.id,
        summary.replace('\n', " ")
    ));
    s.push_str(&format!(
        "-- Fixes: {}\n",
        objects.join(", ").replace('\n', " ")
    ));
    if no_transaction {
        s.push_str("-- Outside a transaction, statement by statement: each locks one table, and each is safe to re-run.\n");
    } else {
        s.push_str("-- One transaction, one table locked (a foreign key's parent at SHARE ROW EXCLUSIVE).\n");
    }
    if let Some(t) = todo {
        s.push_str(&format!(
            "{TODO_MARK} {}\n-- `pg-integrity migrate apply` refuses this file until a person has decided, acted, and deleted the TODO line.\n-- The rows to decide about ({} when this file was written):\n{}\n",
            t.what.replace('\n', " "),
            t.found.replace('\n', " "),
            comment(&t.query)
        ));
    }
    s.push('\n');
    for st in stmts {
        s.push_str(st.trim_end().trim_end_matches(';'));
        s.push_str(";\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::catalog::Catalog;

    fn finding(object: &str, table: &str, todo: bool) -> Fixable {
        let fields: Fields = [
            ("table", table),
            ("column", "\"status\""),
            ("check", "t_status_not_null"),
            ("add_check", "true"),
            ("set_not_null", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Fixable {
            object: object.into(),
            fields,
            todo: todo.then(|| Todo {
                what: "decide".into(),
                query: "select count(*)\nfrom t".into(),
                found: "2 found".into(),
            }),
        }
    }

    #[test]
    fn steps_are_ordered_split_by_table_and_a_decision_is_a_todo() {
        let catalog = Catalog::load(&[] as &[&std::path::Path]).unwrap();
        let check = &catalog.checks["schema.not_null"];
        let mut manual = vec![];
        let planned = plan(
            &[(
                check,
                vec![
                    finding("public.a.status", "public.a", false),
                    finding("public.b.status", "public.b", false),
                    finding("public.c.status", "public.c", true),
                ],
            )],
            &mut manual,
        );
        assert!(manual.is_empty(), "{manual:?}");
        let names: Vec<&str> = planned.iter().map(|m| m.name.as_str()).collect();
        // step 1 (in a transaction): one migration per table; then the no-transaction
        // steps gathered, except the finding waiting for a decision, which has its own
        assert_eq!(
            names,
            [
                "not_null_a_status",
                "not_null_b_status",
                "not_null_c_status",
                "not_null_c_status",
                "not_null_2",
                "not_null_c_status",
                "not_null_3",
                "not_null_c_status",
                "not_null_4"
            ]
        );
        assert!(planned[0].sql.contains(
            "add constraint t_status_not_null check (\"status\" is not null) not valid;"
        ));
        assert!(!planned[0].no_transaction && planned[4].no_transaction);
        assert!(planned[4].sql.starts_with(NO_TRANSACTION_MARK));
        assert_eq!(planned[4].objects, ["public.a.status", "public.b.status"]);
        assert!(planned[2].todo && planned[2].sql.contains(TODO_MARK));
        assert!(planned[2].sql.contains("--   select count(*)\n--   from t"));
        assert!(
            !planned[3].todo,
            "the TODO is written once, in the first migration"
        );
    }

    #[test]
    fn a_field_missing_leaves_the_whole_finding_to_a_person() {
        let catalog = Catalog::load(&[] as &[&std::path::Path]).unwrap();
        let check = &catalog.checks["schema.not_null"];
        let mut f = finding("public.a.status", "public.a", false);
        f.fields.remove("column");
        let mut manual = vec![];
        let planned = plan(&[(check, vec![f])], &mut manual);
        assert!(planned.is_empty());
        assert!(manual[0].why.contains("fix_column"), "{manual:?}");
    }

    #[test]
    fn labels_are_file_name_safe() {
        assert_eq!(label("public.Order Items.\"x\""), "order_items_x");
    }
}

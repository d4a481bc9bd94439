//! From findings and their checks' `[fix]` templates to migrations, following SPEC §7:
//! steps in order (every finding's step k before any step k+1, so a constraint is
//! validated in a later migration than the one that added it NOT VALID); a step that
//! runs in a transaction is one migration per finding (one table locked per
//! transaction); a no-transaction step gathers every finding's statements into one
//! migration run statement by statement; a finding that needs a person's decision gets
//! migrations of its own, the first one carrying the data query and a `-- TODO`.

use crate::checks::catalog::{Check, FixStep};
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
            let steps: Result<Vec<Vec<String>>, String> =
                fix.steps.iter().map(|s| fill_step(s, f)).collect();
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
    // A plain index another fix's index makes redundant (its columns start that one's,
    // on the same table) is not built: e.g. an index on a foreign key's tenant column
    // beside the UNIQUE (tenant, id) a tenant-scoped key needs.
    let all: Vec<&String> = filled
        .iter()
        .flat_map(|(_, fs)| fs.iter().flat_map(|(_, steps)| steps.iter().flatten()))
        .collect();
    let covered = covered_indexes(&all);
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
                    .filter(|sql| !covered.contains(&normalise(sql)))
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
                // In a transaction: one migration per statement (a step repeated with
                // `each` may name another parent table each time); outside one, the
                // finding's statements together.
                let groups: Vec<Vec<String>> = if step.transaction {
                    stmts.into_iter().map(|s| vec![s]).collect()
                } else {
                    vec![stmts]
                };
                for group in groups {
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
                            &group,
                        ),
                        todo: todo.is_some(),
                    });
                }
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

/// One step's statements for one finding: none (`when` is false), one, or one per
/// element of the `each` list. With `each = "keys"`, every field `keys_*` is a list of
/// as many elements, taken element by element too (`{keys_parent}` is the parent of
/// `{keys}`), and `when` is judged per element; lists of other lengths are an error
/// (the finding is left to a person, never half-fixed).
fn fill_step(step: &FixStep, f: &Fixable) -> Result<Vec<String>, String> {
    let Some(each) = &step.each else {
        if step.when.as_ref().is_some_and(|w| !truthy(&f.fields, w)) {
            return Ok(vec![]);
        }
        return fill(&step.sql, &f.object, &f.fields).map(|sql| vec![sql.trim().to_string()]);
    };
    let list = elements(&f.fields, each);
    let prefix = format!("{each}_");
    let parallel: Vec<(&String, Vec<String>)> = f
        .fields
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .map(|k| (k, elements(&f.fields, k)))
        .collect();
    if let Some((k, v)) = parallel.iter().find(|(_, v)| v.len() != list.len()) {
        return Err(format!(
            "the field fix_{k} has {} element(s), fix_{each} {}",
            v.len(),
            list.len()
        ));
    }
    let mut out = vec![];
    for (i, e) in list.into_iter().enumerate() {
        let mut one = f.fields.clone();
        one.insert(each.clone(), e);
        for (k, v) in &parallel {
            one.insert((*k).clone(), v[i].clone());
        }
        if step.when.as_ref().is_some_and(|w| !truthy(&one, w)) {
            continue;
        }
        out.push(fill(&step.sql, &f.object, &one)?.trim().to_string());
    }
    Ok(out)
}

/// (unique, table, columns) of an index statement, normalised.
type IndexShape = (bool, String, Vec<String>);

/// An index statement as the fix templates write it: `create [unique] index
/// concurrently if not exists NAME on TABLE (COLUMNS)`, a plain column list (no
/// expression, WHERE or INCLUDE).
fn index_shape(sql: &str) -> Option<IndexShape> {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^create (unique )?index concurrently if not exists \S+ on (\S+) \(([^()]+)\);?$",
        )
        .expect("a valid regex")
    });
    let n = normalise(sql);
    let c = RE.captures(&n)?;
    let cols = c[3].split(',').map(|x| x.trim().to_string()).collect();
    Some((c.get(1).is_some(), c[2].to_string(), cols))
}

/// The plain index statements (normalised) that another index statement among
/// `stmts` covers: the same table, and its columns start with all of these (an equal
/// plain one: the later is covered).
fn covered_indexes(stmts: &[&String]) -> BTreeSet<String> {
    let shapes: Vec<(String, IndexShape)> = stmts
        .iter()
        .filter_map(|s| index_shape(s).map(|x| (normalise(s), x)))
        .collect();
    let mut out = BTreeSet::new();
    for (i, (sql, (unique, table, cols))) in shapes.iter().enumerate() {
        if *unique {
            continue;
        }
        let by_other = shapes.iter().enumerate().any(|(j, (other, (u2, t2, c2)))| {
            other != sql
                && t2 == table
                && c2.len() >= cols.len()
                && c2[..cols.len()] == cols[..]
                && (*u2 || c2.len() > cols.len() || j < i)
        });
        if by_other {
            out.insert(sql.clone());
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
    fn an_index_another_fix_index_starts_with_is_not_built() {
        let stmts = [
            "create index concurrently if not exists o_t_idx on public.o (tenant_id)".to_string(),
            "create unique index concurrently if not exists o_t_id_key on public.o (tenant_id, id)"
                .to_string(),
            "create index concurrently if not exists p_t_idx on public.p (tenant_id)".to_string(),
            "create index concurrently if not exists p_t2_idx on public.p (tenant_id)".to_string(),
            "create index concurrently if not exists q_a_idx on public.q (a, b)".to_string(),
            "create index concurrently if not exists q_b_idx on public.q (a) where a > 0"
                .to_string(),
        ];
        let refs: Vec<&String> = stmts.iter().collect();
        let covered = covered_indexes(&refs);
        assert_eq!(
            covered,
            BTreeSet::from([normalise(&stmts[0]), normalise(&stmts[3])])
        );
    }

    #[test]
    fn labels_are_file_name_safe() {
        assert_eq!(label("public.Order Items.\"x\""), "order_items_x");
    }
}

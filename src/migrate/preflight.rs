//! Preflight for migrations that add constraints: before touching anything, run
//! the data query matching each constraint the migration adds — orphans for a
//! FOREIGN KEY, violating rows for a CHECK, NULLs for SET NOT NULL, duplicates for
//! a UNIQUE constraint or unique index — and refuse with counts and sample keys.
//!
//! The constraints are read from the migration's own statements (top-level
//! `ALTER TABLE … ADD CONSTRAINT`, `ALTER COLUMN … SET NOT NULL`, `CREATE UNIQUE
//! INDEX`). Table, column and expression text comes from those compiled-in
//! migrations — the same text the migration itself would run — never from users.

use crate::migrate::files::{MigrateError, MigrationFile};
use crate::migrate::sqlsplit;
use regex::Regex;
use tokio_postgres::Client;

const IDENT: &str = r#"(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)"#;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    ForeignKey {
        table: String,
        name: String,
        columns: Vec<String>,
        parent: String,
        parent_columns: Vec<String>,
    },
    Check {
        table: String,
        name: String,
        expr: String,
    },
    NotNull {
        table: String,
        column: String,
    },
    Unique {
        table: String,
        name: String,
        columns: Vec<String>,
    },
}

fn qualified() -> String {
    format!(r"{IDENT}(?:\s*\.\s*{IDENT})?")
}

fn cols(list: &str) -> Vec<String> {
    list.split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

/// The text inside the parenthesis that opens at `open` (balanced, quote-aware enough
/// for CHECK expressions).
fn balanced(s: &str, open: usize) -> Option<&str> {
    let mut depth = 0;
    let mut in_quote = false;
    for (i, ch) in s[open..].char_indices() {
        match ch {
            '\'' => in_quote = !in_quote,
            '(' if !in_quote => depth += 1,
            ')' if !in_quote => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[open + 1..open + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The `-- TODO(pg-integrity):` line `pg-integrity fix` writes into a migration that
/// needs a person's decision; such a migration is refused until the line is deleted.
pub fn todo(sql: &str) -> Option<&str> {
    sql.lines()
        .map(str::trim)
        .find(|l| l.starts_with("-- TODO(pg-integrity):"))
}

/// Constraints a migration adds.
pub fn rules(sql: &str) -> Vec<Rule> {
    let q = qualified();
    let alter = Regex::new(&format!(
        r"(?is)^\s*alter\s+table\s+(?:if\s+exists\s+)?(?:only\s+)?({q})\s+(.*)$"
    ))
    .ok();
    let fk = Regex::new(&format!(
        r"(?is)add\s+constraint\s+({IDENT})\s+foreign\s+key\s*\(([^)]*)\)\s*references\s+({q})\s*(?:\(([^)]*)\))?"
    ))
    .ok();
    let check = Regex::new(&format!(r"(?is)add\s+constraint\s+({IDENT})\s+check\s*\(")).ok();
    let unique = Regex::new(&format!(
        r"(?is)add\s+constraint\s+({IDENT})\s+unique\s*\(([^)]*)\)"
    ))
    .ok();
    let not_null = Regex::new(&format!(
        r"(?is)alter\s+column\s+({IDENT})\s+set\s+not\s+null"
    ))
    .ok();
    let uindex = Regex::new(&format!(
        r"(?is)^\s*create\s+unique\s+index\s+(?:concurrently\s+)?(?:if\s+not\s+exists\s+)?({IDENT})\s+on\s+(?:only\s+)?({q})\s*(?:using\s+\w+\s*)?\(([^()]*)\)\s*(where|;|$)"
    ))
    .ok();
    let (Some(alter), Some(fk), Some(check), Some(unique), Some(not_null), Some(uindex)) =
        (alter, fk, check, unique, not_null, uindex)
    else {
        return vec![];
    };
    let mut out = vec![];
    for stmt in sqlsplit::split(sql) {
        if let Some(c) = uindex.captures(&stmt) {
            // A partial unique index only constrains some rows: not checked here.
            if !c[4].eq_ignore_ascii_case("where") {
                out.push(Rule::Unique {
                    table: c[2].to_string(),
                    name: c[1].to_string(),
                    columns: cols(&c[3]),
                });
            }
            continue;
        }
        let Some(a) = alter.captures(&stmt) else {
            continue;
        };
        let table = a[1].to_string();
        let body = a.get(2).map_or("", |m| m.as_str());
        for c in fk.captures_iter(body) {
            out.push(Rule::ForeignKey {
                table: table.clone(),
                name: c[1].to_string(),
                columns: cols(&c[2]),
                parent: c[3].to_string(),
                parent_columns: c.get(4).map(|m| cols(m.as_str())).unwrap_or_default(),
            });
        }
        for c in check.captures_iter(body) {
            let open = c.get(0).map_or(0, |m| m.end() - 1);
            if let Some(expr) = balanced(body, open) {
                out.push(Rule::Check {
                    table: table.clone(),
                    name: c[1].to_string(),
                    expr: expr.to_string(),
                });
            }
        }
        for c in unique.captures_iter(body) {
            out.push(Rule::Unique {
                table: table.clone(),
                name: c[1].to_string(),
                columns: cols(&c[2]),
            });
        }
        for c in not_null.captures_iter(body) {
            out.push(Rule::NotNull {
                table: table.clone(),
                column: c[1].to_string(),
            });
        }
    }
    out
}

/// Run every rule's data query; refuse the migration if any finds rows.
pub async fn check(client: &Client, m: &MigrationFile) -> Result<(), MigrateError> {
    if let Some(todo) = todo(&m.sql) {
        return Err(MigrateError::Preflight {
            migration: m.label(),
            details: format!(
                "  it waits for a person's decision: {todo}\n  decide, act (the file shows the rows concerned), then delete the TODO line"
            ),
        });
    }
    let mut problems = vec![];
    for rule in rules(&m.sql) {
        let table = match &rule {
            Rule::ForeignKey { table, .. }
            | Rule::Check { table, .. }
            | Rule::NotNull { table, .. }
            | Rule::Unique { table, .. } => table,
        };
        // A table the migration itself creates is empty: nothing to check.
        let exists: bool = client
            .query_one("select to_regclass($1) is not null", &[table])
            .await?
            .get(0);
        if !exists {
            continue;
        }
        let key: String = client
            .query_one(
                "select coalesce(
                    (select string_agg(format('c.%I::text', a.attname), ', ' order by k.ord)
                     from pg_index i
                     cross join unnest(i.indkey) with ordinality k(attnum, ord)
                     join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                     where i.indrelid = to_regclass($1) and i.indisprimary),
                    'c.ctid::text')",
                &[table],
            )
            .await?
            .get(0);
        let key = format!("concat_ws(',', {key})");
        let (what, violating) = match &rule {
            Rule::ForeignKey {
                name,
                columns,
                parent,
                parent_columns,
                ..
            } => {
                let parent_cols = if parent_columns.is_empty() {
                    primary_key_columns(client, parent).await?
                } else {
                    parent_columns.clone()
                };
                let not_null: Vec<String> = columns
                    .iter()
                    .map(|c| format!("c.{c} is not null"))
                    .collect();
                let join: Vec<String> = columns
                    .iter()
                    .zip(&parent_cols)
                    .map(|(c, p)| format!("p.{p} = c.{c}"))
                    .collect();
                (
                    format!("FOREIGN KEY {name} on {table} ({}) → {parent}", columns.join(", ")),
                    format!(
                        "select {key} as k from {table} c where {} and not exists (select 1 from {parent} p where {})",
                        not_null.join(" and "),
                        join.join(" and ")
                    ),
                )
            }
            Rule::Check { name, expr, .. } => (
                format!("CHECK {name} on {table} ({expr})"),
                format!("select {key} as k from {table} c where not coalesce(({expr}), true)"),
            ),
            Rule::NotNull { column, .. } => (
                format!("NOT NULL on {table}.{column}"),
                format!("select {key} as k from {table} c where c.{column} is null"),
            ),
            Rule::Unique { name, columns, .. } => {
                let list = columns.join(", ");
                let not_null: Vec<String> = columns
                    .iter()
                    .map(|c| format!("c.{c} is not null"))
                    .collect();
                (
                    format!("UNIQUE {name} on {table} ({list})"),
                    format!(
                        "select concat_ws(',', {}) as k from {table} c where {} group by {list} having count(*) > 1",
                        columns.iter().map(|c| format!("c.{c}::text")).collect::<Vec<_>>().join(", "),
                        not_null.join(" and ")
                    ),
                )
            }
        };
        let sql = format!(
            "with v as materialized ({violating}) select (select count(*) from v)::bigint, array(select k from v order by k limit 3)"
        );
        let row = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| MigrateError::Failed {
                migration: m.label(),
                message: format!(
                    "preflight query for {what} failed: {}",
                    crate::db::db_message(&e)
                ),
            })?;
        let n: i64 = row.get(0);
        if n > 0 {
            let samples: Vec<String> = row.get(1);
            let noun = if matches!(rule, Rule::Unique { .. }) {
                "duplicated key"
            } else {
                "violating row"
            };
            problems.push(format!(
                "  {what}: {n} {noun}{} (e.g. {})",
                if n == 1 { "" } else { "s" },
                samples.join("; ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(MigrateError::Preflight {
            migration: m.label(),
            details: problems.join("\n"),
        })
    }
}

async fn primary_key_columns(client: &Client, table: &str) -> Result<Vec<String>, MigrateError> {
    let rows = client
        .query(
            "select quote_ident(a.attname)
             from pg_index i
             cross join unnest(i.indkey) with ordinality k(attnum, ord)
             join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
             where i.indrelid = to_regclass($1) and i.indisprimary
             order by k.ord",
            &[&table],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_constraints_a_migration_adds() {
        let sql = r#"
            alter table public.payments add constraint payments_order_id_fkey
                foreign key (order_id) references public.orders (id) not valid;
            alter table ticket_types add constraint ticket_types_qty_check check (available_quantity >= 0 and (price > 0)) not valid,
                alter column status set not null;
            create unique index concurrently if not exists tickets_tenant_number on public.tickets (tenant_id, ticket_number);
            create unique index if not exists partial_idx on jobs (key) where done;
            do $$ begin alter table x add constraint y check (false); end $$;
        "#;
        let r = rules(sql);
        assert_eq!(r.len(), 4, "{r:?}");
        assert!(
            matches!(&r[0], Rule::ForeignKey { parent, columns, .. } if parent == "public.orders" && columns == &["order_id"])
        );
        assert!(
            matches!(&r[1], Rule::Check { expr, .. } if expr == "available_quantity >= 0 and (price > 0)")
        );
        assert!(matches!(&r[2], Rule::NotNull { column, .. } if column == "status"));
        assert!(
            matches!(&r[3], Rule::Unique { columns, .. } if columns == &["tenant_id", "ticket_number"])
        );
    }
}

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
use crate::migrate::parse::{self, name_text};
use squawk_syntax::ast::{self, AstNode};
use tokio_postgres::Client;

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

/// The `-- TODO(pg-integrity):` line `pg-integrity fix` writes into a migration that
/// needs a person's decision; such a migration is refused until the line is deleted.
pub fn todo(sql: &str) -> Option<&str> {
    sql.lines()
        .map(str::trim)
        .find(|l| l.starts_with("-- TODO(pg-integrity):"))
}

/// Constraints a migration adds, read from its top-level statements' syntax trees
/// (`parse`): `ALTER TABLE … ADD CONSTRAINT` (FOREIGN KEY, CHECK, UNIQUE, PRIMARY KEY:
/// unique and not null), `ALTER COLUMN … SET NOT NULL`, and `CREATE UNIQUE INDEX` on plain
/// columns without WHERE (a partial or expression index is not checked). A statement the
/// parser cannot read adds nothing here (the server reports its own error when it runs).
pub fn rules(sql: &str) -> Vec<Rule> {
    let mut out = vec![];
    for stmt in parse::trees(sql) {
        match stmt {
            ast::Stmt::CreateIndex(ci) => out.extend(unique_index(&ci)),
            ast::Stmt::AlterTable(a) => out.extend(alter_table(&a)),
            _ => {}
        }
    }
    out
}

fn names<N: AstNode>(list: impl Iterator<Item = N>) -> Vec<String> {
    list.map(|n| name_text(n.syntax())).collect()
}

fn constraint_name(c: Option<ast::ConstraintNameClause>) -> String {
    c.and_then(|c| c.constraint_name())
        .map_or_else(|| "(unnamed)".to_string(), |n| name_text(n.syntax()))
}

fn unique_index(ci: &ast::CreateIndex) -> Option<Rule> {
    ci.unique_token()?;
    // A partial unique index only constrains some rows: not checked here.
    if ci.where_clause().is_some() {
        return None;
    }
    let table = ci
        .table_relation_name()
        .and_then(|t| t.table_name_ref())
        .map(|t| name_text(t.syntax()))?;
    let mut columns = vec![];
    for item in ci.partition_item_list()?.partition_items() {
        // Plain columns only: an expression key (lower(email)) is not checked here.
        match item.expr()? {
            ast::Expr::NameRef(n) if item.collate().is_none() => {
                columns.push(name_text(n.syntax()));
            }
            _ => return None,
        }
    }
    let name = ci
        .index()
        .and_then(|i| i.path())
        .map_or_else(|| "(unnamed)".to_string(), |p| name_text(p.syntax()));
    (!columns.is_empty()).then_some(Rule::Unique {
        table,
        name,
        columns,
    })
}

fn alter_table(a: &ast::AlterTable) -> Vec<Rule> {
    let Some(table) = a
        .table_relation_name()
        .and_then(|t| t.table_name_ref())
        .map(|t| name_text(t.syntax()))
    else {
        return vec![];
    };
    let mut out = vec![];
    for action in a.actions() {
        match action {
            ast::AlterTableAction::AddConstraint(add) => match add.constraint() {
                Some(ast::Constraint::ForeignKeyConstraint(f)) => {
                    let (Some(from), Some(parent)) = (f.from_columns(), f.table_name_ref()) else {
                        continue;
                    };
                    out.push(Rule::ForeignKey {
                        table: table.clone(),
                        name: constraint_name(f.constraint_name_clause()),
                        columns: names(from.column_name_refs()),
                        parent: name_text(parent.syntax()),
                        parent_columns: f
                            .to_columns()
                            .map(|t| names(t.column_name_refs()))
                            .unwrap_or_default(),
                    });
                }
                Some(ast::Constraint::CheckConstraint(c)) => {
                    if let Some(e) = c.expr() {
                        out.push(Rule::Check {
                            table: table.clone(),
                            name: constraint_name(c.constraint_name_clause()),
                            expr: parse::text(e.syntax()),
                        });
                    }
                }
                Some(ast::Constraint::UniqueConstraint(u)) => {
                    if let Some(cols) = u.index_parameters().and_then(|p| p.column_list()) {
                        out.push(Rule::Unique {
                            table: table.clone(),
                            name: constraint_name(u.constraint_name_clause()),
                            columns: names(cols.column_name_refs()),
                        });
                    }
                }
                Some(ast::Constraint::PrimaryKeyConstraint(p)) => {
                    if let Some(cols) = p.index_parameters().and_then(|p| p.column_list()) {
                        let columns = names(cols.column_name_refs());
                        for c in &columns {
                            out.push(Rule::NotNull {
                                table: table.clone(),
                                column: c.clone(),
                            });
                        }
                        out.push(Rule::Unique {
                            table: table.clone(),
                            name: constraint_name(p.constraint_name_clause()),
                            columns,
                        });
                    }
                }
                _ => {}
            },
            ast::AlterTableAction::AlterColumn(c) => {
                if let (Some(ast::AlterColumnOption::SetNotNull(_)), Some(col)) =
                    (c.option(), c.column_name_ref())
                {
                    out.push(Rule::NotNull {
                        table: table.clone(),
                        column: name_text(col.syntax()),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// A no-transaction migration is sent statement by statement, so the parser must delimit
/// every statement: one it cannot read (a syntax error, or PostgreSQL squawk's grammar does
/// not know) refuses the migration before anything runs. A transactional migration is sent
/// whole, and the server parses it.
pub fn unreadable_outside_a_transaction(m: &MigrationFile) -> Option<String> {
    if !m.no_transaction {
        return None;
    }
    let e = parse::errors(&m.sql).into_iter().next()?;
    let (line, col) = e.position(&m.sql);
    Some(format!(
        "  the SQL parser could not read line {line}, column {col}: {}\n  outside a transaction each statement is sent on its own, so where each ends must be known: correct it, or drop the `-- pg-integrity: no-transaction` line if it can run in one transaction",
        e.message
    ))
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
    if let Some(why) = unreadable_outside_a_transaction(m) {
        return Err(MigrateError::Preflight {
            migration: m.label(),
            details: why,
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
            details: format!(
                "  existing rows violate what it adds:\n{}",
                problems.join("\n")
            ),
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
            -- alter table commented add constraint c check (false);
            select 'alter table quoted add constraint q check (false)';
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

    #[test]
    fn reads_them_from_the_tree_not_the_words() {
        let sql = r#"
            alter table only "Odd Table" add constraint "k;1" check (note <> 'a;b' and (x > 0)),
                add primary key (id, "Other"),
                add unique (a, b),
                add foreign key (p_id) references parents;
            create unique index u1 on t using btree (lower(email));
            create unique index u2 on t (a, b) include (c);
            alter tabel broken add constraint z check (false);
        "#;
        let r = rules(sql);
        assert_eq!(
            r,
            vec![
                Rule::Check {
                    table: "\"Odd Table\"".into(),
                    name: "\"k;1\"".into(),
                    expr: "note <> 'a;b' and (x > 0)".into(),
                },
                Rule::NotNull {
                    table: "\"Odd Table\"".into(),
                    column: "id".into(),
                },
                Rule::NotNull {
                    table: "\"Odd Table\"".into(),
                    column: "\"Other\"".into(),
                },
                Rule::Unique {
                    table: "\"Odd Table\"".into(),
                    name: "(unnamed)".into(),
                    columns: vec!["id".into(), "\"Other\"".into()],
                },
                Rule::Unique {
                    table: "\"Odd Table\"".into(),
                    name: "(unnamed)".into(),
                    columns: vec!["a".into(), "b".into()],
                },
                Rule::ForeignKey {
                    table: "\"Odd Table\"".into(),
                    name: "(unnamed)".into(),
                    columns: vec!["p_id".into()],
                    parent: "parents".into(),
                    parent_columns: vec![],
                },
                Rule::Unique {
                    table: "t".into(),
                    name: "u2".into(),
                    columns: vec!["a".into(), "b".into()],
                },
            ],
            "{r:#?}"
        );
    }
}

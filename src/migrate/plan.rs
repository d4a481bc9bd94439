//! `plan` and `apply --dry-run`: the pending migrations, statement by statement, with
//! the lock each takes and on which table, whether it scans or rewrites it, the table's
//! size and estimated rows, and every migration's preflight verdict. Changes nothing.
//! The JSON form is a stable contract (docs/plan-format.md).

use crate::migrate::files::{MigrateError, MigrationFile};
use crate::migrate::lint::{self, Flag};
use crate::migrate::locks::{blocks, migration_rules, statement_locks, summary, table_key};
use crate::migrate::{parse, preflight};
use serde::Serialize;
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
    let fks = foreign_keys(client).await?;
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
        let transactions = planned_transactions(m, &statements, &fks);
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

fn planned_transactions(
    m: &MigrationFile,
    statements: &[PlannedStatement],
    fks: &HashMap<(String, String), String>,
) -> Vec<PlannedTransaction> {
    let lookup = |t: &str, c: &str| {
        let c = c.trim_matches('"').to_string();
        fks.get(&(table_key(t), c)).cloned()
    };
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

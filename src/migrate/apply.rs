//! Applying migrations: through refinery's async tokio-postgres runner, under a
//! session advisory lock, with `lock_timeout` and retries, preflight data checks, and
//! migrations that must run outside a transaction.

use crate::migrate::files::{load, MigrateError, MigrationFile, HISTORY_TABLE, STEPS_TABLE};
use crate::migrate::locks::{classify, transactions};
use crate::migrate::preflight;
use crate::migrate::sqlsplit;
use crate::migrate::status::{disagreement, history, status, State};
use refinery::{Migration, Runner, Target};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// `pg_try_advisory_lock` key: the first 8 bytes of "pgintegr" as a big-endian i64.
const ADVISORY_KEY: i64 = 0x7067_696e_7465_6772;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub target: Option<u32>,
    /// How long to wait for another migrator's advisory lock.
    pub lock_wait: Duration,
    /// lock_timeout of every migration statement.
    pub lock_timeout_ms: u64,
    /// Attempts after a statement could not get its lock (SQLSTATE 55P03).
    pub retries: u32,
    /// Migrations from this directory instead of the embedded ones.
    pub from: Option<std::path::PathBuf>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            target: None,
            lock_wait: Duration::from_secs(60),
            lock_timeout_ms: 1000,
            retries: 5,
            from: None,
        }
    }
}

/// What apply did, for the report.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub applied: Vec<(String, u64)>,
}

fn say(msg: &str) {
    eprintln!("{msg}");
}

/// Take the advisory lock, polling until `wait` runs out.
async fn lock(client: &Client, wait: Duration) -> Result<(), MigrateError> {
    let started = Instant::now();
    let mut announced = false;
    loop {
        let got: bool = client
            .query_one("select pg_try_advisory_lock($1)", &[&ADVISORY_KEY])
            .await?
            .get(0);
        if got {
            return Ok(());
        }
        if started.elapsed() >= wait {
            return Err(MigrateError::Locked(wait.as_secs()));
        }
        if !announced {
            say("waiting for another migrator to finish…");
            announced = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn unlock(client: &Client) {
    let _ = client
        .query_one("select pg_advisory_unlock($1)", &[&ADVISORY_KEY])
        .await;
}

/// Apply pending migrations up to the target. The advisory lock is released on
/// every path (and by the server if the connection drops).
pub async fn apply(client: &mut Client, opts: &ApplyOptions) -> Result<ApplyReport, MigrateError> {
    let files = load(opts.from.as_deref())?;
    lock(client, opts.lock_wait).await?;
    let had_history = history_exists(client).await;
    let result = apply_locked(client, &files, opts).await;
    // Nothing applied on a database that had no history: leave no history table
    // behind (refinery creates it before the first migration runs).
    if !had_history.unwrap_or(true) && result.as_ref().map_or(true, |r| r.applied.is_empty()) {
        let _ = drop_empty_history(client).await;
    }
    unlock(client).await;
    result
}

async fn history_exists(client: &Client) -> Result<bool, MigrateError> {
    Ok(client
        .query_one("select to_regclass($1) is not null", &[&HISTORY_TABLE])
        .await?
        .get(0))
}

/// Drop the history table when it holds no row (called under the advisory lock).
async fn drop_empty_history(client: &Client) -> Result<(), MigrateError> {
    if !history_exists(client).await? {
        return Ok(());
    }
    let rows: i64 = client
        .query_one(&format!("select count(*) from {HISTORY_TABLE}"), &[])
        .await?
        .get(0);
    if rows == 0 {
        client
            .batch_execute(&format!("drop table if exists {HISTORY_TABLE}"))
            .await?;
        // Steps of a migration that never finished are something applied: keep them.
        let steps: bool = client
            .query_one("select to_regclass($1) is not null", &[&STEPS_TABLE])
            .await?
            .get(0);
        if steps {
            let n: i64 = client
                .query_one(&format!("select count(*) from {STEPS_TABLE}"), &[])
                .await?
                .get(0);
            if n == 0 {
                client
                    .batch_execute(&format!("drop table if exists {STEPS_TABLE}"))
                    .await?;
            }
        }
    }
    Ok(())
}

/// The ticket-service fixture's tables, which the compiled-in migrations are written for.
pub const FIXTURE_TABLES: &[&str] = &[
    "tenants",
    "users",
    "venues",
    "events",
    "ticket_types",
    "orders",
    "order_items",
    "tickets",
    "ticket_transfers",
    "payments",
    "refunds",
    "webhook_events",
    "jobs",
];

/// The fixture tables this database lacks (empty: it is the ticket-service schema).
pub async fn missing_fixture_tables(client: &Client) -> Result<Vec<String>, MigrateError> {
    let names: Vec<String> = FIXTURE_TABLES.iter().map(|t| t.to_string()).collect();
    let rows = client
        .query(
            "select t from unnest($1::text[]) t where to_regclass(format('%I', t)) is null",
            &[&names],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn apply_locked(
    client: &mut Client,
    files: &[MigrationFile],
    opts: &ApplyOptions,
) -> Result<ApplyReport, MigrateError> {
    let rows = status(files, &history(client).await?);
    if let Some(msg) = disagreement(&rows) {
        return Err(MigrateError::Divergent(msg));
    }
    let pending: Vec<&MigrationFile> = files
        .iter()
        .filter(|f| {
            rows.iter()
                .any(|r| r.version == f.version && r.state == State::Pending)
        })
        .filter(|f| opts.target.is_none_or(|t| f.version <= t))
        .collect();
    client
        .batch_execute(&format!(
            "set application_name = 'pg-integrity migrate'; set lock_timeout = {}; set statement_timeout = 0",
            opts.lock_timeout_ms
        ))
        .await?;
    // Every preflight before the first migration: a refusal changes nothing.
    for m in &pending {
        preflight::check(client, m).await?;
    }
    let mut report = ApplyReport::default();
    for m in pending {
        let started = Instant::now();
        say(&format!(
            "applying {}{} …",
            m.label(),
            if m.no_transaction {
                " (no transaction)"
            } else {
                ""
            }
        ));
        if m.no_transaction {
            apply_no_transaction(client, m, opts).await?;
        } else {
            apply_in_transaction(client, files, m, opts).await?;
        }
        let ms = started.elapsed().as_millis() as u64;
        say(&format!("applied  {} in {ms} ms", m.label()));
        report.applied.push((m.label(), ms));
    }
    Ok(report)
}

fn is_lock_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(pg) = err.downcast_ref::<tokio_postgres::Error>() {
            if pg.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

fn backoff(attempt: u32) -> Duration {
    // 0.5 s, 1 s, then 2 s between attempts: short enough to catch a quiet moment,
    // plus up to half again of jitter, so that two appliers do not retry in step.
    let base = 250u64 << attempt.min(3);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    Duration::from_millis(base + nanos % (base / 2 + 1))
}

/// Who holds locks on the tables `m` locks: "public.t by pid 42 (idle in transaction:
/// `update t …`)", for the retry message (the blocked statement was already cancelled,
/// so `pg_blocking_pids` of this session is empty by now: the holders are read instead).
async fn lock_holders(client: &Client, m: &MigrationFile) -> String {
    let tables: std::collections::BTreeSet<String> = sqlsplit::split(&m.sql)
        .iter()
        .flat_map(|s| {
            let c = classify(s);
            c.table.into_iter().chain(c.also.map(|(t, _)| t))
        })
        .collect();
    if tables.is_empty() {
        return String::new();
    }
    let tables: Vec<String> = tables.into_iter().collect();
    let rows = client
        .query(
            "select distinct (select format('%I.%I', n.nspname, c.relname) from pg_class c
                             join pg_namespace n on n.oid = c.relnamespace where c.oid = l.relation),
                    a.pid, coalesce(a.state, ''),
                    left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 80)
             from unnest($1::text[]) t(name)
             join pg_locks l on l.relation = to_regclass(t.name) and l.granted
             join pg_stat_activity a on a.pid = l.pid
             where l.pid <> pg_backend_pid()
             order by 1, 2
             limit 3",
            &[&tables],
        )
        .await;
    let Ok(rows) = rows else {
        return String::new();
    };
    let held: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} by pid {} ({}: `{}`)",
                r.get::<_, String>(0),
                r.get::<_, i32>(1),
                r.get::<_, String>(2),
                r.get::<_, String>(3)
            )
        })
        .collect();
    if held.is_empty() {
        String::new()
    } else {
        format!(" (locks held on {})", held.join("; "))
    }
}

/// When `e` is a lock not granted in time and retries remain: report, back off,
/// and say "retry". Anything else is for the caller to report.
async fn retry_after_lock_timeout(
    e: &(dyn std::error::Error + 'static),
    attempt: &mut u32,
    m: &MigrationFile,
    opts: &ApplyOptions,
    client: &Client,
) -> bool {
    if !is_lock_timeout(e) || *attempt >= opts.retries {
        return false;
    }
    *attempt += 1;
    let wait = backoff(*attempt);
    say(&format!(
        "  {}: a lock was not granted within {} ms{}; retry {}/{} in {} ms",
        m.label(),
        opts.lock_timeout_ms,
        lock_holders(client, m).await,
        attempt,
        opts.retries,
        wait.as_millis()
    ));
    tokio::time::sleep(wait).await;
    true
}

/// One transaction through refinery: applies `m` (and only `m`, which is the next
/// pending one) and records it in the history in the same transaction.
async fn apply_in_transaction(
    client: &mut Client,
    files: &[MigrationFile],
    m: &MigrationFile,
    opts: &ApplyOptions,
) -> Result<(), MigrateError> {
    let all: Vec<Migration> = files.iter().map(|f| f.refinery.clone()).collect();
    let mut attempt = 0;
    loop {
        let runner = Runner::new(&all)
            .set_target(Target::Version(m.version))
            .set_grouped(false)
            // Divergence was judged before anything ran (status::disagreement, which knows
            // the earlier forms of rewritten migrations); refinery would call those divergent.
            .set_abort_divergent(false)
            .set_abort_missing(true);
        match runner.run_async(client).await {
            Ok(_) => return Ok(()),
            Err(e) if retry_after_lock_timeout(&e, &mut attempt, m, opts, client).await => continue,
            Err(e) => {
                let mut message = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    if let Some(pg) = s.downcast_ref::<tokio_postgres::Error>() {
                        message = crate::db::db_message(pg);
                    }
                    src = s.source();
                }
                return Err(MigrateError::Failed {
                    migration: m.label(),
                    message,
                });
            }
        }
    }
}

/// Statement by statement, outside a transaction; recorded once all succeeded.
/// Every statement must be safe to re-run; an invalid index left by a failed
/// `CREATE INDEX CONCURRENTLY` is dropped and rebuilt. A `BEGIN; … COMMIT;` block is one
/// transaction (one table locked, SPEC §7), retried whole after a lock timeout, and
/// recorded as a step in [`STEPS_TABLE`] in that same transaction: a re-run after a crash
/// skips the steps already committed, so a block runs exactly once and need not be
/// written to be re-run.
async fn apply_no_transaction(
    client: &mut Client,
    m: &MigrationFile,
    opts: &ApplyOptions,
) -> Result<(), MigrateError> {
    let index_re = regex::Regex::new(
        r#"(?is)^\s*create\s+(?:unique\s+)?index\s+concurrently\s+(?:if\s+not\s+exists\s+)?("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)\s+on\s+(?:only\s+)?((?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)(?:\s*\.\s*(?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*))?)"#,
    )
    .map_err(|e| MigrateError::Database(e.to_string()))?;
    let txs = transactions(&sqlsplit::split(&m.sql), true)
        .map_err(|e| MigrateError::Invalid(m.label(), e))?;
    let done = if txs.iter().any(|t| t.block) {
        client
            .batch_execute(&format!(
                "create table if not exists {STEPS_TABLE}(version int4, step int4, checksum varchar(255), applied_on timestamptz not null default now(), primary key (version, step))"
            ))
            .await?;
        steps_done(client, m.version).await?
    } else {
        vec![]
    };
    let mut step = 0i32;
    for tx in txs {
        if tx.block {
            step += 1;
            let sum = block_checksum(&tx.statements);
            match done.iter().find(|(s, _)| *s == step) {
                Some((_, c)) if *c == sum => continue,
                Some(_) => {
                    return Err(MigrateError::Divergent(format!(
                        "{} step {step} changed since it was applied (its BEGIN … COMMIT block differs)",
                        m.label()
                    )))
                }
                None => {}
            }
            apply_block(client, m, opts, step, &sum, &tx.statements).await?;
            continue;
        }
        let stmt = &tx.statements[0];
        if let Some(c) = index_re.captures(stmt) {
            drop_invalid_index(client, &c[1], &c[2]).await?;
        }
        let mut attempt = 0;
        loop {
            match client.batch_execute(stmt).await {
                Ok(()) => break,
                Err(e) if retry_after_lock_timeout(&e, &mut attempt, m, opts, client).await => continue,
                Err(e) => {
                    return Err(MigrateError::Failed {
                        migration: m.label(),
                        message: format!(
                            "{} (statement: {}); the statements before it are done and will be re-run safely",
                            crate::db::db_message(&e),
                            stmt.lines().next().unwrap_or("")
                        ),
                    })
                }
            }
        }
    }
    record(client, m).await
}

async fn steps_done(client: &Client, version: u32) -> Result<Vec<(i32, String)>, MigrateError> {
    Ok(client
        .query(
            &format!("select step, coalesce(checksum, '') from {STEPS_TABLE} where version = $1"),
            &[&(version as i32)],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// FNV-1a of a block's statements: a stable fingerprint across builds.
fn block_checksum(statements: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in statements.join(";\n").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// One `BEGIN; … COMMIT;` step: its statements and its step row in one transaction.
async fn apply_block(
    client: &mut Client,
    m: &MigrationFile,
    opts: &ApplyOptions,
    step: i32,
    sum: &str,
    statements: &[String],
) -> Result<(), MigrateError> {
    let mut attempt = 0;
    loop {
        let result: Result<(), (tokio_postgres::Error, &String)> = async {
            let tx = client
                .transaction()
                .await
                .map_err(|e| (e, &statements[0]))?;
            for s in statements {
                tx.batch_execute(s).await.map_err(|e| (e, s))?;
            }
            tx.execute(
                &format!("insert into {STEPS_TABLE}(version, step, checksum) values ($1, $2, $3)"),
                &[&(m.version as i32), &step, &sum],
            )
            .await
            .map_err(|e| (e, &statements[0]))?;
            tx.commit().await.map_err(|e| (e, &statements[0]))
        }
        .await;
        match result {
            Ok(()) => return Ok(()),
            Err((e, _)) if retry_after_lock_timeout(&e, &mut attempt, m, opts, client).await => {
                continue
            }
            Err((e, s)) => {
                return Err(MigrateError::Failed {
                    migration: m.label(),
                    message: format!(
                        "{} (step {step}, statement: {}); that step was rolled back, the steps before it are done and are not run again",
                        crate::db::db_message(&e),
                        s.lines().next().unwrap_or("")
                    ),
                })
            }
        }
    }
}

/// Drop `index` if a failed concurrent build left it invalid.
async fn drop_invalid_index(client: &Client, index: &str, table: &str) -> Result<(), MigrateError> {
    // The index lives in the table's schema; resolve both through the catalog.
    let row = client
        .query_opt(
            "select format('%I.%I', n.nspname, c.relname)
             from pg_index i
             join pg_class c on c.oid = i.indexrelid
             join pg_namespace n on n.oid = c.relnamespace
             where i.indrelid = to_regclass($2)
               and c.relname = trim(both '\"' from $1)
               and not i.indisvalid",
            &[&index, &table],
        )
        .await?;
    if let Some(r) = row {
        let qualified: String = r.get(0);
        say(&format!(
            "  dropping invalid index {qualified} left by an earlier failed build"
        ));
        client
            .batch_execute(&format!("drop index concurrently if exists {qualified}"))
            .await?;
    }
    Ok(())
}

/// Write the history row for a no-transaction migration, as refinery would, and forget
/// its steps, in one transaction.
async fn record(client: &mut Client, m: &MigrationFile) -> Result<(), MigrateError> {
    client
        .batch_execute(&format!(
            "create table if not exists {HISTORY_TABLE}(version int4 primary key, name varchar(255), applied_on varchar(255), checksum varchar(255))"
        ))
        .await?;
    let applied_on = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let tx = client.transaction().await?;
    tx.execute(
        &format!("insert into {HISTORY_TABLE}(version, name, applied_on, checksum) values ($1, $2, $3, $4)"),
        &[&(m.version as i32), &m.name, &applied_on, &m.checksum.to_string()],
    )
    .await?;
    let steps: bool = tx
        .query_one("select to_regclass($1) is not null", &[&STEPS_TABLE])
        .await?
        .get(0);
    if steps {
        tx.execute(
            &format!("delete from {STEPS_TABLE} where version = $1"),
            &[&(m.version as i32)],
        )
        .await?;
        // No migration left half-way: the bookkeeping table goes, as it came.
        let left: i64 = tx
            .query_one(&format!("select count(*) from {STEPS_TABLE}"), &[])
            .await?
            .get(0);
        if left == 0 {
            tx.batch_execute(&format!("drop table {STEPS_TABLE}"))
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

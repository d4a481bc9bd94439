//! Applying migrations: through refinery's async tokio-postgres runner, under a
//! session advisory lock, with `lock_timeout` and retries, preflight data checks, and
//! migrations that must run outside a transaction.

use crate::db::connection::{connect, ConnectOptions};
use crate::migrate::files::{load, MigrateError, MigrationFile, HISTORY_TABLE, STEPS_TABLE};
use crate::migrate::locks::{classify, one_table_rule, strength, table_key, transactions};
use crate::migrate::parse;
use crate::migrate::preflight;
use crate::migrate::status::{disagreement, history, status, State};
use refinery::{Migration, Runner, Target};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// `pg_try_advisory_lock` key: the first 8 bytes of "pgintegr" as a big-endian i64.
const ADVISORY_KEY: i64 = 0x7067_696e_7465_6772;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub target: Option<u32>,
    /// How long to wait for another migrator's advisory lock.
    pub lock_wait: Duration,
    /// How long one transaction of a migration may wait for its locks, in total: a
    /// transaction that locks n tables in a mode readers or writers queue behind (SHARE
    /// or stronger) runs with `lock_timeout` = this / n, since each lock it waits for
    /// makes others queue behind it while it holds the ones it already has.
    pub lock_timeout_ms: u64,
    /// Attempts after a statement could not get its lock (SQLSTATE 55P03).
    pub retries: u32,
    /// Migrations from this directory instead of the embedded ones.
    pub from: Option<std::path::PathBuf>,
    /// The database again, for a second connection that watches, while a migration
    /// statement waits for a lock, whom it waits behind (`pg_blocking_pids`), for the
    /// retry message. None: the holders of locks on its tables are read after the
    /// timeout instead.
    pub watch: Option<ConnectOptions>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            target: None,
            lock_wait: Duration::from_secs(60),
            lock_timeout_ms: 1000,
            retries: 5,
            from: None,
            watch: None,
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
    let run = Run {
        opts,
        watch: Watch::open(opts, client).await,
    };
    let result = apply_locked(client, &files, &run).await;
    // The migrations committed without waiting for their WAL flush (see apply_locked): one
    // transaction with an xid, committed with synchronous_commit on, flushes the WAL up
    // to its commit record, theirs included, before `apply` reports them applied.
    let _ = client
        .batch_execute("set synchronous_commit = on; select txid_current()")
        .await;
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
    run: &Run<'_>,
) -> Result<ApplyReport, MigrateError> {
    let opts = run.opts;
    let rows = status(files, &history(client).await?);
    if let Some(msg) = disagreement(&rows) {
        return Err(MigrateError::Divergent(msg));
    }
    // synchronous_commit off: a migration's transaction releases its table locks when its
    // commit record is written, not after the WAL flush as well, so the writers queued
    // behind it wait that much less. Safe: a crash of the server can lose only the last
    // commits, each with its own history or step row, so those migrations or steps are
    // simply pending again; `apply` flushes before it returns.
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
            "set application_name = 'pg-integrity migrate'; set lock_timeout = {}; set statement_timeout = 0; set synchronous_commit = off",
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
            apply_no_transaction(client, m, run).await?;
        } else {
            apply_in_transaction(client, files, m, run).await?;
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

fn backoff(attempt: u32, timeout_ms: u64) -> Duration {
    // A short wait first (a lock held by a writer's short transaction is usually free a
    // moment later), doubling up to 2 s, plus up to half again of jitter, so that two
    // appliers, or an applier and a periodic job, do not retry in step.
    let first = (timeout_ms * 4).clamp(50, 500);
    let base = (first << attempt.saturating_sub(1).min(6)).min(2000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    Duration::from_millis(base + nanos % (base / 2 + 1))
}

/// What one `migrate apply` run carries: its options and the watching connection.
struct Run<'a> {
    opts: &'a ApplyOptions,
    watch: Option<Watch>,
}

/// A second connection that sees, while the migrator's session waits for a lock, what it
/// waits for and behind whom (`pg_blocking_pids`): once the statement is cancelled by
/// `lock_timeout` that is gone, so it is read during the wait.
struct Watch {
    client: Client,
    pid: i32,
}

impl Watch {
    async fn open(opts: &ApplyOptions, client: &Client) -> Option<Watch> {
        let target = opts.watch.as_ref()?;
        let pid: i32 = client
            .query_one("select pg_backend_pid()", &[])
            .await
            .ok()?
            .get(0);
        let watcher = connect(
            &target
                .clone()
                .with_application_name("pg-integrity migrate (lock watch)"),
        )
        .await
        .ok()?;
        watcher
            .batch_execute("set statement_timeout = '2s'; set lock_timeout = '1s'")
            .await
            .ok()?;
        Some(Watch {
            client: watcher,
            pid,
        })
    }

    /// "public.t by pid 42 (active: `insert into t …`)" for each session the watched one
    /// waits behind now, or None when it waits for nothing.
    async fn blockers(&self) -> Option<String> {
        let rows = self
            .client
            .query(
                "select coalesce((select format('%I.%I', n.nspname, c.relname) from pg_class c
                                  join pg_namespace n on n.oid = c.relnamespace
                                  where c.oid = w.relation), w.locktype),
                        b.pid, coalesce(b.state, ''),
                        left(regexp_replace(coalesce(b.query, ''), '\\s+', ' ', 'g'), 80),
                        exists (select 1 from pg_locks h where h.pid = b.pid and h.granted
                                and h.locktype = w.locktype
                                and h.relation is not distinct from w.relation)
                 from pg_locks w
                 cross join lateral unnest(pg_blocking_pids(w.pid)) as bp(pid)
                 join pg_stat_activity b on b.pid = bp.pid
                 where w.pid = $1 and not w.granted
                 order by 2
                 limit 3",
                &[&self.pid],
            )
            .await
            .ok()?;
        let seen: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} by pid {}{} ({}: `{}`)",
                    r.get::<_, String>(0),
                    r.get::<_, i32>(1),
                    if r.get::<_, bool>(4) {
                        ""
                    } else {
                        ", queued ahead"
                    },
                    r.get::<_, String>(2),
                    r.get::<_, String>(3)
                )
            })
            .collect();
        (!seen.is_empty()).then(|| seen.join("; "))
    }
}

/// Run `fut` (one attempt at a migration transaction) while the watch connection, if
/// any, notes whom it waits behind: from half its `lock_timeout` on, every quarter of it
/// (at least every 500 ms). Gives the attempt's result and the last blockers seen.
async fn watched<F: std::future::Future>(
    run: &Run<'_>,
    timeout_ms: u64,
    fut: F,
) -> (F::Output, Option<String>) {
    let Some(w) = &run.watch else {
        return (fut.await, None);
    };
    let seen = std::sync::Mutex::new(None::<String>);
    let poll = async {
        tokio::time::sleep(Duration::from_millis((timeout_ms / 2).max(1))).await;
        loop {
            if let Some(b) = w.blockers().await {
                if let Ok(mut s) = seen.lock() {
                    *s = Some(b);
                }
            }
            tokio::time::sleep(Duration::from_millis((timeout_ms / 4).clamp(5, 500))).await;
        }
    };
    tokio::pin!(fut);
    tokio::pin!(poll);
    let out = tokio::select! {
        biased;
        o = &mut fut => o,
        () = &mut poll => (&mut fut).await,
    };
    let last = seen.lock().ok().and_then(|mut s| s.take());
    (out, last)
}

/// How long a transaction that takes no lock a reader or writer queues behind may wait for
/// its locks (unless `--lock-timeout` is longer).
const NON_BLOCKING_LOCK_TIMEOUT_MS: u64 = 60_000;

/// The `lock_timeout` of one transaction: the budget (`--lock-timeout`) split over the
/// tables it locks in a mode that readers or writers queue behind (SHARE or stronger;
/// dropping a foreign key locks its parent ACCESS EXCLUSIVE too). While it waits for
/// one, others queue behind it on the tables it already holds, so each wait is a share
/// of what others may be kept waiting. At least 1 ms.
///
/// A transaction whose every lock is known and weaker than SHARE (`CREATE INDEX
/// CONCURRENTLY`, `DROP INDEX CONCURRENTLY`, `VALIDATE CONSTRAINT`, a function, a role
/// setting) keeps no reader or writer waiting while it waits, so it waits up to
/// [`NON_BLOCKING_LOCK_TIMEOUT_MS`]: a concurrent index build waits for the transactions
/// older than it once it has built the index, and one that gave up after a short timeout
/// would throw that work away (minutes on a large table) and start again.
fn lock_timeout_for(
    budget_ms: u64,
    statements: &[String],
    fks: &HashMap<(String, String), String>,
) -> u64 {
    let lookup = |t: &str, c: &str| {
        fks.get(&(table_key(t), c.trim_matches('"').to_string()))
            .cloned()
    };
    let rule = one_table_rule(statements, &lookup);
    let queued_behind = rule
        .tables
        .iter()
        .filter(|(_, mode)| strength(mode) >= strength("SHARE"))
        .count() as u64;
    // one_table None: a statement's lock is unknown, so it may block others.
    if queued_behind == 0 && rule.one_table.is_some() {
        return budget_ms.max(NON_BLOCKING_LOCK_TIMEOUT_MS);
    }
    (budget_ms / queued_behind.max(1)).max(1)
}

/// [`lock_timeout_for`] a transaction of `statements`, with the catalog's foreign keys it
/// needs: computed once per transaction, before its retries.
async fn transaction_lock_timeout(
    client: &Client,
    budget_ms: u64,
    statements: &[String],
) -> Result<u64, MigrateError> {
    let fks = fks_for(client, statements).await?;
    Ok(lock_timeout_for(budget_ms, statements, &fks))
}

/// The catalog's foreign keys, when `statements` drop a constraint (which one is a
/// foreign key decides what it locks); otherwise none are needed.
async fn fks_for(
    client: &Client,
    statements: &[String],
) -> Result<HashMap<(String, String), String>, MigrateError> {
    let drops = regex::Regex::new(r"(?i)\bdrop\s+constraint\b")
        .map_err(|e| MigrateError::Database(e.to_string()))?;
    if statements.iter().any(|s| drops.is_match(s)) {
        crate::migrate::plan::foreign_keys(client).await
    } else {
        Ok(HashMap::new())
    }
}

/// Who holds locks on the tables `m` locks: "public.t by pid 42 (idle in transaction:
/// `update t …`)", for the retry message (the blocked statement was already cancelled,
/// so `pg_blocking_pids` of this session is empty by now: the holders are read instead).
async fn lock_holders(client: &Client, m: &MigrationFile) -> String {
    let tables: std::collections::BTreeSet<String> = parse::split(&m.sql)
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

/// When `e` is a lock not granted in time and retries remain: report (what the
/// statement waited for and behind whom, as the watch connection saw it, else who holds
/// locks on its tables now), back off, and say "retry". Anything else is for the caller.
async fn retry_after_lock_timeout(
    e: &(dyn std::error::Error + 'static),
    attempt: &mut u32,
    m: &MigrationFile,
    run: &Run<'_>,
    client: &Client,
    timeout_ms: u64,
    seen: Option<String>,
) -> bool {
    let opts = run.opts;
    if !is_lock_timeout(e) || *attempt >= opts.retries {
        return false;
    }
    *attempt += 1;
    let wait = backoff(*attempt, timeout_ms);
    let behind = match seen {
        Some(s) => format!(" (locks held on {s})"),
        None => lock_holders(client, m).await,
    };
    let share = if timeout_ms < opts.lock_timeout_ms {
        format!(
            " (its share of the {} ms budget: it locks several tables)",
            opts.lock_timeout_ms
        )
    } else {
        String::new()
    };
    say(&format!(
        "  {}: a lock was not granted within {timeout_ms} ms{behind}{share}; retry {}/{} in {} ms",
        m.label(),
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
    run: &Run<'_>,
) -> Result<(), MigrateError> {
    let all: Vec<Migration> = files.iter().map(|f| f.refinery.clone()).collect();
    let statements = parse::split(&m.sql);
    let timeout_ms =
        transaction_lock_timeout(client, run.opts.lock_timeout_ms, &statements).await?;
    let mut attempt = 0;
    loop {
        client
            .batch_execute(&format!("set lock_timeout = {timeout_ms}"))
            .await?;
        let runner = Runner::new(&all)
            .set_target(Target::Version(m.version))
            .set_grouped(false)
            // Divergence was judged before anything ran (status::disagreement, which knows
            // the earlier forms of rewritten migrations); refinery would call those divergent.
            .set_abort_divergent(false)
            .set_abort_missing(true);
        let (result, seen) = watched(run, timeout_ms, runner.run_async(client)).await;
        match result {
            Ok(_) => return Ok(()),
            Err(e)
                if retry_after_lock_timeout(&e, &mut attempt, m, run, client, timeout_ms, seen)
                    .await =>
            {
                continue
            }
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
/// written to be re-run. Each transaction waits for its locks at most `--lock-timeout`
/// in total ([`lock_timeout_for`]).
async fn apply_no_transaction(
    client: &mut Client,
    m: &MigrationFile,
    run: &Run<'_>,
) -> Result<(), MigrateError> {
    let index_re = regex::Regex::new(
        r#"(?is)^\s*create\s+(?:unique\s+)?index\s+concurrently\s+(?:if\s+not\s+exists\s+)?("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)\s+on\s+(?:only\s+)?((?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)(?:\s*\.\s*(?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*))?)"#,
    )
    .map_err(|e| MigrateError::Database(e.to_string()))?;
    let txs = transactions(&parse::split(&m.sql), true)
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
            apply_block(client, m, run, step, &sum, &tx.statements).await?;
            continue;
        }
        let stmt = &tx.statements[0];
        let timeout_ms =
            transaction_lock_timeout(client, run.opts.lock_timeout_ms, &tx.statements).await?;
        let mut attempt = 0;
        loop {
            // Before every attempt: a concurrent build that gave up (a lock timeout in one
            // of its waits) leaves its index behind, invalid, which `IF NOT EXISTS` would
            // then keep.
            if let Some(c) = index_re.captures(stmt) {
                drop_invalid_index(client, &c[1], &c[2]).await?;
            }
            client
                .batch_execute(&format!("set lock_timeout = {timeout_ms}"))
                .await?;
            let (result, seen) = watched(run, timeout_ms, client.batch_execute(stmt)).await;
            match result {
                Ok(()) => break,
                Err(e)
                    if retry_after_lock_timeout(
                        &e,
                        &mut attempt,
                        m,
                        run,
                        client,
                        timeout_ms,
                        seen,
                    )
                    .await =>
                {
                    continue
                }
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

/// One `BEGIN; … COMMIT;` step: its step row and its statements in one transaction.
/// The step row is written first (it locks no table of the application's); the block's
/// statements and the COMMIT then go to the server in one round trip, so the block
/// holds its table locks for the time the server takes to run them and commit, not for
/// a network round trip per statement besides.
async fn apply_block(
    client: &mut Client,
    m: &MigrationFile,
    run: &Run<'_>,
    step: i32,
    sum: &str,
    statements: &[String],
) -> Result<(), MigrateError> {
    let mut attempt = 0;
    // Each statement on its own lines, so that a trailing comment cannot swallow the `;`.
    let body = format!("{}\n;\ncommit", statements.join("\n;\n"));
    let timeout_ms = transaction_lock_timeout(client, run.opts.lock_timeout_ms, statements).await?;
    loop {
        let attempt_once = async {
            client
                .batch_execute(&format!("begin; set local lock_timeout = {timeout_ms}"))
                .await?;
            client
                .execute(
                    &format!(
                        "insert into {STEPS_TABLE}(version, step, checksum) values ($1, $2, $3)"
                    ),
                    &[&(m.version as i32), &step, &sum],
                )
                .await?;
            client.batch_execute(&body).await
        };
        let (result, seen) = watched(run, timeout_ms, attempt_once).await;
        let Err(e) = result else {
            return Ok(());
        };
        // The failed statement aborted the transaction; end it (a no-op when the failure
        // was the COMMIT itself, or when the connection is gone).
        let _ = client.batch_execute("rollback").await;
        if retry_after_lock_timeout(&e, &mut attempt, m, run, client, timeout_ms, seen).await {
            continue;
        }
        let which = match statements {
            [one] => format!("statement: {}", one.lines().next().unwrap_or("")),
            many => format!(
                "one of its {} statements: {}",
                many.len(),
                many.iter()
                    .map(|s| format!("`{}`", s.lines().next().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return Err(MigrateError::Failed {
            migration: m.label(),
            message: format!(
                "{} (step {step}, {which}); that step was rolled back, the steps before it are done and are not run again",
                crate::db::db_message(&e),
            ),
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stmts(sql: &[&str]) -> Vec<String> {
        sql.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_lock_timeout_is_split_over_the_tables_others_queue_behind() {
        let mut fks = HashMap::new();
        fks.insert(
            ("orders".to_string(), "orders_event_id_fkey".to_string()),
            "events".to_string(),
        );
        let none = HashMap::new();
        // Dropping a foreign key: ACCESS EXCLUSIVE on the table and on its parent.
        let drop = stmts(&["ALTER TABLE orders DROP CONSTRAINT orders_event_id_fkey"]);
        assert_eq!(lock_timeout_for(50, &drop, &fks), 25);
        // Adding one NOT VALID: SHARE ROW EXCLUSIVE on both.
        let add = stmts(&["ALTER TABLE orders ADD CONSTRAINT o_fk FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) NOT VALID"]);
        assert_eq!(lock_timeout_for(50, &add, &none), 25);
        let one = stmts(&["ALTER TABLE orders ENABLE ROW LEVEL SECURITY"]);
        assert_eq!(lock_timeout_for(50, &one, &none), 50);
        // Nobody queues behind these: they may wait long.
        for weak in [
            "CREATE INDEX CONCURRENTLY i ON orders (user_id)",
            "DROP INDEX CONCURRENTLY IF EXISTS i",
            "ALTER TABLE orders VALIDATE CONSTRAINT o_fk",
        ] {
            assert_eq!(
                lock_timeout_for(50, &stmts(&[weak]), &none),
                NON_BLOCKING_LOCK_TIMEOUT_MS,
                "{weak}"
            );
        }
        assert_eq!(
            lock_timeout_for(90_000, &stmts(&["DROP INDEX CONCURRENTLY i"]), &none),
            90_000
        );
    }
}

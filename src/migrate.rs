//! `pg-integrity migrate`: the remediation migrations of `migrations/` (compiled in),
//! applied through refinery's async tokio-postgres runner, plus what refinery lacks:
//! a session advisory lock, `lock_timeout` with retries, preflight data checks, plan
//! and dry-run, divergence reporting, and migrations that must run outside a
//! transaction (first line `-- pg-integrity: no-transaction`).

use crate::sqlsplit;
use include_dir::{include_dir, Dir};
use refinery::{Migration, Runner, Target};
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/migrations");

pub const HISTORY_TABLE: &str = "refinery_schema_history";
const NO_TRANSACTION_MARK: &str = "-- pg-integrity: no-transaction";
/// `pg_try_advisory_lock` key: the first 8 bytes of "pgintegr" as a big-endian i64.
const ADVISORY_KEY: i64 = 0x7067_696e_7465_6772;

/// One embedded migration.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    pub version: u32,
    pub name: String,
    /// Normalised text: no BOM, LF line endings (so a checkout on another OS is not divergent).
    pub sql: String,
    pub no_transaction: bool,
    pub checksum: u64,
    refinery: Migration,
}

impl MigrationFile {
    pub fn label(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum MigrateError {
    #[error("invalid migration file {0}: {1}")]
    #[diagnostic(
        code(pg_integrity::migrate::invalid),
        help("migrations are named V{{n}}__{{name}}.sql")
    )]
    Invalid(String, String),
    #[error("another migrator holds the lock (waited {0} s)")]
    #[diagnostic(
        code(pg_integrity::migrate::locked),
        help("another `pg-integrity migrate apply` is running on this database; retry when it finishes, or raise --lock-wait")
    )]
    Locked(u64),
    #[error("the migration history and the embedded migrations disagree: {0}")]
    #[diagnostic(
        code(pg_integrity::migrate::divergent),
        help("`pg-integrity migrate status` lists them; a changed migration must become a new migration")
    )]
    Divergent(String),
    #[error("preflight refused {migration}: existing rows violate what it adds\n{details}")]
    #[diagnostic(
        code(pg_integrity::migrate::preflight),
        help("fix or remove these rows first (nothing was changed); `pg-integrity audit --deep` lists data problems")
    )]
    Preflight { migration: String, details: String },
    #[error("{migration} failed: {message}")]
    #[diagnostic(
        code(pg_integrity::migrate::failed),
        help("the failed migration was rolled back; the database is as it was before it")
    )]
    Failed { migration: String, message: String },
    #[error("database error: {0}")]
    #[diagnostic(code(pg_integrity::migrate::database))]
    Database(String),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Database(crate::runner::db_message(&e))
    }
}

fn normalise(text: &str) -> String {
    text.trim_start_matches('\u{feff}').replace("\r\n", "\n")
}

/// The embedded migrations in version order.
pub fn embedded() -> Result<Vec<MigrationFile>, MigrateError> {
    let files = EMBEDDED
        .files()
        .map(|f| {
            (
                f.path().to_path_buf(),
                f.contents_utf8().map(str::to_string),
            )
        })
        .collect();
    parse_files(files)
}

/// The migrations of `dir` when given, else the embedded ones.
pub fn load(dir: Option<&std::path::Path>) -> Result<Vec<MigrationFile>, MigrateError> {
    let Some(dir) = dir else { return embedded() };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| MigrateError::Invalid(dir.display().to_string(), e.to_string()))?;
    let files = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).ok();
            (p, text)
        })
        .collect();
    parse_files(files)
}

fn parse_files(
    files: Vec<(std::path::PathBuf, Option<String>)>,
) -> Result<Vec<MigrationFile>, MigrateError> {
    let mut out = vec![];
    for (path, text) in files {
        let Some(fname) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some(stem) = fname.strip_suffix(".sql") else {
            continue;
        };
        let text = text.ok_or_else(|| MigrateError::Invalid(fname.into(), "not UTF-8".into()))?;
        let sql = normalise(&text);
        let refinery = Migration::unapplied(stem, &sql)
            .map_err(|e| MigrateError::Invalid(fname.into(), e.to_string()))?;
        out.push(MigrationFile {
            version: refinery.version(),
            name: refinery.name().to_string(),
            no_transaction: sql
                .lines()
                .next()
                .is_some_and(|l| l.trim() == NO_TRANSACTION_MARK),
            checksum: refinery.checksum(),
            sql,
            refinery,
        });
    }
    out.sort_by_key(|m| m.version);
    for w in out.windows(2) {
        if w[0].version == w[1].version {
            return Err(MigrateError::Invalid(
                w[1].label(),
                "repeated version".into(),
            ));
        }
    }
    Ok(out)
}

/// A row of the history table.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: u32,
    pub name: String,
    pub applied_on: String,
    pub checksum: String,
}

/// Read the history without creating it (status must never write).
pub async fn history(client: &Client) -> Result<Vec<Applied>, MigrateError> {
    let exists: bool = client
        .query_one("select to_regclass($1) is not null", &[&HISTORY_TABLE])
        .await?
        .get(0);
    if !exists {
        return Ok(vec![]);
    }
    let rows = client
        .query(
            &format!("select version, coalesce(name, ''), coalesce(applied_on, ''), coalesce(checksum, '') from {HISTORY_TABLE} order by version"),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get::<_, i32>(0) as u32,
            name: r.get(1),
            applied_on: r.get(2),
            checksum: r.get(3),
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Applied,
    Pending,
    Divergent,
    Missing,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub version: u32,
    pub name: String,
    pub state: State,
    pub applied_on: Option<String>,
    pub no_transaction: bool,
    pub detail: Option<String>,
}

pub fn status(files: &[MigrationFile], applied: &[Applied]) -> Vec<StatusRow> {
    let mut rows = vec![];
    for f in files {
        let row = match applied.iter().find(|a| a.version == f.version) {
            None => StatusRow {
                version: f.version,
                name: f.name.clone(),
                state: State::Pending,
                applied_on: None,
                no_transaction: f.no_transaction,
                detail: None,
            },
            Some(a) => {
                let detail = if a.name != f.name {
                    Some(format!("applied as `{}`, embedded as `{}`", a.name, f.name))
                } else if a.checksum != f.checksum.to_string() {
                    Some("the SQL changed after it was applied (checksum differs)".to_string())
                } else {
                    None
                };
                StatusRow {
                    version: f.version,
                    name: f.name.clone(),
                    state: if detail.is_some() {
                        State::Divergent
                    } else {
                        State::Applied
                    },
                    applied_on: Some(a.applied_on.clone()),
                    no_transaction: f.no_transaction,
                    detail,
                }
            }
        };
        rows.push(row);
    }
    for a in applied {
        if !files.iter().any(|f| f.version == a.version) {
            rows.push(StatusRow {
                version: a.version,
                name: a.name.clone(),
                state: State::Missing,
                applied_on: Some(a.applied_on.clone()),
                no_transaction: false,
                detail: Some("applied, but not among the embedded migrations".into()),
            });
        }
    }
    rows.sort_by_key(|r| r.version);
    rows
}

/// Divergent or missing rows, as one message; None when history and files agree.
pub fn disagreement(rows: &[StatusRow]) -> Option<String> {
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| matches!(r.state, State::Divergent | State::Missing))
        .map(|r| {
            format!(
                "V{}__{} is {}{}",
                r.version,
                r.name,
                if r.state == State::Divergent {
                    "divergent"
                } else {
                    "missing"
                },
                r.detail
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    (!bad.is_empty()).then(|| bad.join("; "))
}

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
    let result = apply_locked(client, &files, opts).await;
    unlock(client).await;
    result
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
        crate::preflight::check(client, m).await?;
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
    // 0.5 s, 1 s, then 2 s between attempts: short enough to catch a quiet moment.
    Duration::from_millis(250u64 << attempt.min(3))
}

/// When `e` is a lock not granted in time and retries remain: report, back off,
/// and say "retry". Anything else is for the caller to report.
async fn retry_after_lock_timeout(
    e: &(dyn std::error::Error + 'static),
    attempt: &mut u32,
    m: &MigrationFile,
    opts: &ApplyOptions,
) -> bool {
    if !is_lock_timeout(e) || *attempt >= opts.retries {
        return false;
    }
    *attempt += 1;
    let wait = backoff(*attempt);
    say(&format!(
        "  {}: a lock was not granted within {} ms; retry {}/{} in {} ms",
        m.label(),
        opts.lock_timeout_ms,
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
            .set_abort_divergent(true)
            .set_abort_missing(true);
        match runner.run_async(client).await {
            Ok(_) => return Ok(()),
            Err(e) if retry_after_lock_timeout(&e, &mut attempt, m, opts).await => continue,
            Err(e) => {
                let mut message = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    if let Some(pg) = s.downcast_ref::<tokio_postgres::Error>() {
                        message = crate::runner::db_message(pg);
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
/// `CREATE INDEX CONCURRENTLY` is dropped and rebuilt.
async fn apply_no_transaction(
    client: &mut Client,
    m: &MigrationFile,
    opts: &ApplyOptions,
) -> Result<(), MigrateError> {
    let index_re = regex::Regex::new(
        r#"(?is)^\s*create\s+(?:unique\s+)?index\s+concurrently\s+(?:if\s+not\s+exists\s+)?("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)\s+on\s+(?:only\s+)?((?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)(?:\s*\.\s*(?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*))?)"#,
    )
    .map_err(|e| MigrateError::Database(e.to_string()))?;
    for stmt in sqlsplit::split(&m.sql) {
        if let Some(c) = index_re.captures(&stmt) {
            drop_invalid_index(client, &c[1], &c[2]).await?;
        }
        let mut attempt = 0;
        loop {
            match client.batch_execute(&stmt).await {
                Ok(()) => break,
                Err(e) if retry_after_lock_timeout(&e, &mut attempt, m, opts).await => continue,
                Err(e) => {
                    return Err(MigrateError::Failed {
                        migration: m.label(),
                        message: format!(
                            "{} (statement: {}); the statements before it are done and will be re-run safely",
                            crate::runner::db_message(&e),
                            stmt.lines().next().unwrap_or("")
                        ),
                    })
                }
            }
        }
    }
    record(client, m).await
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

/// Write the history row for a no-transaction migration, as refinery would.
async fn record(client: &Client, m: &MigrationFile) -> Result<(), MigrateError> {
    client
        .batch_execute(&format!(
            "create table if not exists {HISTORY_TABLE}(version int4 primary key, name varchar(255), applied_on varchar(255), checksum varchar(255))"
        ))
        .await?;
    let applied_on = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    client
        .execute(
            &format!("insert into {HISTORY_TABLE}(version, name, applied_on, checksum) values ($1, $2, $3, $4)"),
            &[&(m.version as i32), &m.name, &applied_on, &m.checksum.to_string()],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_parse_in_order() {
        let files = embedded().unwrap();
        assert!(files.windows(2).all(|w| w[0].version < w[1].version));
    }

    #[test]
    fn crlf_and_bom_do_not_change_the_checksum() {
        let a = Migration::unapplied("V1__x", &normalise("select 1;\nselect 2;\n")).unwrap();
        let b = Migration::unapplied("V1__x", &normalise("\u{feff}select 1;\r\nselect 2;\r\n"))
            .unwrap();
        assert_eq!(a.checksum(), b.checksum());
    }

    #[test]
    fn status_classifies_history() {
        let files = vec![
            MigrationFile {
                version: 1,
                name: "a".into(),
                sql: "select 1".into(),
                no_transaction: false,
                checksum: 11,
                refinery: Migration::unapplied("V1__a", "select 1").unwrap(),
            },
            MigrationFile {
                version: 2,
                name: "b".into(),
                sql: "select 2".into(),
                no_transaction: false,
                checksum: 22,
                refinery: Migration::unapplied("V2__b", "select 2").unwrap(),
            },
        ];
        let applied = |v: u32, n: &str, c: &str| Applied {
            version: v,
            name: n.into(),
            applied_on: String::new(),
            checksum: c.into(),
        };
        let rows = status(&files, &[applied(1, "a", "99"), applied(3, "c", "1")]);
        let states: Vec<State> = rows.iter().map(|r| r.state).collect();
        assert_eq!(
            states,
            vec![State::Divergent, State::Pending, State::Missing]
        );
        assert!(disagreement(&rows).unwrap().contains("V1__a is divergent"));
        let ok = status(&files, &[applied(1, "a", "11")]);
        assert!(disagreement(&ok).is_none());
    }
}

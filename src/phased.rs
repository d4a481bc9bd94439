//! Data and probe checks run in two phases. The check's SQL is a *plan*: one row
//! per object with the query that examines it, built from the catalog with
//! `format('%I')`. The engine then runs each query — data queries inside the
//! audit's read-only snapshot, probes in their own transaction as the app role,
//! always rolled back. Each query returns one row: `ok boolean, evidence text`.
//!
//! Plan columns (by name): `object text`, `query text`, and optionally
//! `args text[]` (bound to the query and setup as `$1..$n`, text: cast them),
//! `skip_reason text` (any non-null value makes the check skipped), `unknown_reason
//! text` (non-null: the object is unknown with this reason and nothing is read, e.g.
//! row level security hides rows of its table from the auditing role), and for probes
//! `role text` (the role to become), `setup text` (a statement run first, e.g.
//! `select set_config($2, $1, true)`), `refusal_ok boolean` (an error from the query
//! means the database refused, which is what the probe wants), `attempts int` (a
//! write probe's candidate rows: the query gets the attempt number 0, 1, … as one more
//! argument after `args` and runs under a savepoint; only a refusal by a policy or a
//! privilege (SQLSTATE 42501) proves isolation, any other error (a foreign key, a
//! unique, a trigger) makes that row inconclusive and the next one is tried; ok NULL
//! from the query means no candidate is left; all inconclusive is unknown).
//!
//! A data check may instead describe a row test (`hit`, see `crate::scan`): the engine
//! then answers the tests of every data check on one table with one shared scan, and
//! `query` renders the outcome from the figures that scan gives.

use crate::config::LoadedConfig;
use crate::connection::{connect, ConnectOptions};
use crate::runner::{db_message, Row3};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

pub(crate) struct Step {
    pub(crate) object: String,
    pub(crate) query: String,
    pub(crate) args: Vec<String>,
    role: Option<String>,
    setup: Option<String>,
    refusal_ok: bool,
    /// Candidate rows a write probe tries (0: one plain attempt).
    attempts: u32,
    /// A row test answered by a shared scan (data checks only).
    pub(crate) part: Option<crate::scan::Part>,
}

fn col<T: for<'a> tokio_postgres::types::FromSql<'a>>(r: &Row, name: &str) -> Option<T> {
    r.columns()
        .iter()
        .position(|c| c.name() == name)
        .and_then(|i| r.try_get::<_, Option<T>>(i).ok().flatten())
}

/// Read the plan; `Err(Ok(reason))` when the plan says the check cannot run here
/// (`no.map(skipped)` is then the check's outcome: the skip, or the error).
pub(crate) fn plan(rows: &[Row]) -> Result<Vec<Step>, Result<String, String>> {
    let mut steps = vec![];
    for r in rows {
        if let Some(reason) = col::<String>(r, "skip_reason") {
            return Err(Ok(reason));
        }
        if let (Some(object), Some(reason)) = (
            col::<String>(r, "object"),
            col::<String>(r, "unknown_reason"),
        ) {
            // Nothing to read: the verdict is unknown, with the reason.
            steps.push(Step {
                object,
                query: "select null::boolean as ok, $1::text as evidence".into(),
                args: vec![reason],
                role: None,
                setup: None,
                refusal_ok: false,
                attempts: 0,
                part: None,
            });
            continue;
        }
        let (Some(object), Some(query)) = (col::<String>(r, "object"), col::<String>(r, "query"))
        else {
            return Err(Err(
                "a data or probe check's plan must return object and query columns".into(),
            ));
        };
        let part = match col::<String>(r, "hit") {
            None => None,
            Some(hit) => {
                let (Some(scan), Some(key)) = (col::<String>(r, "scan"), col(r, "scan_key")) else {
                    return Err(Err(format!(
                        "{object}: a plan row with hit must give scan and scan_key"
                    )));
                };
                Some(crate::scan::Part {
                    scan,
                    key,
                    join: col(r, "scan_join"),
                    hit,
                    detail: col(r, "detail"),
                    lowest: col(r, "lowest"),
                })
            }
        };
        steps.push(Step {
            object,
            query,
            args: col::<Vec<String>>(r, "args").unwrap_or_default(),
            role: col(r, "role"),
            setup: col(r, "setup"),
            refusal_ok: col(r, "refusal_ok").unwrap_or(false),
            attempts: col::<i32>(r, "attempts").map_or(0, |n| n.clamp(0, 20) as u32),
            part,
        });
    }
    Ok(steps)
}

pub(crate) fn skipped(reason: String) -> Vec<Row3> {
    vec![(String::new(), None, reason)]
}

pub(crate) fn outcome(object: &str, rows: &[Row]) -> Result<Row3, String> {
    let r = rows.first().ok_or_else(|| {
        format!("{object}: the query returned no row (it must return ok, evidence)")
    })?;
    let ok: Option<bool> = r
        .try_get(0)
        .map_err(|e| format!("{object}: column ok: {e}"))?;
    let evidence: Option<String> = r
        .try_get(1)
        .map_err(|e| format!("{object}: column evidence: {e}"))?;
    // ok NULL: the query could not judge the object (unknown, SPEC §3)
    Ok((object.to_string(), ok, evidence.unwrap_or_default()))
}

pub(crate) fn bind(args: &[String]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

/// Each data query in the audit's read-only snapshot, under its statement_timeout:
/// the plan's row tests share one scan per table (`crate::scan`), its other queries
/// run as they are.
pub async fn run_data(
    client: &Client,
    rows: &[Row],
    config: &LoadedConfig,
) -> Result<Vec<Row3>, String> {
    let steps = match plan(rows) {
        Ok(s) => s,
        Err(no) => return no.map(skipped),
    };
    let plans = [steps];
    crate::scan::raise_work_mem(client, config).await;
    let mut outcomes = crate::scan::Outcomes::default();
    for unit in crate::scan::units(&plans, &[0]) {
        outcomes.extend(crate::scan::run_unit(client, &plans, &unit, config).await);
    }
    crate::scan::finish(client, 0, &plans[0], &outcomes).await
}

/// Each probe on its own connection, in a transaction that is always rolled back.
pub async fn run_probes(
    rows: &[Row],
    target: Option<&ConnectOptions>,
    config: &LoadedConfig,
) -> Result<Vec<Row3>, String> {
    let steps = match plan(rows) {
        Ok(s) => s,
        Err(no) => return no.map(skipped),
    };
    if steps.is_empty() {
        return Ok(vec![]);
    }
    let target = target.ok_or("probes need a connection of their own")?;
    let client = connect(&target.clone().with_application_name("pg-integrity probe"))
        .await
        .map_err(|e| e.to_string())?;
    let audit = &config.config.audit;
    let mut out = vec![];
    for step in steps {
        client
            .batch_execute(&format!(
                "begin isolation level read committed, read write; set local statement_timeout = {}; set local lock_timeout = {}",
                audit.statement_timeout_ms, audit.lock_timeout_ms
            ))
            .await
            .map_err(|e| db_message(&e))?;
        let result = probe_one(&client, &step).await;
        // Whatever happened, nothing a probe did survives.
        client
            .batch_execute("rollback")
            .await
            .map_err(|e| db_message(&e))?;
        out.push(result?);
    }
    Ok(out)
}

/// Leads every statement a probe sends. pg_stat_statements keeps it in the stored
/// text, and every check that reads tracked statements leaves such statements out
/// (`checks/lib/tracked_statements.sql`): what a probe does is never read back as the
/// application's behaviour.
pub const PROBE_MARKER: &str = "/* pg-integrity probe */";

async fn probe_one(client: &Client, step: &Step) -> Result<Row3, String> {
    let args = bind(&step.args);
    let marked = |sql: &str| format!("{PROBE_MARKER} {sql}");
    if let Some(role) = &step.role {
        client
            .query(&marked("select set_config('role', $1, true)"), &[role])
            .await
            .map_err(|e| {
                format!(
                    "{}: cannot become role {role}: {}",
                    step.object,
                    db_message(&e)
                )
            })?;
    }
    if let Some(setup) = &step.setup {
        let n = count_params(setup);
        client
            .query(&marked(setup), &args[..n.min(args.len())])
            .await
            .map_err(|e| format!("{}: setup failed: {}", step.object, db_message(&e)))?;
    }
    if step.attempts > 0 {
        return probe_candidates(client, step).await;
    }
    let n = count_params(&step.query);
    match client
        .query(&marked(&step.query), &args[..n.min(args.len())])
        .await
    {
        Ok(rows) => outcome(&step.object, &rows),
        Err(e) if step.refusal_ok && e.as_db_error().is_some() => Ok((
            step.object.clone(),
            Some(true),
            format!(
                "refused: {}",
                e.as_db_error()
                    .map_or(String::new(), |d| d.message().to_string())
            ),
        )),
        Err(e) => Err(format!("{}: {}", step.object, db_message(&e))),
    }
}

/// A write probe over up to `step.attempts` candidate rows, each under a savepoint:
/// the first row that moves (not ok), or a refusal by a policy or privilege (ok),
/// decides; a row stopped by anything else (a foreign key from its children, a unique,
/// a trigger) proves nothing about isolation, and the next row is tried. When every
/// candidate was stopped that way the object is unknown, with the first such error.
async fn probe_candidates(client: &Client, step: &Step) -> Result<Row3, String> {
    let mut inconclusive: Vec<String> = vec![];
    for attempt in 0..step.attempts {
        let mut args = step.args.clone();
        args.push(attempt.to_string());
        let bound = bind(&args);
        client
            .batch_execute("savepoint pgi_probe_row")
            .await
            .map_err(|e| db_message(&e))?;
        let sql = format!("{PROBE_MARKER} {}", step.query);
        let n = count_params(&step.query);
        match client.query(&sql, &bound[..n.min(bound.len())]).await {
            Ok(rows) => {
                let (object, ok, evidence) = outcome(&step.object, &rows)?;
                if ok.is_some() {
                    return Ok((object, ok, evidence));
                }
                break; // no candidate left
            }
            Err(e) => {
                let Some(db) = e.as_db_error() else {
                    return Err(format!("{}: {e}", step.object));
                };
                if db.code() == &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE {
                    return Ok((
                        step.object.clone(),
                        Some(true),
                        format!("refused: {}", db.message()),
                    ));
                }
                inconclusive.push(format!("{} ({})", db.message(), db.code().code()));
                client
                    .batch_execute("rollback to savepoint pgi_probe_row")
                    .await
                    .map_err(|e| db_message(&e))?;
            }
        }
    }
    Ok(match inconclusive.first() {
        None => (
            step.object.clone(),
            Some(true),
            "no row it may see and update could be tried".into(),
        ),
        Some(first) => (
            step.object.clone(),
            None,
            format!(
                "inconclusive: {} candidate row{} could not be moved, but not by a policy or a privilege (e.g. {first}): a constraint or trigger stopped {}, which proves nothing about isolation; verify the table's WITH CHECK policy, or probe with rows that have no such ties",
                inconclusive.len(),
                if inconclusive.len() == 1 { "" } else { "s" },
                if inconclusive.len() == 1 { "it" } else { "them" },
            ),
        ),
    })
}

/// The highest `$n` a statement uses (it may use fewer than the plan's args).
pub(crate) fn count_params(sql: &str) -> usize {
    let b = sql.as_bytes();
    let mut max = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let mut j = i + 1;
            let mut n = 0usize;
            while j < b.len() && b[j].is_ascii_digit() {
                n = n * 10 + (b[j] - b'0') as usize;
                j += 1;
            }
            if j > i + 1 && (j >= b.len() || b[j] != b'$') {
                max = max.max(n);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    max
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_positional_parameters() {
        assert_eq!(
            super::count_params("select $1::uuid, $3 from t where x = $2"),
            3
        );
        assert_eq!(super::count_params("select 1"), 0);
        assert_eq!(super::count_params("select $tag$ x $tag$"), 0);
    }
}

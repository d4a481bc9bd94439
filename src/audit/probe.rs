//! Probes: each query of a probe check's plan run on a connection of its own, as the
//! role the plan names, in a read-write transaction that is always rolled back.

use crate::audit::outcome::Row3;
use crate::audit::plan::{bind, count_params, outcome, plan, skipped, Step};
use crate::audit::session::{locked_evidence, object_fault, ObjectFault};
use crate::config::LoadedConfig;
use crate::db::connection::{connect, ConnectOptions};
use crate::db::{db_message, watch};
use tokio_postgres::{Client, Row};

/// The application_name of the connection probes run on.
pub const PROBE_APPLICATION_NAME: &str = "pg-integrity probe";

/// Where probes run: the connection an audit opened for them before any check ran
/// (so that it is registered as one of the audit's own, see `execute::register`), or
/// a target to connect to (`checks test`, one check at a time).
#[derive(Clone, Copy)]
pub enum ProbeConnection<'a> {
    Open(&'a tokio::sync::Mutex<Client>),
    Connect(&'a ConnectOptions),
}

/// Each probe on its own connection, in a transaction that is always rolled back.
pub async fn run_probes(
    rows: &[Row],
    conn: Option<ProbeConnection<'_>>,
    config: &LoadedConfig,
) -> Result<Vec<Row3>, String> {
    let steps = match plan(rows) {
        Ok(s) => s,
        Err(no) => return no.map(skipped),
    };
    if steps.is_empty() {
        return Ok(vec![]);
    }
    match conn.ok_or("probes need a connection of their own")? {
        ProbeConnection::Open(client) => run_steps(&*client.lock().await, steps, config).await,
        ProbeConnection::Connect(target) => {
            let client = connect(&target.clone().with_application_name(PROBE_APPLICATION_NAME))
                .await
                .map_err(|e| e.to_string())?;
            run_steps(&client, steps, config).await
        }
    }
}

/// Run a probe check's steps on `client`, each in a transaction rolled back.
async fn run_steps(
    client: &Client,
    steps: Vec<Step>,
    config: &LoadedConfig,
) -> Result<Vec<Row3>, String> {
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
        let result = probe_one(client, &step).await;
        watch::note(client, &result);
        // Whatever happened, nothing a probe did survives.
        let rolled_back = client
            .batch_execute("rollback")
            .await
            .map_err(|e| db_message(&e));
        watch::note(client, &rolled_back);
        rolled_back?;
        // A table dropped mid-audit is skipped; one locked past lock_timeout is unknown.
        match result {
            Err(e) => match object_fault(&e) {
                Some(ObjectFault::Vanished) => {}
                Some(ObjectFault::Locked) => {
                    out.push((step.object.clone(), None, locked_evidence(&step.object, &e)))
                }
                None => return Err(e),
            },
            Ok(row) => out.push(row),
        }
    }
    Ok(out)
}

/// Leads every statement a probe sends. pg_stat_statements keeps it in the stored
/// text, and every check that reads tracked statements leaves such statements out
/// (`checks/lib/tracked_statements.sql`): what a probe does is never read back as the
/// application's behaviour.
pub const PROBE_MARKER: &str = "/* pg-integrity probe */";

/// `sql` as a probe sends it: behind [`PROBE_MARKER`].
fn marked(sql: &str) -> String {
    format!("{PROBE_MARKER} {sql}")
}

async fn probe_one(client: &Client, step: &Step) -> Result<Row3, String> {
    let args = bind(&step.args);
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
        let sql = marked(&step.query);
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

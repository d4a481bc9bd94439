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
        // the probe's connection has the client-side deadline of its own (each statement
        // of the step tells its answer)
        let waiting = watch::waiting(client);
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
        drop(waiting);
        rolled_back?;
        // A table dropped mid-audit is skipped; one locked past lock_timeout is unknown.
        match result {
            Err(e) => match object_fault(&e) {
                Some(ObjectFault::Vanished) if gone(client, &step.object, &e).await => {}
                Some(ObjectFault::Locked) => {
                    out.push((step.object.clone(), None, locked_evidence(&step.object, &e)))
                }
                Some(ObjectFault::Vanished) | None => return Err(e),
            },
            Ok(row) => out.push(row),
        }
    }
    Ok(out)
}

/// Whether a probe's "undefined" error is its own table dropped mid-audit: the error
/// names the table of the object ('<role> on <schema.table>') and the catalog, read
/// now on the probe's connection (outside any transaction), no longer has it. Any
/// other relation error is the check's. The internal errors of an object dropped
/// under a running statement ("cache lookup failed", "could not open relation with
/// OID") arise only from concurrent DDL.
async fn gone(client: &Client, object: &str, message: &str) -> bool {
    if !message.contains("(42P01)") && !message.contains("(3F000)") {
        return true;
    }
    let Some((_, table)) = object.split_once(" on ") else {
        return false;
    };
    if !message.contains(&format!("\"{table}\"")) {
        return false;
    }
    let gone = client
        .query_one(
            &marked(
                "select not exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace \
                 where n.nspname || '.' || c.relname = $1::text)",
            ),
            &[&table],
        )
        .await;
    watch::note(client, &gone.as_ref().map_err(db_message));
    gone.is_ok_and(|r| r.get::<_, bool>(0))
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

/// `sql` on `client`, its answer told to [`watch`] (a probe step sends several
/// statements under one deadline).
async fn ask(
    client: &Client,
    sql: &str,
    args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let r = client.query(&marked(sql), args).await;
    watch::progress(client);
    r
}

/// How a probe's query was stopped by the server.
enum Stop {
    /// Refused by a policy or a privilege (SQLSTATE 42501): isolation holds.
    Refused(String),
    /// Not about the rows at all: an object dropped (42P01, 3F000) or locked (55P03),
    /// a timeout (57014), a lost connection (08, 57P), an internal or resource error
    /// (XX, 53, 58). The check's own error, never a refusal.
    Fault,
    /// Any other error, with its message and SQLSTATE.
    Other(String, String),
}

fn stop(e: &tokio_postgres::Error) -> Stop {
    let Some(db) = e.as_db_error() else {
        return Stop::Fault;
    };
    let code = db.code().code();
    if code == "42501" {
        return Stop::Refused(format!("refused: {}", db.message()));
    }
    let class = &code[..2];
    if ["42P01", "3F000", "55P03", "57014"].contains(&code)
        || ["08", "57", "XX", "53", "58"].contains(&class)
    {
        return Stop::Fault;
    }
    Stop::Other(db.message().to_string(), code.to_string())
}

fn code_class(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error().map(|d| &d.code().code()[..2])
}

/// The evidence of a probe stopped by an error that is neither a refusal by a policy or
/// a privilege nor a fault (a write probe: on every row): it shows nothing about
/// isolation.
fn unproven(message: &str, code: &str) -> String {
    format!(
        "inconclusive: the probe's statement failed with {message} ({code}), which is not a refusal by a policy or a privilege, so it shows nothing about isolation: a policy that reads a setting the probe does not set fails this way, while the application, which sets it, may see or write more; verify the table's policies"
    )
}

/// Whether an error that stopped a write probe's row proves nothing about isolation:
/// a constraint (class 23), a trigger or function raising (P0, 38, 39, 2F, 27000), a
/// value (class 22), a serialization failure or deadlock (40).
fn row_stopped(code: &str) -> bool {
    ["23", "P0", "38", "39", "2F", "22", "40"].contains(&&code[..2]) || code == "27000"
}

async fn probe_one(client: &Client, step: &Step) -> Result<Row3, String> {
    let args = bind(&step.args);
    if let Some(role) = &step.role {
        ask(client, "select set_config('role', $1, true)", &[role])
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
        ask(client, setup, &args[..n.min(args.len())])
            .await
            .map_err(|e| format!("{}: setup failed: {}", step.object, db_message(&e)))?;
    }
    if step.attempts > 0 {
        return probe_candidates(client, step).await;
    }
    let n = count_params(&step.query);
    match ask(client, &step.query, &args[..n.min(args.len())]).await {
        Ok(rows) => outcome(&step.object, &rows),
        Err(e) if step.refusal_ok => match stop(&e) {
            Stop::Refused(why) => Ok((step.object.clone(), Some(true), why)),
            // Under strict refusal (the membership model: the query runs with a
            // member's identity, and an error there may be that identity misread)
            // only a policy or a privilege counts as a refusal; a query the server
            // could not run (class 42: syntax, an undefined function or parameter)
            // is the check's error, any other error makes the object unknown.
            Stop::Other(..) if step.strict_refusal && code_class(&e) == Some("42") => {
                Err(format!("{}: {}", step.object, db_message(&e)))
            }
            Stop::Other(message, code) if step.strict_refusal => Ok((
                step.object.clone(),
                None,
                format!(
                    "inconclusive: the probe's query failed with {message} ({code}), which is not a refusal by a policy or a privilege, so it shows nothing about isolation"
                ),
            )),
            // A query the server could not plan (class 42: an undefined function or
            // operator, such as no equality for a `point` tenant column's count)
            // failed before any policy ran: it proves nothing, not even with the
            // context unset. 42704 is a policy's current_setting() of a setting that
            // does not exist: a refusal, below.
            Stop::Other(message, code)
                if step.error_refuses && code.starts_with("42") && code != "42704" =>
            {
                Ok((
                    step.object.clone(),
                    None,
                    format!(
                        "inconclusive: the probe's query failed with {message} ({code}) before any policy ran, so it shows nothing about isolation"
                    ),
                ))
            }
            // A probe run with the context unset on purpose: a policy that errors when
            // a setting is unset (or casts it) fails closed, a refusal.
            Stop::Other(message, _) if step.error_refuses => Ok((
                step.object.clone(),
                Some(true),
                format!("refused: {message}"),
            )),
            // A probe run with the context set: a policy failing on a setting the
            // probe does not set showed nothing, but proves nothing either.
            Stop::Other(message, code) => Ok((
                step.object.clone(),
                None,
                unproven(&message, &code),
            )),
            Stop::Fault => Err(format!("{}: {}", step.object, db_message(&e))),
        },
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
        ask(client, "savepoint pgi_probe_row", &[])
            .await
            .map_err(|e| db_message(&e))?;
        let n = count_params(&step.query);
        match ask(client, &step.query, &bound[..n.min(bound.len())]).await {
            Ok(rows) => {
                let (object, ok, evidence) = outcome(&step.object, &rows)?;
                // ok NULL on the first attempt is the query's own verdict (unknown,
                // e.g. the member's identity shows no row of its own tenants); on a
                // later one, no candidate is left
                if ok.is_some() || attempt == 0 {
                    return Ok((object, ok, evidence));
                }
                break;
            }
            Err(e) => match stop(&e) {
                Stop::Refused(why) => return Ok((step.object.clone(), Some(true), why)),
                Stop::Other(message, code) if row_stopped(&code) => {
                    inconclusive.push(format!("{message} ({code})"));
                    ask(client, "rollback to savepoint pgi_probe_row", &[])
                        .await
                        .map_err(|e| db_message(&e))?;
                }
                // the probe's own query cannot run under the membership model
                Stop::Other(..) if step.strict_refusal && code_class(&e) == Some("42") => {
                    return Err(format!("{}: {}", step.object, db_message(&e)))
                }
                // a policy or trigger failing on every row (a setting the probe does
                // not set): this table is unknown, the other tables' verdicts stand
                Stop::Other(message, code) => {
                    return Ok((step.object.clone(), None, unproven(&message, &code)))
                }
                Stop::Fault => return Err(format!("{}: {}", step.object, db_message(&e))),
            },
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

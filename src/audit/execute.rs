//! Runs checks: one read-only snapshot shared by a small pool of connections
//! (exported with `pg_export_snapshot`, adopted with `SET TRANSACTION SNAPSHOT`, as
//! `pg_dump --jobs` does). A failing check becomes `error`; the others still run.
//! The runner returns data and never prints results.

use crate::audit::outcome::{from_rows, severity_of, AuditRun, CheckResult, Row3};
use crate::audit::plan::Step;
use crate::audit::scan::{Outcomes, Unit};
use crate::audit::session::{begin_read_only, safely, Locks};
use crate::audit::{plan, probe, scan};
use crate::checks::catalog::{Catalog, Check};
use crate::checks::params::{self, ParamValue};
use crate::config::LoadedConfig;
use crate::db::connection::{connect, ConnectOptions, ConnectionError};
use crate::db::db_message;
use crate::model::{Kind, ObjectResult, Status};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_postgres::Client;

/// Work waiting for a connection: one check, or a batch of them run as one
/// statement; each with its report position. The data checks are planned each on
/// its own (`DeepPlan`, any connection), then their statements (`DeepUnit`: shared
/// scans, own queries) are spread over the connections like any other work.
enum Work {
    One(usize, Arc<Check>),
    Batch(Vec<(usize, Arc<Check>)>),
    DeepPlan(Arc<DeepPlanning>, usize),
    DeepUnit(Arc<DeepRun>, usize),
}

/// A data check's steps and the time its plan took, or its result if it does not run.
type DataPlan = Result<(Vec<Step>, u64), CheckResult>;

/// The data checks of an audit while they are planned: each plan's outcome in its
/// slot; whoever plans the last one builds the run.
struct DeepPlanning {
    checks: Vec<(usize, Arc<Check>)>,
    slots: Mutex<Vec<Option<DataPlan>>>,
    left: std::sync::atomic::AtomicUsize,
}

/// The data checks of an audit between planning and their last statement.
struct DeepRun {
    /// Report position, check, and the time its plan took.
    checks: Vec<(usize, Arc<Check>, u64)>,
    /// The steps of each check (same order as `checks`).
    plans: Vec<Vec<Step>>,
    units: Vec<Unit>,
    outcomes: Mutex<Outcomes>,
    /// Each check's time in its units, in microseconds (a unit on an empty table takes
    /// less than 1 ms); a shared scan counts for each check it serves.
    check_us: Mutex<Vec<u64>>,
    /// Units not finished yet: whoever finishes the last renders the results.
    left: std::sync::atomic::AtomicUsize,
}

/// The audit's work, shared by its connections. A connection that finds it empty
/// waits while a `DeepPlan` is being planned (its units are still to come) instead
/// of leaving: otherwise, in an audit of only data checks, the plan's connection
/// would read every table alone while the others had already gone.
struct WorkQueue {
    state: Mutex<Queued>,
    wake: tokio::sync::Notify,
}

struct Queued {
    work: VecDeque<Work>,
    /// `DeepPlan`s taken and not finished.
    planning: usize,
}

impl WorkQueue {
    fn new(work: VecDeque<Work>) -> Self {
        WorkQueue {
            state: Mutex::new(Queued { work, planning: 0 }),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The next work, or `None` once there is none and none is being planned.
    async fn next(&self) -> Option<Work> {
        loop {
            // Registered before the queue is looked at, so that a wake-up sent
            // between the look and the wait is not missed.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            {
                let mut state = self.state.lock().ok()?;
                if let Some(work) = state.work.pop_front() {
                    if matches!(work, Work::DeepPlan(..)) {
                        state.planning += 1;
                    }
                    return Some(work);
                }
                if state.planning == 0 {
                    return None;
                }
            }
            woken.await;
        }
    }

    /// A plan is done: the run's units (when it was the last plan) go first, and
    /// waiting connections wake up.
    fn planned(&self, run: Option<&Arc<DeepRun>>) {
        if let Ok(mut state) = self.state.lock() {
            if let Some(run) = run {
                for k in (0..run.units.len()).rev() {
                    state.work.push_front(Work::DeepUnit(run.clone(), k));
                }
            }
            state.planning -= 1;
        }
        self.wake.notify_waiters();
    }
}

/// Held while a `DeepPlan` runs: should planning end without saying so (a panic),
/// the waiting connections are still let go rather than left hanging.
struct Planning<'a>(Option<&'a WorkQueue>);

impl Planning<'_> {
    fn done(mut self, run: Option<&Arc<DeepRun>>) {
        if let Some(queue) = self.0.take() {
            queue.planned(run);
        }
    }
}

impl Drop for Planning<'_> {
    fn drop(&mut self) {
        if let Some(queue) = self.0.take() {
            queue.planned(None);
        }
    }
}

pub const APPLICATION_NAME: &str = "pg-integrity";

#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub jobs: usize,
    pub deep: bool,
    pub probe: bool,
    /// `--probe write`: the probes that write (always rolled back) run too.
    pub probe_write: bool,
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub progress: bool,
    /// Run catalog and runtime checks together in one statement (see `run_batch`).
    pub batch: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            jobs: 4,
            deep: false,
            probe: false,
            probe_write: false,
            only: vec![],
            skip: vec![],
            progress: false,
            batch: true,
        }
    }
}

/// What the server offers, read once before the checks run.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub database: String,
    pub version: String,
    pub version_num: i32,
    pub extensions: Vec<String>,
}

/// Which checks an audit runs, in report order. Unknown ids in --only/--skip are input errors.
pub fn select<'a>(
    catalog: &'a Catalog,
    config: &LoadedConfig,
    opts: &AuditOptions,
) -> Result<Vec<&'a Check>, String> {
    let ids = catalog.ids();
    for id in opts.only.iter().chain(&opts.skip) {
        if !ids.contains(&id.as_str()) {
            let hint = crate::diag::did_you_mean(id, ids.iter().copied()).unwrap_or_default();
            return Err(format!("unknown check id `{id}` {hint}")
                .trim_end()
                .to_string());
        }
    }
    // A probe that writes runs only when asked for by name: `--probe write`.
    if let Some(c) = opts
        .only
        .iter()
        .filter_map(|id| catalog.checks.get(id))
        .find(|c| c.writes)
    {
        if !opts.probe_write {
            return Err(format!(
                "{} writes (inside transactions that are always rolled back): run it with --probe write",
                c.id
            ));
        }
    }
    Ok(catalog
        .ordered()
        .into_iter()
        .filter(|c| !config.is_disabled(&c.id))
        .filter(|c| opts.only.is_empty() || opts.only.contains(&c.id))
        .filter(|c| !opts.skip.contains(&c.id))
        .filter(|c| match c.kind {
            Kind::Data => opts.deep || opts.only.contains(&c.id),
            Kind::Probe if c.writes => opts.probe_write,
            Kind::Probe => opts.probe || opts.only.contains(&c.id),
            _ => true,
        })
        .collect())
}

pub async fn server_info(client: &Client) -> Result<ServerInfo, tokio_postgres::Error> {
    let row = client
        .query_one(
            "select current_database()::text, current_setting('server_version'), \
             current_setting('server_version_num')::int, \
             coalesce((select array_agg(extname::text) from pg_extension), '{}')",
            &[],
        )
        .await?;
    Ok(ServerInfo {
        database: row.get(0),
        version: row.get(1),
        version_num: row.get(2),
        extensions: row.get(3),
    })
}

/// Why `check` cannot run here, if it cannot.
pub fn unmet_requirement(
    check: &Check,
    server: &ServerInfo,
    config: &LoadedConfig,
) -> Option<String> {
    let r = &check.requires;
    if let Some(v) = r.server_version {
        if server.version_num < v {
            return Some(format!(
                "needs PostgreSQL server_version_num >= {v}; this server is {}",
                server.version
            ));
        }
    }
    if let Some(ext) = &r.extension {
        if !server.extensions.iter().any(|e| e == ext) {
            return Some(format!(
                "needs the {ext} extension, which is not installed in this database"
            ));
        }
    }
    for p in &r.config {
        if params::value(&config.config, p).is_some_and(|v| v.is_empty()) {
            let d = params::describe(p).unwrap_or_else(|| p.clone());
            let key = d.split(':').next().unwrap_or(&d);
            return Some(format!("needs `{key}` in the configuration"));
        }
    }
    None
}

/// The result of a check that has no query to run (manual) or cannot run here.
fn without_query(
    check: &Arc<Check>,
    config: &LoadedConfig,
    server: &ServerInfo,
) -> Option<CheckResult> {
    let mut result = CheckResult {
        check: check.clone(),
        severity: severity_of(check, config),
        status: Status::Manual,
        reason: None,
        objects: vec![],
        duration_ms: 0,
    };
    if check.kind == Kind::Manual {
        return Some(result);
    }
    let reason = unmet_requirement(check, server, config)?;
    result.status = Status::Skipped;
    result.reason = Some(reason);
    Some(result)
}

/// Run one check inside the current transaction, under a savepoint so that an
/// error leaves the transaction usable for the next check.
pub async fn run_check(
    client: &Client,
    catalog: &Catalog,
    check: &Arc<Check>,
    config: &LoadedConfig,
    server: &ServerInfo,
    probe_target: Option<&ConnectOptions>,
) -> CheckResult {
    if let Some(done) = without_query(check, config, server) {
        return done;
    }
    let started = Instant::now();
    let rows = query_check(client, catalog, check, config, probe_target).await;
    from_rows(check, config, rows, started.elapsed().as_millis() as u64)
}

/// Plan one data check: its steps and the time the plan took, or its result when it
/// does not run (manual, unmet requirement, failed or skipped plan).
async fn plan_data_check(
    client: &Client,
    catalog: &Catalog,
    check: &Arc<Check>,
    config: &LoadedConfig,
    server: &ServerInfo,
) -> DataPlan {
    if let Some(r) = without_query(check, config, server) {
        return Err(r);
    }
    let started = Instant::now();
    let steps = check_rows(client, catalog, check, config)
        .await
        .map_err(Err)
        .and_then(|rows| plan::plan(&rows));
    let ms = started.elapsed().as_millis() as u64;
    // a plan that says the check cannot run here is a skip, a broken one an error
    steps
        .map(|steps| (steps, ms))
        .map_err(|no| from_rows(check, config, no.map(plan::skipped), ms))
}

/// Once every data check is planned: the results of those that do not run, and the
/// run of the others.
fn deep_run(
    planning: &DeepPlanning,
    config: &LoadedConfig,
) -> (Vec<(usize, CheckResult)>, Arc<DeepRun>) {
    let mut slots = planning
        .slots
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    let mut done = vec![];
    let mut planned = vec![];
    let mut plans = vec![];
    for (k, (i, check)) in planning.checks.iter().enumerate() {
        match slots.get_mut(k).and_then(Option::take) {
            Some(Ok((steps, ms))) => {
                planned.push((*i, check.clone(), ms));
                plans.push(steps);
            }
            Some(Err(result)) => done.push((*i, result)),
            None => done.push((
                *i,
                from_rows(
                    check,
                    config,
                    Err::<Vec<Row3>, _>("was not planned".into()),
                    0,
                ),
            )),
        }
    }
    let cost: Vec<u32> = planned.iter().map(|(_, c, _)| c.cost).collect();
    let units = scan::units(&plans, &cost);
    let run = DeepRun {
        check_us: Mutex::new(vec![0; planned.len()]),
        checks: planned,
        plans,
        outcomes: Mutex::new(Default::default()),
        left: units.len().into(),
        units,
    };
    (done, Arc::new(run))
}

/// The data checks' results once every unit has run. A check's time is its plan's
/// plus that of each statement it took part in (a shared scan counts for each).
async fn finish_deep(
    client: &Client,
    run: &DeepRun,
    config: &LoadedConfig,
) -> Vec<(usize, CheckResult)> {
    let outcomes = run
        .outcomes
        .lock()
        .map(|mut o| std::mem::take(&mut *o))
        .unwrap_or_default();
    let check_us = run.check_us.lock().map(|m| m.clone()).unwrap_or_default();
    let mut out = vec![];
    for (c, (i, check, plan_ms)) in run.checks.iter().enumerate() {
        let started = Instant::now();
        let rows = scan::finish(client, c, &run.plans[c], &outcomes).await;
        let units_ms = check_us.get(c).copied().unwrap_or(0) / 1000;
        let ms = plan_ms + units_ms + started.elapsed().as_millis() as u64;
        out.push((*i, from_rows(check, config, rows, ms)));
    }
    out
}

/// Whether `check` can join a batch: a plain query (catalog or runtime) that can run here.
pub(crate) fn batchable(check: &Check, server: &ServerInfo, config: &LoadedConfig) -> bool {
    matches!(check.kind, Kind::Catalog | Kind::Runtime)
        && check.sql.is_some()
        && unmet_requirement(check, server, config).is_none()
}

/// Run several catalog/runtime checks as one statement, so that the building blocks
/// they share (tables, columns, indexes, policies in scope...) are read from the
/// catalog once instead of once per check. Each check reports the statement's time.
/// If the statement fails (one broken or timed-out check spoils it), every check is
/// run again on its own, so the failure is pinned on the check that caused it.
pub async fn run_batch(
    client: &Client,
    catalog: &Catalog,
    checks: &[Arc<Check>],
    config: &LoadedConfig,
    server: &ServerInfo,
) -> Vec<CheckResult> {
    if let Ok(results) = run_batch_strict(client, catalog, checks, config).await {
        return results;
    }
    let mut out = vec![];
    for c in checks {
        out.push(run_check(client, catalog, c, config, server, None).await);
    }
    out
}

/// `run_batch` without the fallback: the batch statement's error, if it fails.
pub(crate) async fn run_batch_strict(
    client: &Client,
    catalog: &Catalog,
    checks: &[Arc<Check>],
    config: &LoadedConfig,
) -> Result<Vec<CheckResult>, String> {
    let started = Instant::now();
    let refs: Vec<&Check> = checks.iter().map(|c| c.as_ref()).collect();
    let composed = catalog.compose_batch(&refs);
    let values = bind_values(&composed.params, config);
    let args: Vec<_> = values.iter().map(ParamValue::as_sql).collect();
    let grouped = batch_rows(client, &composed.sql, &args, checks.len()).await?;
    let ms = started.elapsed().as_millis() as u64;
    Ok(checks
        .iter()
        .zip(grouped)
        .map(|(c, rows)| from_rows(c, config, Ok(rows), ms))
        .collect())
}

/// The configured value of each named parameter (empty when unset), in `$n` order.
fn bind_values(names: &[String], config: &LoadedConfig) -> Vec<ParamValue> {
    names
        .iter()
        .map(|p| params::value(&config.config, p).unwrap_or(ParamValue::Text(String::new())))
        .collect()
}

/// Run a batch statement under a savepoint and sort its rows by check, as they
/// stream in (a 5,000-table audit returns ~150,000 rows: they are not held twice).
/// Any error, or a row that is not (int4, text, bool, text, text[]), fails the whole
/// batch.
async fn batch_rows(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    checks: usize,
) -> Result<Vec<Vec<ObjectResult>>, String> {
    use futures_util::TryStreamExt;
    let read = async {
        let stream = client
            .query_raw(sql, params.iter().copied())
            .await
            .map_err(|e| db_message(&e))?;
        futures_util::pin_mut!(stream);
        let mut grouped: Vec<Vec<ObjectResult>> = vec![vec![]; checks];
        while let Some(r) = stream.try_next().await.map_err(|e| db_message(&e))? {
            let k: i32 = r.try_get(0).map_err(|e| e.to_string())?;
            let object: Option<String> = r.try_get(1).map_err(|e| e.to_string())?;
            let ok: Option<bool> = r.try_get(2).map_err(|e| e.to_string())?;
            let evidence: Option<String> = r.try_get(3).map_err(|e| e.to_string())?;
            let related: Option<Vec<String>> = r.try_get(4).map_err(|e| e.to_string())?;
            grouped
                .get_mut(k as usize)
                .ok_or_else(|| format!("row for unknown check {k}"))?
                .push(ObjectResult {
                    object: object.unwrap_or_default(),
                    ok,
                    evidence: evidence.unwrap_or_default(),
                    related: related.unwrap_or_default(),
                });
        }
        Ok::<_, String>(grouped)
    };
    safely(client, Locks::Keep, read).await
}

/// The (object, ok, evidence) rows of a check: its query's rows, or for data and
/// probe checks, the outcome of each query its planning SQL generated.
async fn query_check(
    client: &Client,
    catalog: &Catalog,
    check: &Check,
    config: &LoadedConfig,
    probe_target: Option<&ConnectOptions>,
) -> Result<Vec<ObjectResult>, String> {
    let rows = check_rows(client, catalog, check, config).await?;
    let outcomes = match check.kind {
        Kind::Data => scan::run_data(client, &rows, config).await?,
        Kind::Probe => probe::run_probes(&rows, probe_target, config).await?,
        _ => return rows.iter().map(object_row).collect(),
    };
    Ok(outcomes.into_iter().map(Into::into).collect())
}

/// The rows of a check's own SQL (its result, or the plan of a data or probe check),
/// with its parameters bound from the configuration.
async fn check_rows(
    client: &Client,
    catalog: &Catalog,
    check: &Check,
    config: &LoadedConfig,
) -> Result<Vec<tokio_postgres::Row>, String> {
    let composed = catalog.compose(check);
    let values = bind_values(&composed.params, config);
    let refs: Vec<_> = values.iter().map(ParamValue::as_sql).collect();
    let read = client.query(&composed.sql, &refs);
    safely(client, Locks::Keep, async {
        read.await.map_err(|e| db_message(&e))
    })
    .await
}

/// A row of a check's own query: object, ok, evidence, then optional named columns
/// (`related text[]`: the other objects a finding stands for).
fn object_row(r: &tokio_postgres::Row) -> Result<ObjectResult, String> {
    if r.len() < 3 {
        return Err("a check must return the columns object, ok, evidence".into());
    }
    // Related objects belong to findings (and unknowns): as in a batch, an ok row has none.
    let ok: Option<bool> = r
        .try_get::<_, Option<bool>>(1)
        .map_err(|e| format!("column ok: {e}"))?;
    let related = match r.columns().iter().position(|c| c.name() == "related") {
        Some(i) if i >= 3 && ok != Some(true) => r
            .try_get::<_, Option<Vec<String>>>(i)
            .map_err(|e| format!("column related (text[]): {e}"))?
            .unwrap_or_default(),
        _ => vec![],
    };
    Ok(ObjectResult {
        object: r
            .try_get::<_, Option<String>>(0)
            .map_err(|e| format!("column object: {e}"))?
            .unwrap_or_default(),
        ok,
        evidence: r
            .try_get::<_, Option<String>>(2)
            .map_err(|e| format!("column evidence: {e}"))?
            .unwrap_or_default(),
        related,
    })
}

/// Audit the database `target` points at.
pub async fn audit(
    target: &ConnectOptions,
    catalog: &Catalog,
    config: &LoadedConfig,
    opts: &AuditOptions,
    checks: Vec<&Check>,
) -> Result<AuditRun, ConnectionError> {
    let started_at = chrono::Utc::now();
    let clock = Instant::now();
    let target = target.clone().with_application_name(APPLICATION_NAME);
    let first = connect(&target).await?;
    let server = server_info(&first)
        .await
        .map_err(|e| ConnectionError::Other {
            target: target.redacted(),
            message: db_message(&e),
        })?;
    let setup_err = |e: tokio_postgres::Error| ConnectionError::Other {
        target: target.redacted(),
        message: db_message(&e),
    };
    begin_read_only(&first, config, None)
        .await
        .map_err(setup_err)?;
    // Share one snapshot; a server that cannot export one (e.g. some poolers) still
    // gets an audit, each connection with its own snapshot.
    let snapshot: Option<String> = first
        .query_one("select pg_export_snapshot()", &[])
        .await
        .ok()
        .map(|r| r.get(0))
        .filter(|s: &String| s.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));

    let runnable: Vec<Arc<Check>> = checks.into_iter().map(|c| Arc::new(c.clone())).collect();
    let automated = runnable.iter().filter(|c| c.kind != Kind::Manual).count();
    let mut batch = vec![];
    let mut deep = vec![];
    let mut single = vec![];
    for (i, c) in runnable.iter().cloned().enumerate() {
        if opts.batch && batchable(&c, &server, config) {
            batch.push((i, c));
        } else if opts.batch && c.kind == Kind::Data {
            deep.push((i, c));
        } else {
            single.push((i, c));
        }
    }
    // No more connections than checks, except for data checks, whose statements (one
    // or more per table) are spread over all of them.
    let jobs = if deep.is_empty() {
        opts.jobs.clamp(1, automated.max(1))
    } else {
        opts.jobs.max(1)
    };
    let mut clients = vec![first];
    for _ in 1..jobs {
        let Ok(c) = connect(&target).await else { break };
        if begin_read_only(&c, config, snapshot.as_deref())
            .await
            .is_err()
        {
            break;
        }
        clients.push(c);
    }

    // Catalog and runtime checks go first, as one batched statement; the rest
    // (data scans, probes) follow one by one on the other connections, costliest
    // first (by `cost`), so that a long scan does not start last and run alone.
    let mut work: VecDeque<Work> = VecDeque::new();
    single.sort_by_key(|(i, c)| (std::cmp::Reverse(c.cost), *i));
    work.extend(single.into_iter().map(|(i, c)| Work::One(i, c)));
    for b in catalog.partition_batch(batch, jobs).into_iter().rev() {
        work.push_front(Work::Batch(b));
    }
    // Planned first, costliest first: the scans they queue are the longest work of a
    // deep audit.
    if !deep.is_empty() {
        deep.sort_by_key(|(i, c)| (std::cmp::Reverse(c.cost), *i));
        let planning = Arc::new(DeepPlanning {
            slots: Mutex::new(deep.iter().map(|_| None).collect()),
            left: deep.len().into(),
            checks: deep,
        });
        for k in (0..planning.checks.len()).rev() {
            work.push_front(Work::DeepPlan(planning.clone(), k));
        }
    }
    let queue = Arc::new(WorkQueue::new(work));
    let progress = Progress::new(
        opts.progress && std::io::stderr().is_terminal(),
        runnable.len(),
    );
    let catalog = Arc::new(catalog.clone());
    let config = Arc::new(config.clone());
    let server = Arc::new(server);
    let mut handles = vec![];
    for client in clients {
        let queue = queue.clone();
        let catalog = catalog.clone();
        let config = config.clone();
        let server = server.clone();
        let progress = progress.clone();
        let probe_target = target.clone();
        handles.push(tokio::spawn(async move {
            let mut out = vec![];
            let mut work_mem_raised = false;
            loop {
                match queue.next().await {
                    None => break,
                    Some(Work::One(i, check)) => {
                        progress.start(&check.id);
                        out.push((
                            i,
                            run_check(
                                &client,
                                &catalog,
                                &check,
                                &config,
                                &server,
                                Some(&probe_target),
                            )
                            .await,
                        ));
                    }
                    Some(Work::DeepPlan(deep, k)) => {
                        let planning = Planning(Some(&queue));
                        let check = &deep.checks[k].1;
                        progress.start(&check.id);
                        let plan =
                            plan_data_check(&client, &catalog, check, &config, &server).await;
                        if let Ok(mut slots) = deep.slots.lock() {
                            slots[k] = Some(plan);
                        }
                        let was = deep.left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                        if was == 1 {
                            let (done, run) = deep_run(&deep, &config);
                            out.extend(done);
                            planning.done(Some(&run));
                            if run.units.is_empty() {
                                out.extend(finish_deep(&client, &run, &config).await);
                            }
                        } else {
                            planning.done(None);
                        }
                    }
                    Some(Work::DeepUnit(run, k)) => {
                        if !work_mem_raised {
                            scan::raise_work_mem(&client, &config).await;
                            work_mem_raised = true;
                        }
                        let started = Instant::now();
                        let found =
                            scan::run_unit(&client, &run.plans, &run.units[k], &config).await;
                        if let Ok(mut o) = run.outcomes.lock() {
                            o.extend(found);
                        }
                        if let Ok(mut us) = run.check_us.lock() {
                            let took = started.elapsed().as_micros() as u64;
                            for c in run.units[k].checks() {
                                us[c] += took;
                            }
                        }
                        let was = run.left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                        if was == 1 {
                            out.extend(finish_deep(&client, &run, &config).await);
                        }
                    }
                    Some(Work::Batch(batch)) => {
                        progress.start(&format!("{} catalog checks", batch.len()));
                        let (at, checks): (Vec<usize>, Vec<Arc<Check>>) = batch.into_iter().unzip();
                        let results = run_batch(&client, &catalog, &checks, &config, &server).await;
                        out.extend(at.into_iter().zip(results));
                    }
                }
            }
            let _ = client.batch_execute("rollback").await;
            out
        }));
    }
    let mut results: Vec<(usize, CheckResult)> = vec![];
    for h in handles {
        if let Ok(mut r) = h.await {
            results.append(&mut r);
        }
    }
    progress.finish();
    results.sort_by_key(|(i, _)| *i);
    Ok(AuditRun {
        database: server.database.clone(),
        server_version: server.version.clone(),
        server_version_num: server.version_num,
        started_at,
        duration_ms: clock.elapsed().as_millis() as u64,
        results: results.into_iter().map(|(_, r)| r).collect(),
    })
}

/// "which check is running, how many are done" on stderr, only on a terminal.
#[derive(Clone)]
struct Progress {
    inner: Option<Arc<Mutex<(usize, usize)>>>,
}

impl Progress {
    fn new(enabled: bool, total: usize) -> Self {
        Progress {
            inner: enabled.then(|| Arc::new(Mutex::new((0, total)))),
        }
    }
    fn start(&self, id: &str) {
        if let Some(m) = &self.inner {
            if let Ok(mut g) = m.lock() {
                g.0 += 1;
                eprint!("\r\x1b[2K[{}/{}] {id}", g.0, g.1);
            }
        }
    }
    fn finish(&self) {
        if self.inner.is_some() {
            eprint!("\r\x1b[2K");
        }
    }
}

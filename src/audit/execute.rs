//! Runs a [`Plan`]: one read-only snapshot shared by a small pool of connections
//! (exported with `pg_export_snapshot`, adopted with `SET TRANSACTION SNAPSHOT`, as
//! `pg_dump --jobs` does), each taking work from one queue. A failing check becomes
//! `error`; the others still run. Nothing here reads a parameter from the
//! configuration (`plan` bound them) or prints results.

pub(crate) use crate::audit::plan::batchable;
pub use crate::audit::plan::{select, server_info, AuditOptions, ServerInfo, APPLICATION_NAME};

use crate::audit::outcome::{from_rows, AuditRun, CheckResult, Row3};
use crate::audit::plan::{Batch, Bound, Plan, PlanError, Planned, ScanSettings, Step};
use crate::audit::probe::ProbeConnection;
use crate::audit::scan::{Outcomes, Unit};
use crate::audit::session::{begin_read_only, safely, Locks};
use crate::audit::{plan, probe, scan};
use crate::checks::catalog::{Catalog, Check};
use crate::config::LoadedConfig;
use crate::db::connection::{connect, ConnectOptions, ConnectionError};
use crate::db::db_message;
use crate::model::{Kind, ObjectResult};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_postgres::Client;

/// Work waiting for a connection: one check, or a batch of them run as one
/// statement; each with its report position. The data checks are planned each on
/// its own (`DeepPlan`, any connection), then their statements (`DeepUnit`: shared
/// scans, own queries) are spread over the connections like any other work.
enum Work {
    One(Planned),
    Batch(Batch),
    DeepPlan(Arc<DeepPlanning>, usize),
    DeepUnit(Arc<DeepRun>, usize),
}

/// A data check's steps and the time its plan took, or its result if it does not run.
type DataPlan = Result<(Vec<Step>, u64), CheckResult>;

/// The data checks of an audit while they are planned: each plan's outcome in its
/// slot; whoever plans the last one builds the run.
struct DeepPlanning {
    checks: Vec<Planned>,
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

/// Run a plan: the read-only session's connections take its work from one queue, and
/// each check's result lands in its report position.
pub async fn run(plan: Plan) -> Result<AuditRun, ConnectionError> {
    let Plan {
        target,
        first,
        server,
        jobs,
        selected,
        done,
        batches,
        deep,
        singles,
        scan,
        config,
        progress,
        started_at,
        clock,
        ..
    } = plan;
    let clients = open_session(first, &target, &config, jobs).await?;
    // Probes get their connection now, so that it is registered as the audit's own.
    let probe = match singles.iter().any(|p| p.check.kind == Kind::Probe) {
        true => probe_connection(&target).await,
        false => None,
    };
    register(&clients, probe.as_ref()).await;
    let shared = Arc::new(Shared {
        queue: WorkQueue::new(queue(batches, deep, singles)),
        progress: Progress::new(progress && std::io::stderr().is_terminal(), selected),
        config,
        scan,
        probe: probe.map(tokio::sync::Mutex::new),
        probe_target: target,
    });
    let handles: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(worker(client, shared.clone())))
        .collect();
    let mut results = done;
    for h in handles {
        if let Ok(mut r) = h.await {
            results.append(&mut r);
        }
    }
    shared.progress.finish();
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

/// Plan and run in one call (the `demo` and the report tests; `audit` plans first to
/// refuse a bad scope before anything runs).
pub async fn audit(
    target: &ConnectOptions,
    catalog: &Catalog,
    config: &LoadedConfig,
    opts: &AuditOptions,
    checks: Vec<&Check>,
) -> Result<AuditRun, ConnectionError> {
    let plan = match plan::build(target, catalog, config, opts, checks).await {
        Ok(plan) => plan,
        Err(PlanError::Connection(e)) => return Err(e),
        Err(PlanError::Scope(message)) => {
            return Err(ConnectionError::Other {
                target: target.redacted(),
                message,
            })
        }
    };
    run(plan).await
}

/// The session: `first` and up to `jobs - 1` more connections, each in a read-only
/// transaction on the snapshot `first` exports. A server that cannot export one (e.g.
/// some poolers) still gets an audit, each connection with its own snapshot; a
/// connection that cannot be opened leaves the audit with fewer.
async fn open_session(
    first: Client,
    target: &ConnectOptions,
    config: &LoadedConfig,
    jobs: usize,
) -> Result<Vec<Client>, ConnectionError> {
    begin_read_only(&first, config, None)
        .await
        .map_err(|e| ConnectionError::Other {
            target: target.redacted(),
            message: db_message(&e),
        })?;
    let snapshot: Option<String> = first
        .query_one("select pg_export_snapshot()", &[])
        .await
        .ok()
        .map(|r| r.get(0))
        .filter(|s: &String| s.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
    let mut clients = vec![first];
    for _ in 1..jobs {
        let Ok(c) = connect(target).await else { break };
        if begin_read_only(&c, config, snapshot.as_deref())
            .await
            .is_err()
        {
            break;
        }
        clients.push(c);
    }
    Ok(clients)
}

/// The connection the audit's probes run on (each probe in its own transaction, always
/// rolled back); without it, each probe check connects when it runs.
async fn probe_connection(target: &ConnectOptions) -> Option<Client> {
    let target = target
        .clone()
        .with_application_name(probe::PROBE_APPLICATION_NAME);
    connect(&target).await.ok()
}

/// Tell every connection of the session which backends are the audit's own
/// (`pg_integrity.audit_pids`, transaction-local): the checks that read
/// pg_stat_activity leave them out by pid (`checks/lib/audit_sessions.sql`), never by
/// a name an application could share. Before any work starts.
async fn register(clients: &[Client], probe: Option<&Client>) {
    let mut pids = vec![];
    for c in clients.iter().chain(probe) {
        if let Ok(row) = c.query_one("select pg_backend_pid()", &[]).await {
            pids.push(row.get::<_, i32>(0).to_string());
        }
    }
    let pids = pids.join(",");
    for c in clients {
        let _ = c
            .execute(
                "select set_config('pg_integrity.audit_pids', $1, true)",
                &[&pids],
            )
            .await;
    }
}

/// The order work is taken in: data checks' plans first (the scans they queue are the
/// longest work of a deep audit), then the batches, then the single checks.
fn queue(batches: Vec<Batch>, deep: Vec<Planned>, singles: Vec<Planned>) -> VecDeque<Work> {
    let mut work: VecDeque<Work> = batches.into_iter().map(Work::Batch).collect();
    work.extend(singles.into_iter().map(Work::One));
    if !deep.is_empty() {
        let planning = Arc::new(DeepPlanning {
            slots: Mutex::new(deep.iter().map(|_| None).collect()),
            left: deep.len().into(),
            checks: deep,
        });
        for k in (0..planning.checks.len()).rev() {
            work.push_front(Work::DeepPlan(planning.clone(), k));
        }
    }
    work
}

/// What every connection of the session shares.
struct Shared {
    queue: WorkQueue,
    progress: Progress,
    config: Arc<LoadedConfig>,
    scan: ScanSettings,
    /// The probes' connection, opened with the session (see `register`).
    probe: Option<tokio::sync::Mutex<Client>>,
    probe_target: ConnectOptions,
}

impl Shared {
    fn probes(&self) -> ProbeConnection<'_> {
        match &self.probe {
            Some(client) => ProbeConnection::Open(client),
            None => ProbeConnection::Connect(&self.probe_target),
        }
    }
}

/// One connection's loop: take work until none is left, then end its transaction.
async fn worker(client: Client, shared: Arc<Shared>) -> Vec<(usize, CheckResult)> {
    let config = &shared.config;
    let mut out = vec![];
    let mut work_mem_raised = false;
    while let Some(work) = shared.queue.next().await {
        match work {
            Work::One(p) => {
                shared.progress.start(&p.check.id);
                let result = run_planned(&client, &p, config, Some(shared.probes())).await;
                out.push((p.at, result));
            }
            Work::Batch(batch) => {
                shared
                    .progress
                    .start(&format!("{} catalog checks", batch.checks.len()));
                out.extend(run_batch(&client, &batch, config).await);
            }
            Work::DeepPlan(deep, k) => out.extend(plan_deep(&client, &shared, &deep, k).await),
            Work::DeepUnit(run, k) => {
                if !work_mem_raised {
                    scan::raise_work_mem(&client, &shared.scan).await;
                    work_mem_raised = true;
                }
                out.extend(run_deep_unit(&client, &shared, &run, k).await);
            }
        }
    }
    let _ = client.batch_execute("rollback").await;
    out
}

/// Plan the `k`th data check; whoever plans the last one builds the run and queues
/// its units (or, with none, renders the results at once).
async fn plan_deep(
    client: &Client,
    shared: &Shared,
    deep: &Arc<DeepPlanning>,
    k: usize,
) -> Vec<(usize, CheckResult)> {
    let planning = Planning(Some(&shared.queue));
    let planned = &deep.checks[k];
    shared.progress.start(&planned.check.id);
    let steps = plan_data_check(client, planned, &shared.config).await;
    if let Ok(mut slots) = deep.slots.lock() {
        slots[k] = Some(steps);
    }
    if deep.left.fetch_sub(1, Ordering::AcqRel) != 1 {
        planning.done(None);
        return vec![];
    }
    let (mut done, run) = deep_run(deep, &shared.config);
    planning.done(Some(&run));
    if run.units.is_empty() {
        done.extend(finish_deep(client, &run, &shared.config).await);
    }
    done
}

/// Run the `k`th unit of a deep audit (a shared scan or one step's query); whoever
/// finishes the last renders the data checks' results.
async fn run_deep_unit(
    client: &Client,
    shared: &Shared,
    run: &DeepRun,
    k: usize,
) -> Vec<(usize, CheckResult)> {
    let started = Instant::now();
    let found = scan::run_unit(client, &run.plans, &run.units[k], &shared.scan).await;
    if let Ok(mut o) = run.outcomes.lock() {
        o.extend(found);
    }
    if let Ok(mut us) = run.check_us.lock() {
        let took = started.elapsed().as_micros() as u64;
        for c in run.units[k].checks() {
            us[c] += took;
        }
    }
    if run.left.fetch_sub(1, Ordering::AcqRel) == 1 {
        return finish_deep(client, run, &shared.config).await;
    }
    vec![]
}

/// Run one check on its own, inside the current transaction; `checks test` runs each
/// check this way. A check that cannot run here gets its result without a query.
pub async fn run_check(
    client: &Client,
    catalog: &Catalog,
    check: &Arc<Check>,
    config: &LoadedConfig,
    server: &ServerInfo,
    probe_target: Option<&ConnectOptions>,
) -> CheckResult {
    match plan::single(catalog, check, config, server) {
        Ok(planned) => {
            let probes = probe_target.map(ProbeConnection::Connect);
            run_planned(client, &planned, config, probes).await
        }
        Err(done) => done,
    }
}

/// Run a planned check's statement (under a savepoint, so that an error leaves the
/// transaction usable for the next check), then its per-object queries if it has any.
async fn run_planned(
    client: &Client,
    planned: &Planned,
    config: &LoadedConfig,
    probes: Option<ProbeConnection<'_>>,
) -> CheckResult {
    let started = Instant::now();
    let rows = query_check(client, planned, config, probes).await;
    from_rows(
        &planned.check,
        config,
        rows,
        started.elapsed().as_millis() as u64,
    )
}

/// Plan one data check: its steps and the time the plan took, or its result when the
/// plan fails or says the check cannot run here.
async fn plan_data_check(client: &Client, planned: &Planned, config: &LoadedConfig) -> DataPlan {
    let started = Instant::now();
    let steps = check_rows(client, &planned.query)
        .await
        .map_err(Err)
        .and_then(|rows| plan::plan(&rows));
    let ms = started.elapsed().as_millis() as u64;
    // a plan that says the check cannot run here is a skip, a broken one an error
    steps
        .map(|steps| (steps, ms))
        .map_err(|no| from_rows(&planned.check, config, no.map(plan::skipped), ms))
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
    for (k, p) in planning.checks.iter().enumerate() {
        match slots.get_mut(k).and_then(Option::take) {
            Some(Ok((steps, ms))) => {
                planned.push((p.at, p.check.clone(), ms));
                plans.push(steps);
            }
            Some(Err(result)) => done.push((p.at, result)),
            None => done.push((
                p.at,
                from_rows(
                    &p.check,
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

/// Run a batch: several catalog/runtime checks as one statement, so that the building
/// blocks they share (tables, columns, indexes, policies in scope...) are read from
/// the catalog once instead of once per check. Each check reports the statement's
/// time. If the statement fails (one broken or timed-out check spoils it), every check
/// runs again on its own, so the failure is pinned on the check that caused it.
async fn run_batch(
    client: &Client,
    batch: &Batch,
    config: &LoadedConfig,
) -> Vec<(usize, CheckResult)> {
    if let Ok(results) = batch_results(client, batch, config).await {
        return batch.checks.iter().map(|p| p.at).zip(results).collect();
    }
    let mut out = vec![];
    for p in &batch.checks {
        out.push((p.at, run_planned(client, p, config, None).await));
    }
    out
}

/// A batch of the given checks without the fallback: the batch statement's error, if
/// it fails (`checks test` runs each check this way too, to prove it batches).
pub(crate) async fn run_batch_strict(
    client: &Client,
    catalog: &Catalog,
    checks: &[Arc<Check>],
    config: &LoadedConfig,
) -> Result<Vec<CheckResult>, String> {
    let planned = checks
        .iter()
        .enumerate()
        .map(|(at, c)| plan::planned(catalog, at, c.clone(), config))
        .collect();
    batch_results(client, &plan::batch_of(catalog, planned, config), config).await
}

/// The results of a batch's statement, in the batch's order.
async fn batch_results(
    client: &Client,
    batch: &Batch,
    config: &LoadedConfig,
) -> Result<Vec<CheckResult>, String> {
    let started = Instant::now();
    let grouped = batch_rows(client, &batch.query, batch.checks.len()).await?;
    let ms = started.elapsed().as_millis() as u64;
    Ok(batch
        .checks
        .iter()
        .zip(grouped)
        .map(|(p, rows)| from_rows(&p.check, config, Ok(rows), ms))
        .collect())
}

/// Run a batch statement under a savepoint and sort its rows by check, as they
/// stream in (a 5,000-table audit returns ~150,000 rows: they are not held twice).
/// Any error, or a row that is not (int4, text, bool, text, text[]), fails the whole
/// batch.
async fn batch_rows(
    client: &Client,
    query: &Bound,
    checks: usize,
) -> Result<Vec<Vec<ObjectResult>>, String> {
    use futures_util::TryStreamExt;
    let args = query.args();
    let read = async {
        let stream = client
            .query_raw(&query.sql, args.iter().copied())
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
    planned: &Planned,
    config: &LoadedConfig,
    probes: Option<ProbeConnection<'_>>,
) -> Result<Vec<ObjectResult>, String> {
    let rows = check_rows(client, &planned.query).await?;
    let outcomes = match planned.check.kind {
        Kind::Data => scan::run_data(client, &rows, &ScanSettings::of(config)).await?,
        Kind::Probe => probe::run_probes(&rows, probes, config).await?,
        _ => return rows.iter().map(object_row).collect(),
    };
    Ok(outcomes.into_iter().map(Into::into).collect())
}

/// The rows of a check's own statement (its result, or the plan of a data or probe
/// check), under a savepoint.
async fn check_rows(client: &Client, query: &Bound) -> Result<Vec<tokio_postgres::Row>, String> {
    let args = query.args();
    let read = client.query(&query.sql, &args);
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

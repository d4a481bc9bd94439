//! Planning an audit: the selected checks, the configuration and what the server offers
//! become a [`Plan`]: which checks run together as one batched statement, which run on
//! their own, which are data checks answered by shared scans, and which cannot run here
//! (manual checks, unmet requirements) with the reason. Every parameter a check's SQL
//! names is bound here, once (`Bound`): `execute` runs the statements it is handed and
//! never reads a parameter from the configuration.
//!
//! The steps that a data or probe check's own SQL returns (its per-object queries) are
//! read by `steps`, re-exported here for the unit kinds (`scan`, `probe`).

pub(crate) use crate::audit::steps::{bind, count_params, outcome, plan, skipped, Part, Step};

use crate::audit::outcome::{severity_of, CheckResult};
use crate::audit::scope::{self, Scope};
use crate::checks::catalog::{Catalog, Check, Composed};
use crate::checks::params::{self, ParamValue};
use crate::config::LoadedConfig;
use crate::db::connection::{connect, ConnectOptions, ConnectionError};
use crate::db::db_message;
use crate::model::{Kind, Status};
use std::sync::Arc;
use std::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

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
    /// Run catalog and runtime checks together in one statement (see `execute`).
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

/// What the server offers, read once before the checks are planned.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub database: String,
    pub version: String,
    pub version_num: i32,
    pub extensions: Vec<String>,
}

/// A statement with its parameters bound from the configuration.
#[derive(Debug, Clone)]
pub struct Bound {
    pub sql: String,
    pub values: Vec<ParamValue>,
}

impl Bound {
    fn of(composed: Composed, config: &LoadedConfig) -> Self {
        let values = params::bind(&config.config, &composed.params);
        Bound {
            sql: composed.sql,
            values,
        }
    }

    /// The bound values, as the driver takes them.
    pub(crate) fn args(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(ParamValue::as_sql).collect()
    }
}

/// A check that runs: its position in the report, and its own statement (its result
/// rows, or for data and probe checks the plan of their per-object queries).
pub struct Planned {
    pub at: usize,
    pub check: Arc<Check>,
    pub query: Bound,
}

impl AsRef<Check> for Planned {
    fn as_ref(&self) -> &Check {
        &self.check
    }
}

/// Catalog and runtime checks run as one statement (their shared building blocks read
/// once); each keeps its own statement for the fallback when the batch fails.
pub struct Batch {
    pub checks: Vec<Planned>,
    pub query: Bound,
}

/// What a shared scan needs from the configuration.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// `audit.work_mem_mb`, set (transaction-local) on a connection before its scans.
    pub work_mem_mb: String,
    /// `audit.sample_percent` as text, empty for a full read (`$1` of a scan).
    pub sample_percent: String,
}

impl ScanSettings {
    pub(crate) fn of(config: &LoadedConfig) -> Self {
        let sample_percent = match params::value(&config.config, "sample_percent") {
            Some(ParamValue::Text(p)) => p,
            _ => String::new(),
        };
        ScanSettings {
            work_mem_mb: config.config.audit.work_mem_mb.to_string(),
            sample_percent,
        }
    }
}

/// `--jobs` lowered to what the server can spare.
#[derive(Debug, Clone, Copy)]
pub struct JobsCap {
    pub requested: usize,
    pub capped: usize,
    pub free_connections: i64,
}

/// An audit, planned: the connection it started on, the server's facts, and its work.
pub struct Plan {
    pub target: ConnectOptions,
    pub(crate) first: Client,
    pub server: ServerInfo,
    pub scope: Scope,
    /// The tenancy model the rls checks judge by, and why (for the report's header).
    pub tenancy: Option<(String, String)>,
    /// The same, with what the membership model's policies read (the checks' words).
    pub tenancy_facts: Option<scope::TenancyFacts>,
    /// No table in scope has the tenant column: why, with the likely tenant tables
    /// (`scope::untenanted`; `scope::explain_untenanted` uses it after the run).
    pub untenanted: Option<String>,
    pub jobs: usize,
    pub jobs_cap: Option<JobsCap>,
    /// How many checks were selected (progress shows n of this).
    pub selected: usize,
    /// Checks that do not run (manual, or a requirement this database does not meet).
    pub done: Vec<(usize, CheckResult)>,
    pub batches: Vec<Batch>,
    /// Data checks answered by shared scans, costliest first.
    pub deep: Vec<Planned>,
    /// Everything else, one statement each, costliest first.
    pub singles: Vec<Planned>,
    pub scan: ScanSettings,
    pub config: Arc<LoadedConfig>,
    pub progress: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub clock: Instant,
}

/// Why an audit could not be planned.
#[derive(Debug)]
pub enum PlanError {
    Connection(ConnectionError),
    /// Reading the scope failed (the database's answer).
    Scope(String),
}

impl From<ConnectionError> for PlanError {
    fn from(e: ConnectionError) -> Self {
        PlanError::Connection(e)
    }
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

/// Plan an audit of `target`: connect, read the server's facts and the scope, then
/// arrange the selected checks (`arrange`).
pub async fn build(
    target: &ConnectOptions,
    catalog: &Catalog,
    config: &LoadedConfig,
    opts: &AuditOptions,
    checks: Vec<&Check>,
) -> Result<Plan, PlanError> {
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
    let scope = scope::inspect(&first, catalog, config)
        .await
        .map_err(PlanError::Scope)?;
    let tenancy_facts = if catalog.fragments.contains_key("tenancy_model") {
        scope::tenancy_model(&first, catalog, config)
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let tenancy = tenancy_facts
        .as_ref()
        .map(|f| (f.model.clone(), f.reason.clone()));
    let untenanted = if catalog.fragments.contains_key("tenant_candidates") {
        scope::untenanted(&first, catalog, config)
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let capped = scope::cap_jobs(opts.jobs, scope.free_connections);
    let jobs_cap = (capped < opts.jobs).then_some(JobsCap {
        requested: opts.jobs,
        capped,
        free_connections: scope.free_connections,
    });
    let mut plan = Plan {
        target,
        first,
        server,
        scope,
        tenancy,
        tenancy_facts,
        untenanted,
        jobs: capped,
        jobs_cap,
        selected: checks.len(),
        done: vec![],
        batches: vec![],
        deep: vec![],
        singles: vec![],
        scan: ScanSettings::of(config),
        config: Arc::new(config.clone()),
        progress: opts.progress,
        started_at,
        clock,
    };
    arrange(&mut plan, catalog, opts.batch, checks);
    Ok(plan)
}

/// Sort the checks into the plan's kinds of work, bind their statements, and settle
/// how many connections run them: no more than there are checks, except for data
/// checks, whose statements (one or more per table) are spread over all of them.
fn arrange(plan: &mut Plan, catalog: &Catalog, batch: bool, checks: Vec<&Check>) {
    let config = plan.config.clone();
    let automated = checks.iter().filter(|c| c.kind != Kind::Manual).count();
    let mut batched = vec![];
    for (at, c) in checks.into_iter().enumerate() {
        let check = Arc::new(c.clone());
        if let Some(result) = without_query(&check, &config, &plan.server) {
            plan.done.push((at, result));
            continue;
        }
        let planned = planned(catalog, at, check, &config);
        if batch && batchable(&planned.check, &plan.server, &config) {
            batched.push((at, planned));
        } else if batch && planned.check.kind == Kind::Data {
            plan.deep.push(planned);
        } else {
            plan.singles.push(planned);
        }
    }
    plan.jobs = if plan.deep.is_empty() {
        plan.jobs.clamp(1, automated.max(1))
    } else {
        plan.jobs.max(1)
    };
    // Costliest first (by `cost`), so that a long scan does not start last and run alone.
    let costliest = |p: &Planned| (std::cmp::Reverse(p.check.cost), p.at);
    plan.singles.sort_by_key(costliest);
    plan.deep.sort_by_key(costliest);
    for group in catalog.partition_batch(batched, plan.jobs) {
        let checks: Vec<Planned> = group.into_iter().map(|(_, p)| p).collect();
        plan.batches.push(batch_of(catalog, checks, &config));
    }
}

/// One batch: the checks' combined statement, bound.
pub(crate) fn batch_of(catalog: &Catalog, checks: Vec<Planned>, config: &LoadedConfig) -> Batch {
    let refs: Vec<&Check> = checks.iter().map(|p| p.check.as_ref()).collect();
    let query = Bound::of(catalog.compose_batch(&refs), config);
    Batch { checks, query }
}

/// A check planned on its own (`checks test` runs each check this way), or its result
/// when it does not run here.
pub(crate) fn single(
    catalog: &Catalog,
    check: &Arc<Check>,
    config: &LoadedConfig,
    server: &ServerInfo,
) -> Result<Planned, CheckResult> {
    if let Some(result) = without_query(check, config, server) {
        return Err(result);
    }
    Ok(planned(catalog, 0, check.clone(), config))
}

/// `check` at report position `at`, its own statement bound.
pub(crate) fn planned(
    catalog: &Catalog,
    at: usize,
    check: Arc<Check>,
    config: &LoadedConfig,
) -> Planned {
    let query = Bound::of(catalog.compose(&check), config);
    Planned { at, check, query }
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

/// Whether `check` can join a batch: a plain query (catalog or runtime) that can run here.
pub(crate) fn batchable(check: &Check, server: &ServerInfo, config: &LoadedConfig) -> bool {
    matches!(check.kind, Kind::Catalog | Kind::Runtime)
        && check.sql.is_some()
        && unmet_requirement(check, server, config).is_none()
}

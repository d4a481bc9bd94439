//! `checks test`: every `[[test]]` case of every check, each in a fresh database
//! created for it and dropped after. The same harness runs under `cargo test`.
//!
//! Cases whose setup creates or alters roles (cluster-wide objects) run one at a
//! time, and the roles they created are dropped after them; the others run
//! concurrently.
//!
//! [`run_variants`] runs one check's cases against many variants of the check
//! (mutants, scripts/mutate.py): a case's database and session are set up once and
//! every variant still alive is judged there in turn, as [`run_cases`] judges the
//! check (the batched run is compared for the unmutated check, not for each
//! variant); a variant stops at the first case it fails.

use crate::audit::execute::{batchable, run_batch_strict, run_check, server_info};
use crate::audit::outcome::CheckResult;
use crate::audit::session::begin_read_only;
use crate::checks::catalog::{Catalog, Check, TestCase};
use crate::config::LoadedConfig;
use crate::db::connection::{connect, ConnectOptions, ConnectionError};
use crate::db::db_message;
use crate::model::Status;
use futures_util::stream::{self, StreamExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_postgres::Client;

#[derive(Debug, Clone)]
pub struct CaseOutcome {
    pub check: String,
    pub case: String,
    /// None: passed; Some(why) failed.
    pub failure: Option<String>,
    pub skipped: Option<String>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn touches_roles(setup: &str) -> bool {
    let s = setup.to_ascii_lowercase();
    [
        "create role",
        "create user",
        "alter role",
        "alter user",
        "drop role",
        "grant ",
    ]
    .iter()
    .any(|k| s.contains(k))
}

/// Run the cases of `checks` (all of the catalog when empty) against the server
/// `admin` points at; `admin` must be allowed to create databases.
pub async fn run_cases(
    admin: &ConnectOptions,
    catalog: &Catalog,
    only: &[String],
    jobs: usize,
    preload_only: bool,
) -> Result<Vec<CaseOutcome>, ConnectionError> {
    // Fail early and clearly if the server is unreachable.
    drop(connect(admin).await?);
    let catalog = Arc::new(catalog.clone());
    let mut parallel = vec![];
    let mut serial = vec![];
    for check in catalog.checks.values() {
        if !only.is_empty() && !only.contains(&check.id) {
            continue;
        }
        for case in &check.tests {
            if preload_only && case.preloaded.is_empty() {
                continue;
            }
            let item = (Arc::new(check.clone()), case.clone());
            if touches_roles(&case.setup) {
                serial.push(item);
            } else {
                parallel.push(item);
            }
        }
    }
    let admin = Arc::new(admin.clone());
    let run = |(check, case): (Arc<Check>, TestCase)| {
        let admin = admin.clone();
        let catalog = catalog.clone();
        async move { run_case(&admin, &catalog, &check, &case).await }
    };
    let mut out: Vec<CaseOutcome> = stream::iter(parallel)
        .map(run)
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    for item in serial {
        out.push(run(item).await);
    }
    out.sort_by(|a, b| (&a.check, &a.case).cmp(&(&b.check, &b.case)));
    Ok(out)
}

async fn run_case(
    admin_opts: &ConnectOptions,
    catalog: &Catalog,
    check: &Arc<Check>,
    case: &TestCase,
) -> CaseOutcome {
    let mut outcome = CaseOutcome {
        check: check.id.clone(),
        case: case.name.clone(),
        failure: None,
        skipped: None,
    };
    match run_case_inner(admin_opts, catalog, check, case).await {
        Ok(None) => {}
        Ok(Some(skip)) => outcome.skipped = Some(skip),
        Err(e) => outcome.failure = Some(e),
    }
    outcome
}

/// One case in a database of its own: Ok(None) passed, Ok(Some(why)) skipped.
async fn run_case_inner(
    admin_opts: &ConnectOptions,
    catalog: &Catalog,
    check: &Arc<Check>,
    case: &TestCase,
) -> Result<Option<String>, String> {
    let admin = connect(admin_opts).await.map_err(|e| e.to_string())?;
    if let Some(skip) = unmet(&admin, case).await? {
        return Ok(Some(skip));
    }
    let config = case_config(case)?;
    let db = CaseDb::create(&admin).await?;
    let result = in_database(admin_opts, &db.name, catalog, check, case, &config).await;
    db.drop(&admin).await;
    result.map(|_| None)
}

/// Why the server cannot run `case` (its version or preloaded libraries), if so.
async fn unmet(admin: &Client, case: &TestCase) -> Result<Option<String>, String> {
    let version: i32 = admin
        .query_one("select current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| db_message(&e))?
        .get(0);
    if let Some(min) = case.min_server_version {
        if version < min {
            return Ok(Some(format!("needs server_version_num >= {min}")));
        }
    }
    if let Some(max) = case.max_server_version {
        if version > max {
            return Ok(Some(format!("needs server_version_num <= {max}")));
        }
    }
    let preload: String = admin
        .query_one("select current_setting('shared_preload_libraries')", &[])
        .await
        .map_err(|e| db_message(&e))?
        .get(0);
    let loaded: Vec<&str> = preload
        .split(',')
        .map(|l| l.trim().trim_matches('"'))
        .collect();
    if let Some(lib) = case
        .preloaded
        .iter()
        .find(|l| !loaded.contains(&l.as_str()))
    {
        return Ok(Some(format!("needs {lib} in shared_preload_libraries")));
    }
    if let Some(lib) = case
        .not_preloaded
        .iter()
        .find(|l| loaded.contains(&l.as_str()))
    {
        return Ok(Some(format!("needs a server without {lib} preloaded")));
    }
    Ok(None)
}

fn case_config(case: &TestCase) -> Result<LoadedConfig, String> {
    match &case.config {
        Some(text) => LoadedConfig::parse("test config", text).map_err(|e| e.summary),
        None => Ok(LoadedConfig::default()),
    }
}

/// A case's throwaway database, and the roles that existed before it (the roles a
/// case creates are dropped with its database).
struct CaseDb {
    name: String,
    version: i32,
    roles_before: Vec<String>,
}

impl CaseDb {
    async fn create(admin: &Client) -> Result<Self, String> {
        let name = format!(
            "pgi_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            chrono::Utc::now().timestamp_subsec_nanos()
        );
        let version: i32 = admin
            .query_one("select current_setting('server_version_num')::int", &[])
            .await
            .map_err(|e| db_message(&e))?
            .get(0);
        let roles_before: Vec<String> = admin
            .query("select rolname::text from pg_roles", &[])
            .await
            .map_err(|e| db_message(&e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        admin
            .batch_execute(&format!("create database \"{name}\""))
            .await
            .map_err(|e| db_message(&e))?;
        Ok(CaseDb {
            name,
            version,
            roles_before,
        })
    }

    async fn drop(self, admin: &Client) {
        let db = &self.name;
        let drop_sql = if self.version >= 130000 {
            format!("drop database if exists \"{db}\" with (force)")
        } else {
            format!("drop database if exists \"{db}\"")
        };
        let _ = admin.batch_execute(&drop_sql).await;
        let new_roles: Vec<String> = admin
            .query(
                "select rolname::text from pg_roles where not (rolname = any($1))",
                &[&self.roles_before],
            )
            .await
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default();
        for role in new_roles {
            let _ = admin
                .batch_execute(&format!(
                    "drop role if exists \"{}\"",
                    role.replace('"', "\"\"")
                ))
                .await;
        }
    }
}

async fn in_database(
    admin_opts: &ConnectOptions,
    db: &str,
    catalog: &Catalog,
    check: &Arc<Check>,
    case: &TestCase,
    config: &LoadedConfig,
) -> Result<(), String> {
    let opts = admin_opts.clone().with_dbname(db);
    let client = set_up(&opts, case).await?;
    let fresh = reconnect(&opts, case).await?;
    let session = fresh.as_ref().unwrap_or(&client);
    check_case(session, &opts, catalog, check, case, config, true).await
}

/// With `reconnect`, the new session the check runs in (the setup's stays open).
async fn reconnect(opts: &ConnectOptions, case: &TestCase) -> Result<Option<Client>, String> {
    if !case.reconnect {
        return Ok(None);
    }
    connect(opts).await.map(Some).map_err(|e| e.to_string())
}

/// A session on the case's database with the case's setup run in it (the check
/// runs in this session: a setup may `set role` or hold dblink connections).
async fn set_up(opts: &ConnectOptions, case: &TestCase) -> Result<Client, String> {
    let client = connect(opts).await.map_err(|e| e.to_string())?;
    if !case.setup.trim().is_empty() {
        client
            .batch_execute(&case.setup)
            .await
            .map_err(|e| format!("setup failed: {}", db_message(&e)))?;
    }
    Ok(client)
}

/// Run the check in `client`'s session as an audit would, inside a read-only
/// transaction that is rolled back, and judge it: on its own first, then (when it
/// passes and `compare_batched`) batched, which must give the same verdicts.
async fn check_case(
    client: &Client,
    opts: &ConnectOptions,
    catalog: &Catalog,
    check: &Arc<Check>,
    case: &TestCase,
    config: &LoadedConfig,
    compare_batched: bool,
) -> Result<(), String> {
    let server = server_info(client).await.map_err(|e| db_message(&e))?;
    // A variant (a mutant, `compare_batched` false) is not held to the output contract
    // again: the mutation operators never touch the output columns' names or types (a
    // mutant that broke them would fail its run anyway), and the contract's prepare
    // (a parse and analysis of the composed SQL) was an eighth of a variant's judgement.
    if check.sql.is_some() && compare_batched {
        contract(client, catalog, check).await?;
    }
    // the audit's own session: read-only snapshot, timeouts, planner settings
    begin_read_only(client, config, None)
        .await
        .map_err(|e| db_message(&e))?;
    let result = run_check(client, catalog, check, config, &server, Some(opts)).await;
    if let Err(e) = judge(&result, case) {
        let _ = client.batch_execute("rollback").await;
        return Err(e);
    }
    // An audit runs catalog and runtime checks batched: the case must hold there too.
    let batched = if compare_batched && batchable(check, &server, config) {
        Some(run_batch_strict(client, catalog, std::slice::from_ref(check), config).await)
    } else {
        None
    };
    let _ = client.batch_execute("rollback").await;
    match batched {
        Some(Err(e)) => Err(format!("does not run batched: {e}")),
        Some(Ok(b)) => same_verdicts(&result, b.first()),
        None => Ok(()),
    }
}

/// Verdicts, not evidence: the first run is itself tracked by pg_stat_statements,
/// so evidence that counts tracked statements moves.
fn same_verdicts(single: &CheckResult, batched: Option<&CheckResult>) -> Result<(), String> {
    let rows = |r: &CheckResult| {
        let mut v: Vec<_> = r
            .objects
            .iter()
            .map(|o| (o.object.clone(), o.ok, o.related.clone()))
            .collect();
        v.sort();
        (r.status, v)
    };
    if batched.is_some_and(|b| rows(b) == rows(single)) {
        Ok(())
    } else {
        Err("batched, the check gives other verdicts than on its own".into())
    }
}

fn describe(result: &CheckResult) -> String {
    let mut s = format!("got {}", result.status);
    if let Some(r) = &result.reason {
        s.push_str(&format!(" ({r})"));
    }
    if !result.objects.is_empty() {
        let rows: Vec<String> = result
            .objects
            .iter()
            .map(|o| {
                let related = if o.related.is_empty() {
                    String::new()
                } else {
                    format!(" (related: {})", o.related.join(", "))
                };
                let verdict = match o.ok {
                    Some(true) => "ok",
                    Some(false) => "NOT OK",
                    None => "UNKNOWN",
                };
                format!("{verdict} {}: {}{related}", o.object, o.evidence)
            })
            .collect();
        s.push_str(&format!("\n      {}", rows.join("\n      ")));
    }
    s
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// The case's expectations against the check's result.
fn judge(result: &CheckResult, case: &TestCase) -> Result<(), String> {
    if result.status != case.expect {
        return Err(format!("expected {}, {}", case.expect, describe(result)));
    }
    let objects = |it: &mut dyn Iterator<Item = &crate::model::ObjectResult>| {
        sorted(&it.map(|o| o.object.clone()).collect::<Vec<_>>())
    };
    if let Some(want) = &case.failing {
        if sorted(want) != objects(&mut result.findings()) {
            return Err(format!(
                "expected failing {:?}, {}",
                sorted(want),
                describe(result)
            ));
        }
    }
    if let Some(want) = &case.unknown {
        if sorted(want) != objects(&mut result.unknowns()) {
            return Err(format!(
                "expected unknown {:?}, {}",
                sorted(want),
                describe(result)
            ));
        }
    }
    for (object, want) in &case.related {
        let got = result
            .objects
            .iter()
            .find(|o| &o.object == object)
            .map(|o| sorted(&o.related));
        if got.as_ref() != Some(&sorted(want)) {
            return Err(format!(
                "expected {object} to stand for related {:?}, {}",
                sorted(want),
                describe(result)
            ));
        }
    }
    // the evidence of any row, or the reason of a skipped check
    let said = |want: &str| {
        result.objects.iter().any(|o| o.evidence.contains(want))
            || result.reason.as_deref().is_some_and(|r| r.contains(want))
    };
    if let Some(want) = case.evidence.iter().find(|w| !said(w)) {
        return Err(format!(
            "expected evidence containing {want:?}, {}",
            describe(result)
        ));
    }
    if let Some(not) = case.evidence_absent.iter().find(|w| said(w)) {
        return Err(format!(
            "expected no evidence containing {not:?}, {}",
            describe(result)
        ));
    }
    if result.status == Status::Error {
        return Err(describe(result));
    }
    Ok(())
}

/// A variant of the check under test (a mutant, scripts/mutate.py): a catalog of
/// its own in which the check (same id, same cases) or a building block it uses
/// differs.
pub struct Variant {
    pub name: String,
    pub catalog: Catalog,
}

/// What a check's cases say about one variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariantVerdict {
    /// Every case that ran passed.
    Survived,
    /// The variant failed this case where the unmutated check, in the same
    /// database and session, passed it before and after.
    Killed { case: String, why: String },
    /// The variant failed this case and so did the unmutated check, even on a
    /// fresh database: the case cannot tell them apart here.
    Undecided { case: String, why: String },
}

/// How many variants are judged between two judgings of the unmutated check.
const SEGMENT: usize = 16;

/// A variant's statements are cancelled after this long (an audit's default limit is
/// 30 s): a mutant still running after 5 s on a case's handful of tables, where the
/// unmutated check takes milliseconds, fails the case as timed out (mutation tools
/// count a timeout as killed) instead of holding the run for 30 s.
const VARIANT_TIMEOUT_MS: u64 = 5_000;

/// A catalog and the check in it that a case is run against.
type Subject<'a> = (&'a Catalog, &'a Arc<Check>);

/// Run check `id`'s cases (as `base` holds them) against every variant, case by
/// case: each case's database and setup are made once, the unmutated check must
/// pass there (else Err), and each variant not yet killed is judged in the same
/// session, as `run_cases` judges a check (see `CaseRun::vary`); a variant stops at
/// its first failing case. Cases are taken in the order of the check file.
pub async fn run_variants(
    admin_opts: &ConnectOptions,
    base: &Catalog,
    id: &str,
    variants: &[Variant],
) -> Result<Vec<VariantVerdict>, String> {
    let check = Arc::new(base.checks.get(id).ok_or(format!("no check {id}"))?.clone());
    let mutants: Vec<Arc<Check>> = variants
        .iter()
        .map(|v| match v.catalog.checks.get(id) {
            Some(c) => Ok(Arc::new(c.clone())),
            None => Err(format!("variant {} has no check {id}", v.name)),
        })
        .collect::<Result<_, String>>()?;
    let subjects: Vec<Subject> = variants.iter().map(|v| &v.catalog).zip(&mutants).collect();
    let admin = connect(admin_opts).await.map_err(|e| e.to_string())?;
    let mut verdicts = vec![VariantVerdict::Survived; variants.len()];
    for case in &check.tests {
        let alive: Vec<usize> = (0..verdicts.len())
            .filter(|&i| verdicts[i] == VariantVerdict::Survived)
            .collect();
        if alive.is_empty() {
            break;
        }
        if unmet(&admin, case).await?.is_some() {
            continue;
        }
        let config = case_config(case)?;
        let mut variant_config = config.clone();
        let limit = &mut variant_config.config.audit.statement_timeout_ms;
        *limit = (*limit).min(VARIANT_TIMEOUT_MS);
        let run = CaseRun {
            admin_opts,
            admin: &admin,
            base: (base, &check),
            case,
            config,
            variant_config,
        };
        for (i, v) in run.vary(&subjects, &alive).await? {
            verdicts[i] = v;
        }
    }
    Ok(verdicts)
}

/// One case, run against many variants.
struct CaseRun<'a> {
    admin_opts: &'a ConnectOptions,
    admin: &'a Client,
    base: Subject<'a>,
    case: &'a TestCase,
    config: LoadedConfig,
    variant_config: LoadedConfig,
}

/// The case's database and the session its setup ran in.
struct Shared {
    db: CaseDb,
    opts: ConnectOptions,
    client: Client,
    /// With `reconnect`, the session the check runs in.
    fresh: Option<Client>,
}

impl CaseRun<'_> {
    async fn open(&self) -> Result<Shared, String> {
        let db = CaseDb::create(self.admin).await?;
        let opts = self.admin_opts.clone().with_dbname(&db.name);
        let session = match set_up(&opts, self.case).await {
            Ok(client) => reconnect(&opts, self.case).await.map(|c| (client, c)),
            Err(e) => Err(e),
        };
        match session {
            Ok((client, fresh)) => Ok(Shared {
                db,
                opts,
                client,
                fresh,
            }),
            Err(e) => {
                db.drop(self.admin).await;
                Err(e)
            }
        }
    }

    async fn close(&self, shared: Shared) {
        drop(shared.fresh);
        drop(shared.client);
        shared.db.drop(self.admin).await;
    }

    /// Judge `subject` in the shared session. A variant (not the unmutated check) runs
    /// under the shorter statement timeout and is judged on its own run only: the
    /// batched run of the same SQL is compared for the unmutated check (as
    /// `checks test` does), and repeating it for every variant doubled the time of
    /// a mutation pass while it can only kill, never spare, a mutant (so skipping
    /// it never raises a kill rate).
    async fn judge_in(&self, s: &Shared, subject: Subject<'_>) -> Result<(), String> {
        let base = std::ptr::eq(subject.1, self.base.1);
        let config = if base {
            &self.config
        } else {
            &self.variant_config
        };
        let (catalog, check) = subject;
        let session = s.fresh.as_ref().unwrap_or(&s.client);
        check_case(session, &s.opts, catalog, check, self.case, config, base).await
    }

    fn verdict(&self, killed: bool, why: String) -> VariantVerdict {
        let case = self.case.name.clone();
        if killed {
            VariantVerdict::Killed { case, why }
        } else {
            VariantVerdict::Undecided { case, why }
        }
    }

    /// The case set up, and the unmutated check passing there.
    async fn open_checked(&self) -> Result<Shared, String> {
        let baseline = |e: String| format!("the unmutated check fails {:?}: {e}", self.case.name);
        let shared = self.open().await.map_err(baseline)?;
        match self.judge_in(&shared, self.base).await {
            Ok(()) => Ok(shared),
            Err(e) => {
                self.close(shared).await;
                Err(baseline(e))
            }
        }
    }

    /// The variants `alive` (indexes into `subjects`) against this case: the
    /// verdict of each one it kills or cannot decide (the others passed it).
    ///
    /// They are judged a few at a time in the one session the case was set up in,
    /// and the unmutated check is judged there after each few: their verdicts count
    /// only when it still passes, so a variant is killed only where the unmutated
    /// check passed before and after it. When it fails, the state moved (time
    /// passed, a setup left a transaction open): the case is set up again and those
    /// variants judged again, fewer at a time, down to one on a database of its own.
    async fn vary(
        &self,
        subjects: &[Subject<'_>],
        alive: &[usize],
    ) -> Result<Vec<(usize, VariantVerdict)>, String> {
        let (mut out, mut todo, mut at_once) = (vec![], alive, SEGMENT);
        let mut shared = self.open_checked().await?;
        while !todo.is_empty() {
            let n = at_once.min(todo.len());
            let mut got = vec![];
            for &i in &todo[..n] {
                if let Err(why) = self.judge_in(&shared, subjects[i]).await {
                    got.push((i, self.verdict(true, why)));
                }
            }
            if self.judge_in(&shared, self.base).await.is_ok() {
                out.extend(got);
                todo = &todo[n..];
                continue;
            }
            self.close(shared).await;
            if n == 1 {
                out.extend(self.fresh(subjects[todo[0]]).await.map(|v| (todo[0], v)));
                todo = &todo[1..];
            }
            at_once = (n / 2).max(1);
            shared = self.open_checked().await?;
        }
        self.close(shared).await;
        Ok(out)
    }

    /// One variant on a database of its own, as `run_cases` runs a case; a failure
    /// kills it only when the unmutated check then passes on a fresh database.
    async fn fresh(&self, (catalog, check): Subject<'_>) -> Option<VariantVerdict> {
        let why = run_case_inner(self.admin_opts, catalog, check, self.case)
            .await
            .err()?;
        let (catalog, check) = self.base;
        Some(
            match run_case_inner(self.admin_opts, catalog, check, self.case).await {
                Ok(_) => self.verdict(true, why),
                Err(b) => self.verdict(
                    false,
                    format!("{why}; the unmutated check fails it too: {b}"),
                ),
            },
        )
    }
}
/// The output contract: columns object text, ok boolean, evidence text.
async fn contract(
    client: &tokio_postgres::Client,
    catalog: &Catalog,
    check: &Check,
) -> Result<(), String> {
    let composed = catalog.compose(check);
    let stmt = client
        .prepare(&composed.sql)
        .await
        .map_err(|e| format!("the check's SQL does not prepare: {}", db_message(&e)))?;
    let cols: Vec<(String, String)> = stmt
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().name().to_string()))
        .collect();
    if matches!(
        check.kind,
        crate::model::Kind::Data | crate::model::Kind::Probe
    ) {
        let has = |n: &str| cols.iter().any(|(c, _)| c == n);
        return if has("object") && has("query") {
            Ok(())
        } else {
            Err(format!("a data or probe check's plan must return object and query columns; it returns {cols:?}"))
        };
    }
    let want = [("object", "text"), ("ok", "bool"), ("evidence", "text")];
    let ok = cols.len() >= 3
        && cols
            .iter()
            .zip(want)
            .all(|((n, t), (wn, wt))| n == wn && t == wt);
    if !ok {
        return Err(format!(
            "the check must return (object text, ok boolean, evidence text[, related text[], ...]); it returns {cols:?}"
        ));
    }
    // Further columns are the finding's own fields (SPEC §3); `related` has a type.
    match cols.iter().skip(3).find(|(n, _)| n == "related") {
        Some((_, t)) if t != "_text" => Err(format!(
            "the column related must be text[] (the other objects a finding stands for); it is {t}"
        )),
        _ => Ok(()),
    }
}

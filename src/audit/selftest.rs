//! `checks test`: every `[[test]]` case of every check, each in a fresh database
//! created for it and dropped after. The same harness runs under `cargo test`.
//!
//! Cases whose setup creates or alters roles (cluster-wide objects) run one at a
//! time, and the roles they created are dropped after them; the others run
//! concurrently.

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

async fn run_case_inner(
    admin_opts: &ConnectOptions,
    catalog: &Catalog,
    check: &Arc<Check>,
    case: &TestCase,
) -> Result<Option<String>, String> {
    let admin = connect(admin_opts).await.map_err(|e| e.to_string())?;
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
    let config = match &case.config {
        Some(text) => LoadedConfig::parse("test config", text).map_err(|e| e.summary)?,
        None => LoadedConfig::default(),
    };
    let db = format!(
        "pgi_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        chrono::Utc::now().timestamp_subsec_nanos()
    );
    let roles_before: Vec<String> = admin
        .query("select rolname::text from pg_roles", &[])
        .await
        .map_err(|e| db_message(&e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    admin
        .batch_execute(&format!("create database \"{db}\""))
        .await
        .map_err(|e| db_message(&e))?;
    let result = in_database(admin_opts, &db, catalog, check, case, &config).await;
    let drop_sql = if version >= 130000 {
        format!("drop database if exists \"{db}\" with (force)")
    } else {
        format!("drop database if exists \"{db}\"")
    };
    let _ = admin.batch_execute(&drop_sql).await;
    let new_roles: Vec<String> = admin
        .query(
            "select rolname::text from pg_roles where not (rolname = any($1))",
            &[&roles_before],
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
    result.map(|_| None)
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
    let client = connect(&opts).await.map_err(|e| e.to_string())?;
    if !case.setup.trim().is_empty() {
        client
            .batch_execute(&case.setup)
            .await
            .map_err(|e| format!("setup failed: {}", db_message(&e)))?;
    }
    let server = server_info(&client).await.map_err(|e| db_message(&e))?;
    if check.sql.is_some() {
        contract(&client, catalog, check).await?;
    }
    // the audit's own session: read-only snapshot, timeouts, planner settings
    begin_read_only(&client, config, None)
        .await
        .map_err(|e| db_message(&e))?;
    let result = run_check(&client, catalog, check, config, &server, Some(&opts)).await;
    // An audit runs catalog and runtime checks batched: the case must hold there too.
    let batched = if batchable(check, &server, config) {
        Some(run_batch_strict(&client, catalog, std::slice::from_ref(check), config).await)
    } else {
        None
    };
    let _ = client.batch_execute("rollback").await;
    match batched {
        Some(Err(e)) => return Err(format!("does not run batched: {e}")),
        Some(Ok(b)) => {
            // Verdicts, not evidence: the first run is itself tracked by
            // pg_stat_statements, so evidence that counts tracked statements moves.
            let rows = |r: &CheckResult| {
                let mut v: Vec<_> = r
                    .objects
                    .iter()
                    .map(|o| (o.object.clone(), o.ok, o.related.clone()))
                    .collect();
                v.sort();
                (r.status, v)
            };
            let same = b.first().is_some_and(|b| rows(b) == rows(&result));
            if !same {
                return Err("batched, the check gives other verdicts than on its own".into());
            }
        }
        None => {}
    }
    let findings: Vec<String> = result.findings().map(|o| o.object.clone()).collect();
    let describe = || {
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
                    format!(
                        "{} {}: {}{related}",
                        match o.ok {
                            Some(true) => "ok",
                            Some(false) => "NOT OK",
                            None => "UNKNOWN",
                        },
                        o.object,
                        o.evidence
                    )
                })
                .collect();
            s.push_str(&format!("\n      {}", rows.join("\n      ")));
        }
        s
    };
    if result.status != case.expect {
        return Err(format!("expected {}, {}", case.expect, describe()));
    }
    if let Some(expected) = &case.failing {
        let mut want = expected.clone();
        want.sort();
        let mut got = findings.clone();
        got.sort();
        if want != got {
            return Err(format!("expected failing {want:?}, {}", describe()));
        }
    }
    if let Some(expected) = &case.unknown {
        let mut want = expected.clone();
        want.sort();
        let mut got: Vec<String> = result.unknowns().map(|o| o.object.clone()).collect();
        got.sort();
        if want != got {
            return Err(format!("expected unknown {want:?}, {}", describe()));
        }
    }
    for (object, want) in &case.related {
        let got = result
            .objects
            .iter()
            .find(|o| &o.object == object)
            .map(|o| {
                let mut r = o.related.clone();
                r.sort();
                r
            });
        let mut want = want.clone();
        want.sort();
        if got.as_ref() != Some(&want) {
            return Err(format!(
                "expected {object} to stand for related {want:?}, {}",
                describe()
            ));
        }
    }
    for want in &case.evidence {
        // the evidence of any row, or the reason of a skipped check
        if !result
            .objects
            .iter()
            .any(|o| o.evidence.contains(want.as_str()))
            && !result
                .reason
                .as_deref()
                .is_some_and(|r| r.contains(want.as_str()))
        {
            return Err(format!(
                "expected evidence containing {want:?}, {}",
                describe()
            ));
        }
    }
    if result.status == Status::Error {
        return Err(describe());
    }
    Ok(())
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

//! Every `[[test]]` case of every built-in check, against real PostgreSQL —
//! the same harness as `pg-integrity checks test`.

mod support;

use pg_integrity::audit::selftest::run_cases;
use pg_integrity::checks::catalog::Catalog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_case_passes() {
    let catalog = Catalog::load(&[] as &[&str]).expect("built-in checks are valid");
    let outcomes = run_cases(&support::server().admin, &catalog, &[], 4, false)
        .await
        .expect("test server reachable");
    report("check cases", &outcomes);
    assert_no_failures(&outcomes);
}

/// Every case runs again on a server that preloads pg_stat_statements: the cases that
/// need it run, and every other case is proven not to depend on it (those that need
/// it absent skip themselves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_passes_with_pg_stat_statements_preloaded() {
    let catalog = Catalog::load(&[] as &[&str]).unwrap();
    let sandbox = tokio::task::spawn_blocking(|| {
        pg_integrity::db::sandbox::Sandbox::start(&[
            "shared_preload_libraries = 'pg_stat_statements'",
        ])
    })
    .await
    .unwrap()
    .expect("a throwaway server with pg_stat_statements");
    let outcomes = run_cases(&sandbox.options("postgres"), &catalog, &[], 4, false)
        .await
        .unwrap();
    report("check cases with pg_stat_statements preloaded", &outcomes);
    let needing = |o: &&pg_integrity::audit::selftest::CaseOutcome| {
        catalog.checks.get(&o.check).is_some_and(|c| {
            c.tests
                .iter()
                .any(|t| t.name == o.case && !t.preloaded.is_empty())
        })
    };
    assert!(
        outcomes.iter().filter(needing).any(|o| o.skipped.is_none()),
        "the cases needing the preload ran"
    );
    assert_no_failures(&outcomes);
    drop(sandbox);
}

/// "N passed, M skipped (why)": printed straight to stderr, past the test
/// harness's capture, so that `cargo test` shows what did not run and why.
fn report(label: &str, outcomes: &[pg_integrity::audit::selftest::CaseOutcome]) {
    use std::collections::BTreeMap;
    use std::io::Write;
    let passed = outcomes
        .iter()
        .filter(|o| o.failure.is_none() && o.skipped.is_none())
        .count();
    let mut why: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.failure.is_none()) {
        if let Some(s) = &o.skipped {
            why.entry(s.as_str())
                .or_default()
                .push(format!("{} — {}", o.check, o.case));
        }
    }
    let skipped: usize = why.values().map(Vec::len).sum();
    let reasons: Vec<String> = why
        .iter()
        .map(|(r, cases)| format!("{} {r}", cases.len()))
        .collect();
    let mut text = format!("{label}: {passed} passed, {skipped} skipped");
    if skipped > 0 {
        text.push_str(&format!(" ({})", reasons.join("; ")));
        for (r, cases) in &why {
            for c in cases {
                text.push_str(&format!("\n    skipped ({r}): {c}"));
            }
        }
    }
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn assert_no_failures(outcomes: &[pg_integrity::audit::selftest::CaseOutcome]) {
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.failure
                .as_ref()
                .map(|f| format!("{} — {}: {f}", o.check, o.case))
        })
        .collect();
    assert!(!outcomes.is_empty());
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_automated_check_has_a_passing_and_a_failing_case() {
    // Read from the check files themselves, not through the loader (which enforces
    // the same rule and would panic before this test could say anything).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("checks");
    let mut missing = vec![];
    let mut automated = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let check: toml::Table =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if check.get("kind").and_then(|k| k.as_str()) == Some("manual") {
            continue;
        }
        automated += 1;
        missing.extend(missing_cases(&path.display().to_string(), &check));
    }
    assert!(
        automated > 0,
        "no automated check found in {}",
        dir.display()
    );
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// What a check's cases lack: a passing case, a failing (or partial) case.
fn missing_cases(name: &str, check: &toml::Table) -> Vec<String> {
    let expects: Vec<&str> = check
        .get("test")
        .and_then(|t| t.as_array())
        .map(|cases| {
            cases
                .iter()
                .filter_map(|c| c.get("expect").and_then(|e| e.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut out = vec![];
    if !expects.contains(&"pass") {
        out.push(format!("{name}: no case with expect = \"pass\""));
    }
    if !expects.iter().any(|e| *e == "fail" || *e == "partial") {
        out.push(format!(
            "{name}: no case with expect = \"fail\" or \"partial\""
        ));
    }
    out
}

#[test]
fn the_case_rule_fails_a_check_without_a_failing_or_passing_case() {
    let check = |cases: &str| -> toml::Table {
        toml::from_str(&format!("kind = \"catalog\"\n{cases}")).unwrap()
    };
    let only_pass = check("[[test]]\nname = \"a\"\nexpect = \"pass\"\n");
    assert_eq!(missing_cases("x", &only_pass).len(), 1);
    let only_partial = check("[[test]]\nname = \"a\"\nexpect = \"partial\"\n");
    assert_eq!(missing_cases("x", &only_partial).len(), 1);
    assert_eq!(missing_cases("x", &check("")).len(), 2);
    let both = check(
        "[[test]]\nname = \"a\"\nexpect = \"pass\"\n[[test]]\nname = \"b\"\nexpect = \"fail\"\n",
    );
    assert!(missing_cases("x", &both).is_empty());
}

/// Every id of SPEC §5 has a check file.
#[test]
fn every_spec_id_has_a_check() {
    let catalog = Catalog::load(&[] as &[&str]).unwrap();
    let missing: Vec<&str> = SPEC_IDS
        .iter()
        .copied()
        .filter(|id| !catalog.checks.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "SPEC ids without a check file: {missing:?}"
    );
}

const SPEC_IDS: &[&str] = &[
    "schema.primary_keys",
    "schema.foreign_keys",
    "schema.foreign_key_indexes",
    "schema.constraints_validated",
    "schema.unique_keys",
    "schema.not_null",
    "schema.check_constraints",
    "schema.money_types",
    "schema.duplicate_indexes",
    "schema.redundant_indexes",
    "schema.foreign_key_types",
    "schema.invalid_indexes",
    "tenancy.tenant_column",
    "tenancy.tenant_not_null",
    "tenancy.tenant_foreign_key",
    "tenancy.tenant_scoped_uniques",
    "tenancy.tenant_scoped_foreign_keys",
    "tenancy.tenant_indexes",
    "transactions.idle_in_transaction_timeout",
    "transactions.idle_in_transaction_sessions",
    "transactions.multi_step",
    "transactions.passed_through",
    "transactions.rollback_on_error",
    "locking.lock_timeout",
    "locking.skip_locked",
    "locking.atomic_inventory_updates",
    "queries.batch_operations",
    "queries.joins",
    "races.inventory_non_negative",
    "races.idempotency_keys",
    "races.idempotency_expiry",
    "races.create_in_same_txn",
    "races.serialization_failures",
    "pool.statement_timeout",
    "pool.idle_session_timeout",
    "pool.connection_headroom",
    "pool.sizing",
    "pool.connection_timeout",
    "pool.error_handler",
    "rls.enabled",
    "rls.forced",
    "rls.policies_present",
    "rls.tenant_policies",
    "rls.write_check",
    "rls.fail_closed",
    "rls.policy_initplan",
    "rls.app_role_bypass",
    "rls.service_role",
    "rls.context_set",
    "rls.views_security_invoker",
    "rls.security_definer_search_path",
    "functions.expected",
];

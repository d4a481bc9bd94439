//! Every `[[test]]` case of every built-in check, against real PostgreSQL —
//! the same harness as `pg-integrity checks test`.

mod support;

use pg_integrity::catalog::Catalog;
use pg_integrity::checktest::run_cases;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_case_passes() {
    let catalog = Catalog::load(&[] as &[&str]).expect("built-in checks are valid");
    let outcomes = run_cases(&support::server().admin, &catalog, &[], 4)
        .await
        .expect("test server reachable");
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
    // Enforced by the loader; this proves the rule holds for the shipped catalog.
    let catalog = Catalog::load(&[] as &[&str]).unwrap();
    for c in catalog.checks.values() {
        if c.kind != pg_integrity::model::Kind::Manual {
            assert!(
                c.tests
                    .iter()
                    .any(|t| t.expect == pg_integrity::model::Status::Pass),
                "{}",
                c.id
            );
        }
    }
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

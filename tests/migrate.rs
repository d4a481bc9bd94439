//! `pg-integrity migrate` against real PostgreSQL, with migration directories made
//! for each test (`--from`), so every safety property is proven on its own.

mod support;

use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{assert_exit, cli, runtime, sync, TestDb};

fn migrations(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in files {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    dir
}

fn migrate(db: &TestDb, dir: &Path, args: &[&str]) -> std::process::Output {
    let mut c = cli();
    c.arg("migrate")
        .args(args)
        .args(["--database-url", &db.url, "--from"])
        .arg(dir);
    c.timeout(Duration::from_secs(120)).output().unwrap()
}

async fn history(db: &TestDb) -> Vec<(i32, String)> {
    let c = db.client().await;
    let exists: bool = c
        .query_one(
            "select to_regclass('refinery_schema_history') is not null",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    if !exists {
        return vec![];
    }
    c.query(
        "select version, name from refinery_schema_history order by version",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

/// How many of the relations `names` exist.
async fn relations(db: &TestDb, names: &[&str]) -> i64 {
    db.client()
        .await
        .query_one(
            "select count(*) from pg_class where relname = any($1)",
            &[&names],
        )
        .await
        .unwrap()
        .get(0)
}

const BASE: &str = "create table parents(id int primary key); create table children(id int primary key, parent_id int, note text);
                    insert into parents values (1), (2); insert into children values (10, 1, 'a'), (11, 2, 'b');";

fn two_migrations() -> tempfile::TempDir {
    migrations(&[
        ("V1__add_column.sql", "alter table children add column created_at timestamptz default now();"),
        (
            "V2__fk.sql",
            "alter table children add constraint children_parent_id_fkey foreign key (parent_id) references parents(id) not valid;",
        ),
    ])
}

#[test]
fn status_and_plan_change_nothing() {
    let db = sync(TestDb::new(BASE));
    let dir = two_migrations();
    let out = migrate(&db, dir.path(), &["status", "--format", "json"]);
    assert_exit(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<&str> = doc["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["pending", "pending"]);
    let plan = migrate(&db, dir.path(), &["plan"]);
    assert!(String::from_utf8_lossy(&plan.stdout).contains("V2__fk"));
    let dry = migrate(&db, dir.path(), &["apply", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("alter table children add column created_at")
    );
    // Nothing was written: no history table, no new column.
    assert!(
        sync(history(&db)).is_empty(),
        "status/plan/dry-run must not create the history table"
    );
    assert_eq!(sync(count(&db, "select count(*) from information_schema.columns where table_name = 'children' and column_name = 'created_at'")), 0);
}

#[test]
fn apply_applies_once_and_again_is_a_no_op() {
    let db = sync(TestDb::new(BASE));
    let dir = two_migrations();
    let out = migrate(&db, dir.path(), &["apply", "--no-audit"]);
    assert_exit(&out, 0);
    assert_eq!(
        sync(history(&db)),
        vec![(1, "add_column".into()), (2, "fk".into())]
    );
    let again = migrate(&db, dir.path(), &["apply", "--no-audit"]);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to apply"));
    assert_eq!(sync(history(&db)).len(), 2);
    let verify = migrate(&db, dir.path(), &["verify"]);
    assert_exit(&verify, 0);
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("(2 applied, 0 pending)"),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[test]
fn target_stops_at_a_version() {
    let db = sync(TestDb::new(BASE));
    let dir = two_migrations();
    let out = migrate(&db, dir.path(), &["apply", "--no-audit", "--target", "1"]);
    assert_exit(&out, 0);
    assert_eq!(sync(history(&db)), vec![(1, "add_column".into())]);
}

#[test]
fn verify_fails_when_an_applied_migration_changed() {
    let db = sync(TestDb::new(BASE));
    let dir = two_migrations();
    migrate(&db, dir.path(), &["apply", "--no-audit"]);
    cli()
        .arg("migrate")
        .arg("verify")
        .args(["--database-url", &db.url, "--from"])
        .arg(dir.path())
        .assert()
        .code(0);
    std::fs::write(
        dir.path().join("V1__add_column.sql"),
        "alter table children add column created_at timestamptz;",
    )
    .unwrap();
    cli()
        .arg("migrate")
        .arg("verify")
        .args(["--database-url", &db.url, "--from"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("V1__add_column is divergent"));
    // apply refuses too, before doing anything
    let out = migrate(&db, dir.path(), &["apply", "--no-audit"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_migration_failing_half_way_leaves_nothing_behind() {
    let db = sync(TestDb::new(BASE));
    let dir = migrations(&[
        ("V1__ok.sql", "create table first_ok(id int);"),
        (
            "V2__breaks.sql",
            "create table half_done(id int);\ninsert into half_done values (1);\nselect 1/0;\n",
        ),
    ]);
    let out = migrate(&db, dir.path(), &["apply", "--no-audit"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("V2__breaks failed") && err.contains("division by zero"),
        "{err}"
    );
    assert_eq!(
        sync(history(&db)),
        vec![(1, "ok".into())],
        "no history row for the failed migration"
    );
    assert_eq!(
        sync(count(
            &db,
            "select count(*) from pg_class where relname = 'half_done'"
        )),
        0,
        "no partial change"
    );
}

#[test]
fn preflight_refuses_with_the_offending_rows_before_touching_anything() {
    let db = sync(TestDb::new(&format!(
        "{BASE} insert into children values (12, 99, null), (13, 98, null);"
    )));
    let dir = migrations(&[(
        "V1__constraints.sql",
        "create table marker(id int);\n\
         alter table children add constraint children_parent_id_fkey foreign key (parent_id) references parents(id) not valid;\n\
         alter table children add constraint children_note_not_null check (note is not null) not valid;",
    )]);
    let out = migrate(&db, dir.path(), &["apply", "--no-audit"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("preflight refused V1__constraints"), "{err}");
    assert!(
        err.contains("children_parent_id_fkey")
            && err.contains("2 violating rows")
            && err.contains("12; 13"),
        "{err}"
    );
    assert!(err.contains("children_note_not_null"), "{err}");
    assert_eq!(
        sync(count(
            &db,
            "select count(*) from pg_class where relname = 'marker'"
        )),
        0
    );
    assert!(sync(history(&db)).is_empty());
}

#[test]
fn concurrent_appliers_apply_each_migration_exactly_once() {
    let db = sync(TestDb::new(BASE));
    let dir = migrations(&[
        ("V1__slow.sql", "select pg_sleep(1); create table applied_once(n int); insert into applied_once values (1);"),
        ("V2__more.sql", "insert into applied_once values (2);"),
    ]);
    let url = db.url.clone();
    let path: PathBuf = dir.path().to_path_buf();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                let mut c = cli();
                c.args([
                    "migrate",
                    "apply",
                    "--no-audit",
                    "--database-url",
                    &url,
                    "--from",
                ])
                .arg(&path);
                c.timeout(Duration::from_secs(120)).output().unwrap()
            })
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(0) || err.contains("another migrator holds the lock"),
            "{err}"
        );
    }
    assert_eq!(sync(history(&db)).len(), 2, "no duplicate history rows");
    assert_eq!(
        sync(count(&db, "select count(*) from applied_once")),
        2,
        "each migration ran once"
    );
}

#[test]
fn a_bounded_lock_wait_gives_a_clear_message() {
    let db = sync(TestDb::new(BASE));
    let dir = two_migrations();
    let rt = runtime();
    let holder = rt.block_on(db.client());
    rt.block_on(holder.query_one("select pg_advisory_lock(8099558377969248114)", &[]))
        .unwrap();
    let out = migrate(
        &db,
        dir.path(),
        &["apply", "--no-audit", "--lock-wait", "1"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another migrator holds the lock"));
    assert!(sync(history(&db)).is_empty());
}

#[test]
fn a_held_table_lock_is_retried_until_released() {
    let db = sync(TestDb::new(BASE));
    let dir = two_migrations();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let holder = rt.block_on(db.client());
    rt.block_on(holder.batch_execute("begin; lock table children in access share mode;"))
        .unwrap();
    let release = rt.spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        holder.batch_execute("rollback").await.unwrap();
        holder
    });
    let out = migrate(
        &db,
        dir.path(),
        &[
            "apply",
            "--no-audit",
            "--lock-timeout",
            "200",
            "--retries",
            "8",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("a lock was not granted within 200 ms (locks held on public.children by pid ")
            && err.contains(
                "(idle in transaction: `begin; lock table children in access share mode;`)"
            )
            && err.contains("; retry 1/8"),
        "the retry names the table, the holder's pid and its query: {err}"
    );
    assert_eq!(sync(history(&db)).len(), 2);
    drop(rt.block_on(release));
}

#[test]
fn a_lock_never_released_fails_cleanly_with_the_database_unchanged() {
    let db = sync(TestDb::new(BASE));
    let dir = two_migrations();
    let rt = runtime();
    let holder = rt.block_on(db.client());
    rt.block_on(holder.batch_execute("begin; lock table children in access share mode;"))
        .unwrap();
    let out = migrate(
        &db,
        dir.path(),
        &[
            "apply",
            "--no-audit",
            "--lock-timeout",
            "100",
            "--retries",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lock timeout"));
    rt.block_on(holder.batch_execute("rollback")).unwrap();
    assert!(sync(history(&db)).is_empty());
    assert_eq!(sync(count(&db, "select count(*) from information_schema.columns where table_name = 'children' and column_name = 'created_at'")), 0);
}

#[test]
fn no_transaction_migrations_rebuild_an_invalid_index_and_record_history_last() {
    let db = sync(TestDb::new(BASE));
    // A failed concurrent build leaves an invalid index behind; simulate one.
    sync(async {
        let c = db.client().await;
        c.batch_execute("create index children_parent_idx on children(parent_id); update pg_index set indisvalid = false where indexrelid = 'children_parent_idx'::regclass;")
            .await
            .unwrap();
    });
    let dir = migrations(&[(
        "V1__index.sql",
        "-- pg-integrity: no-transaction\ncreate index concurrently if not exists children_parent_idx on children (parent_id);\nalter table children add constraint children_parent_id_fkey foreign key (parent_id) references parents(id) not valid;\nalter table children validate constraint children_parent_id_fkey;\n",
    )]);
    let out = migrate(&db, dir.path(), &["apply", "--no-audit"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("dropping invalid index"), "{err}");
    assert_eq!(sync(count(&db, "select count(*) from pg_index where indexrelid = 'children_parent_idx'::regclass and indisvalid")), 1);
    assert_eq!(sync(count(&db, "select count(*) from pg_constraint where conname = 'children_parent_id_fkey' and convalidated")), 1);
    assert_eq!(sync(history(&db)), vec![(1, "index".into())]);
}

const SCHEMA: &str = include_str!("../fixtures/ticket-service/schema.sql");
const DATA: &str = include_str!("../fixtures/ticket-service/data.sql");
const DIRTY: &str = include_str!("../fixtures/ticket-service/dirty.sql");
const CONFIG: &str = "fixtures/ticket-service/pg-integrity.toml";

/// `migrate apply` of the migrations compiled into the binary.
fn apply_compiled_in(db: &TestDb, extra: &[&str]) -> std::process::Output {
    cli()
        .args(["migrate", "apply"])
        .args(extra)
        .args(["--database-url", &db.url])
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap()
}

fn audit_json(db: &TestDb, extra: &[&str]) -> serde_json::Value {
    let out = cli()
        .args([
            "audit",
            "--format",
            "json",
            "--config",
            CONFIG,
            "--database-url",
            &db.url,
        ])
        .args(extra)
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn statuses(doc: &serde_json::Value, kind: &str) -> Vec<(String, String)> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == kind)
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// What a report says about each check: status, reason, and every finding.
fn verdicts(doc: &serde_json::Value) -> Vec<String> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {} {}",
                c["id"], c["status"], c["reason"], c["objects_checked"], c["findings"]
            )
        })
        .collect()
}

/// The batched audit (one statement for all catalog checks) must say exactly what
/// running each check on its own says.
fn assert_batch_matches_check_by_check(db: &TestDb, batched: &serde_json::Value) {
    let one_by_one = audit_json(db, &["--no-batch"]);
    let (a, b) = (verdicts(batched), verdicts(&one_by_one));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "batched vs --no-batch");
    }
}

#[test]
fn the_remediation_migrations_bring_every_catalog_check_of_the_fixture_to_pass() {
    let db = sync(TestDb::new(&format!("{SCHEMA}\n{DATA}")));
    let before = audit_json(&db, &[]);
    assert_batch_matches_check_by_check(&db, &before);
    let score_before = before["summary"]["score"].as_f64().unwrap();
    assert!(
        (45.0..75.0).contains(&score_before),
        "score before: {score_before}"
    );
    let out = apply_compiled_in(&db, &["--config", CONFIG]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 0);
    assert!(stdout.contains("→ 100%"), "{stdout}");
    assert_batch_matches_check_by_check(&db, &audit_json(&db, &[]));
    let after = audit_json(&db, &["--deep", "--probe", "write"]);
    let not_passing: Vec<_> = statuses(&after, "catalog")
        .into_iter()
        .filter(|(_, s)| s != "pass")
        .collect();
    assert!(
        not_passing.is_empty(),
        "catalog checks not passing after migrate: {not_passing:?}"
    );
    for (id, status) in statuses(&after, "probe") {
        assert_eq!(status, "pass", "{id} after remediation");
    }
    for (id, status) in statuses(&after, "data") {
        assert!(
            status == "pass" || status == "not_applicable",
            "{id}: {status}"
        );
    }
    let again = apply_compiled_in(&db, &["--no-audit"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to apply"));
    assert_eq!(sync(history(&db)).len(), 9);
}

#[test]
fn probes_fail_before_remediation_and_leave_no_trace() {
    let db = sync(TestDb::new(&format!("{SCHEMA}\n{DATA}")));
    let fingerprint = || {
        sync(async {
            let c = db.client().await;
            let row = c
                .query_one(
                    "select (select count(*) from tickets), (select string_agg(xmin::text || ':' || tenant_id::text, ',' order by id) from tickets),
                            (select count(*) from orders), (select string_agg(xmin::text || ':' || tenant_id::text, ',' order by id) from orders)",
                    &[],
                )
                .await
                .unwrap();
            format!(
                "{}|{}|{}|{}",
                row.get::<_, i64>(0),
                row.get::<_, String>(1),
                row.get::<_, i64>(2),
                row.get::<_, String>(3)
            )
        })
    };
    let before = fingerprint();
    let doc = audit_json(
        &db,
        &[
            "--probe",
            "write",
            "--only",
            "isolation.cross_tenant_read,isolation.cross_tenant_write,isolation.unset_context",
        ],
    );
    for (id, status) in statuses(&doc, "probe") {
        assert!(
            status == "fail" || status == "partial",
            "{id} before remediation: {status}"
        );
    }
    assert_eq!(
        before,
        fingerprint(),
        "rows, tenants and xmin unchanged by the probes"
    );
}

#[test]
fn deep_audit_finds_every_planted_problem_and_preflight_refuses_it() {
    let db = sync(TestDb::new(&format!("{SCHEMA}\n{DATA}\n{DIRTY}")));
    let doc = audit_json(&db, &["--deep", "--only", "data.orphans,data.cross_tenant_references,data.required_nulls,data.negative_inventory,data.tenant_duplicates"]);
    for (id, status) in statuses(&doc, "data") {
        assert!(
            status == "fail" || status == "partial",
            "{id} on dirty data: {status}"
        );
    }
    let out = apply_compiled_in(&db, &["--no-audit"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("preflight refused V4__integrity_constraints"),
        "{err}"
    );
    assert!(err.contains("available_quantity"), "{err}");
}

#[test]
fn a_first_migration_that_fails_leaves_no_history_table() {
    let db = sync(TestDb::new(BASE));
    let dir = migrations(&[("V1__breaks.sql", "select 1/0;")]);
    let out = migrate(&db, dir.path(), &["apply", "--no-audit"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        sync(count(
            &db,
            "select count(*) from pg_class where relname = 'refinery_schema_history'"
        )),
        0,
        "nothing applied: the database is as it was, history table included"
    );
}

#[test]
fn all_preflights_run_before_the_first_migration() {
    let db = sync(TestDb::new(&format!(
        "{BASE} insert into children values (12, 99, null);"
    )));
    let dir = migrations(&[
        ("V1__harmless.sql", "create table marker(id int);"),
        (
            "V2__fk.sql",
            "alter table children add constraint children_parent_id_fkey foreign key (parent_id) references parents(id) not valid;",
        ),
    ]);
    let out = migrate(&db, dir.path(), &["apply", "--no-audit"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("V2__fk"), "{err}");
    assert_eq!(
        sync(relations(&db, &["marker", "refinery_schema_history"])),
        0,
        "V1 was not applied: V2's preflight refused first"
    );
}

#[test]
fn the_built_in_migrations_refuse_another_schema_and_point_at_fix() {
    let db = sync(TestDb::new(BASE));
    let mut c = cli();
    c.args(["migrate", "apply", "--no-audit", "--database-url", &db.url])
        .timeout(Duration::from_secs(120));
    let out = c.output().unwrap();
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ticket-service") && err.contains("pg-integrity fix"),
        "{err}"
    );
    assert_eq!(
        sync(count(
            &db,
            "select count(*) from pg_class where relname = 'refinery_schema_history'"
        )),
        0
    );
}

#[test]
fn plan_json_names_each_statements_lock_and_the_preflight_verdict() {
    let db = sync(TestDb::new(&format!(
        "{BASE} insert into children values (12, 99, null);"
    )));
    let dir = migrations(&[
        (
            "V1__index.sql",
            "-- pg-integrity: no-transaction\ncreate index concurrently if not exists children_parent_id_idx on public.children (parent_id);",
        ),
        (
            "V2__fk.sql",
            "alter table children add constraint children_parent_id_fkey foreign key (parent_id) references parents(id) not valid;",
        ),
    ]);
    let out = migrate(&db, dir.path(), &["plan", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "a preflight would refuse V2");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["refused"], true);
    let m = doc["migrations"].as_array().unwrap();
    assert_eq!(m[0]["transaction"], false);
    let s = &m[0]["statements"][0];
    assert_eq!(s["kind"], "create_index_concurrently");
    assert_eq!(s["table"], "public.children");
    assert_eq!(s["lock"], "SHARE UPDATE EXCLUSIVE");
    assert_eq!(s["blocks"], "neither reads nor writes");
    assert!(s["table_bytes"].as_i64().unwrap() > 0);
    assert!(m[0]["preflight_refusal"].is_null());
    let fk = &m[1]["statements"][0];
    assert_eq!(fk["kind"], "add_foreign_key_not_valid");
    assert_eq!(fk["also_locks"]["table"], "parents");
    assert_eq!(fk["scans"], false);
    assert!(
        m[1]["preflight_refusal"]
            .as_str()
            .unwrap()
            .contains("1 violating row"),
        "{doc}"
    );
    assert_eq!(sync(history(&db)), vec![], "plan changes nothing");
}

#[test]
fn plan_flags_unsafe_statements_with_the_safe_form_and_their_size() {
    let db = sync(TestDb::new(&format!(
        "{BASE} insert into children select g, 1, 'x' from generate_series(100, 20099) g; analyze children;"
    )));
    let dir = migrations(&[(
        "V1__unsafe.sql",
        "create index children_note on children (note);\n\
         alter table children add constraint children_id_check check (id > 0);\n\
         alter table parents alter column id type bigint;",
    )]);
    let out = migrate(&db, dir.path(), &["plan", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "flags do not refuse: {out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &doc["migrations"][0];
    let flags: Vec<(u64, String, String)> = m["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["statement"].as_u64().unwrap(),
                f["rule"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        flags.contains(&(0, "require-concurrent-index-creation".into(), "high".into())),
        "{flags:?}"
    );
    assert!(
        flags.contains(&(1, "constraint-missing-not-valid".into(), "high".into())),
        "{flags:?}"
    );
    // parents has two rows: the same rule, low.
    assert!(
        flags.contains(&(2, "changing-column-type".into(), "low".into())),
        "{flags:?}"
    );
    assert_eq!(
        m["flags"][0]["fixed_sql"],
        "create index concurrently children_note on children (note)"
    );
    let s = &m["statements"][0];
    assert_eq!(
        (s["kind"].as_str(), s["lock"].as_str()),
        (Some("create_index"), Some("SHARE"))
    );
    assert!(s["estimated_rows"].as_i64().unwrap() >= 20_000, "{s}");
    let s = &m["statements"][2];
    assert_eq!(s["rewrites"], true);
    // The text form says the same, statement by statement.
    let out = migrate(&db, dir.path(), &["plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("-- UNSAFE (high, require-concurrent-index-creation)")
            && text.contains("safe form: CREATE INDEX CONCURRENTLY"),
        "{text}"
    );
    assert_eq!(sync(history(&db)), vec![], "plan changes nothing");
}

#[test]
fn a_statement_the_parser_cannot_read_is_lock_unknown_never_guessed() {
    let db = sync(TestDb::new(BASE));
    let dir = migrations(&[(
        "V1__typo.sql",
        "alter tabel children add column x int;\nalter table children add column y int;",
    )]);
    let out = migrate(&db, dir.path(), &["plan", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let st = doc["migrations"][0]["statements"].as_array().unwrap();
    assert_eq!(st[0]["kind"], "unknown", "{doc}");
    assert!(st[0]["lock"].is_null());
    assert!(
        st[0]["unknown_because"]
            .as_str()
            .unwrap()
            .contains("parser could not read"),
        "{doc}"
    );
    assert_eq!(st.last().unwrap()["kind"], "add_column", "{doc}");
    assert!(doc["one_table_per_transaction"].is_null(), "{doc}");
}

#[test]
fn dry_run_runs_every_preflight_and_exits_1_when_one_would_refuse() {
    let db = sync(TestDb::new(&format!(
        "{BASE} insert into children values (12, 99, null);"
    )));
    let dir = migrations(&[
        ("V1__harmless.sql", "create table marker(id int);"),
        (
            "V2__fk.sql",
            "alter table children add constraint children_parent_id_fkey foreign key (parent_id) references parents(id) not valid;",
        ),
    ]);
    let out = migrate(&db, dir.path(), &["apply", "--dry-run", "--no-audit"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("V2__fk") && text.contains("PREFLIGHT WOULD REFUSE"),
        "{text}"
    );
    assert_eq!(
        sync(relations(&db, &["marker", "refinery_schema_history"])),
        0,
        "a dry run changes nothing, history table included"
    );
}

#[test]
fn a_partial_apply_says_which_migrations_were_applied_and_which_not() {
    let db = sync(TestDb::new(BASE));
    let dir = migrations(&[
        ("V1__ok.sql", "create table marker(id int);"),
        ("V2__bad.sql", "alter table no_such_table add column x int;"),
        ("V3__later.sql", "create table later(id int);"),
    ]);
    let out = migrate(&db, dir.path(), &["apply", "--no-audit"]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("applied by this run: V1__ok"), "{err}");
    assert!(err.contains("not applied: V2__bad, V3__later"), "{err}");
    assert_eq!(sync(history(&db)), vec![(1, "ok".to_string())]);
}

/// Every field path of a JSON value: `a.b`, `a[]` for an array (its elements' fields under
/// `a[].`).
fn json_paths(v: &serde_json::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let mut p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_array() {
                    p.push_str("[]");
                }
                out.insert(p.clone());
                json_paths(v, &p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for e in a {
                json_paths(e, prefix, out);
            }
        }
        _ => {}
    }
}

/// The field paths docs/plan-format.md documents: each table row's backticked names,
/// under the section heading's backticked prefix (none: the top level).
fn documented_paths() -> std::collections::BTreeSet<String> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/plan-format.md"))
            .unwrap();
    let mut out = std::collections::BTreeSet::new();
    let mut prefix: Option<String> = None;
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            prefix = Some(h.split('`').nth(1).unwrap_or("").to_string());
            continue;
        }
        if line.starts_with("## ") {
            prefix = None;
        }
        let (Some(prefix), Some(cell)) = (&prefix, line.strip_prefix("| ")) else {
            continue;
        };
        let cell = cell.split(" |").next().unwrap_or("");
        if cell == "field" || cell.starts_with("---") {
            continue;
        }
        for name in cell.split(", ") {
            let name = name.trim().trim_matches('`');
            out.insert(if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            });
        }
    }
    out
}

#[test]
fn plan_json_fields_are_the_documented_ones() {
    let db = sync(TestDb::new(BASE));
    let dir = migrations(&[
        (
            "V1__mixed.sql",
            "create index children_note on children (note);\n\
             alter table children add constraint children_parent_fk foreign key (parent_id) references parents (id) not valid, add column z int;",
        ),
        (
            "V2__steps.sql",
            "-- pg-integrity: no-transaction\nbegin;\nalter table children validate constraint children_parent_fk;\ncommit;",
        ),
    ]);
    let out = migrate(&db, dir.path(), &["plan", "--format", "json"]);
    assert_exit(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut got = std::collections::BTreeSet::new();
    json_paths(&doc, "", &mut got);
    let documented = documented_paths();
    let undocumented: Vec<&String> = got.difference(&documented).collect();
    let absent: Vec<&String> = documented.difference(&got).collect();
    assert!(
        undocumented.is_empty() && absent.is_empty(),
        "in the output but not in docs/plan-format.md: {undocumented:?}\n\
         in docs/plan-format.md but not in the output: {absent:?}\n{doc:#}"
    );
    // The example's flag and the foreign key's parent, as documented.
    let m = &doc["migrations"][0];
    assert_eq!(m["flags"][0]["rule"], "require-concurrent-index-creation");
    assert_eq!(m["statements"][1]["also_locks"]["table"], "parents");
}

#[test]
fn reports_name_shipped_migrations_only_on_the_fixture_and_point_at_fix_elsewhere() {
    let db = sync(TestDb::new(
        "create table parents(id int primary key); create table children(id int primary key, parent_id int references parents);",
    ));
    let audit = |format: &str| {
        let out = cli()
            .args([
                "audit",
                "--only",
                "schema.foreign_key_indexes",
                "--format",
                format,
                "--database-url",
                &db.url,
            ])
            .timeout(Duration::from_secs(300))
            .output()
            .unwrap();
        assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let md = audit("markdown");
    assert!(!md.contains("Fixed by"), "{md}");
    assert!(
        md.contains("Fix: `pg-integrity fix --only schema.foreign_key_indexes`"),
        "{md}"
    );
    let doc: serde_json::Value = serde_json::from_str(&audit("json")).unwrap();
    let c = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "schema.foreign_key_indexes")
        .unwrap();
    assert_eq!(c["status"], "fail");
    assert_eq!(c["fixed_by"], serde_json::json!([]), "{c}");
    let junit = audit("junit");
    assert!(
        !junit.contains("Fixed by")
            && junit.contains("Fix: pg-integrity fix --only schema.foreign_key_indexes"),
        "{junit}"
    );
}

#[test]
fn a_no_transaction_migration_the_parser_cannot_delimit_is_refused_before_anything_runs() {
    let db = sync(TestDb::new(BASE));
    let dir = migrations(&[
        ("V1__first.sql", "create table marker(id int);"),
        (
            "V2__steps.sql",
            "-- pg-integrity: no-transaction\ncreate index concurrently children_note on children (note);\nalter tabel children add column x int;",
        ),
    ]);
    let dry = migrate(&db, dir.path(), &["apply", "--dry-run", "--no-audit"]);
    assert_eq!(dry.status.code(), Some(1), "{dry:?}");
    let out = migrate(&db, dir.path(), &["apply", "--no-audit"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("V2__steps") && err.contains("could not read line 3, column"),
        "{err}"
    );
    assert_eq!(
        sync(relations(
            &db,
            &["marker", "children_note", "refinery_schema_history"]
        )),
        0,
        "refused before the first migration"
    );
}

#[test]
fn a_partial_apply_says_what_a_no_transaction_migration_left_done() {
    let db = sync(TestDb::new(BASE));
    let dir = migrations(&[
        ("V1__ok.sql", "create table marker(id int);"),
        (
            "V2__steps.sql",
            "-- pg-integrity: no-transaction\nbegin;\ncreate table n1(id int);\ncommit;\nbegin;\ncreate table n1(id int);\ncommit;",
        ),
        ("V3__later.sql", "create table later(id int);"),
    ]);
    let out = migrate(&db, dir.path(), &["apply", "--no-audit"]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("applied by this run: V1__ok\n"), "{err}");
    assert!(
        err.contains("not applied: V2__steps (run outside a transaction: part-way: 1 of 2"),
        "{err}"
    );
    assert!(err.contains(", V3__later"), "{err}");
}

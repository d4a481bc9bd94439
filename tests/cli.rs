//! The command line end to end, against real PostgreSQL: exit codes, JSON contract,
//! diagnostics, and the promise that an audit never writes and never blocks.

mod support;

use predicates::prelude::*;
use std::time::Duration;
use support::{assert_exit, check_in, cli, json_report, TestDb};

/// A custom catalog check in `dir`, as a team would add with --checks.
fn custom_check(dir: &std::path::Path, id: &str, title: &str, sql: &str) {
    custom_check_of_kind(dir, id, title, "catalog", &[], sql);
}

/// A custom check of `kind` using the building blocks `uses`; `sql` goes in a TOML
/// literal string, as written.
fn custom_check_of_kind(
    dir: &std::path::Path,
    id: &str,
    title: &str,
    kind: &str,
    uses: &[&str],
    sql: &str,
) {
    let text = format!(
        "id = \"{id}\"\nsection = \"custom\"\ntitle = \"{title}\"\nseverity = \"high\"\nkind = \"{kind}\"\n\
         description = \"{title}\"\nuses = {uses:?}\nsql = \'\'\'\n{sql}\n\'\'\'\n\
         [[test]]\nname = \"p\"\nexpect = \"pass\"\n[[test]]\nname = \"f\"\nexpect = \"fail\"\n"
    );
    write(dir, &format!("{id}.toml"), &text);
}

/// `audit --format json --only ONLY --checks DIR [EXTRA...]` against `url`, run off
/// the async runtime.
async fn audit_with_checks(
    url: &str,
    dir: &std::path::Path,
    only: &str,
    extra: &[&str],
) -> std::process::Output {
    let (url, dir, only) = (url.to_string(), dir.to_path_buf(), only.to_string());
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        cli()
            .args(["audit", "--format", "json", "--only", &only, "--checks"])
            .arg(&dir)
            .args(&extra)
            .args(["--database-url", &url])
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn schema_target_reports_a_missing_primary_key_as_json_and_fails_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let schema = write(
        dir.path(),
        "schema.sql",
        "create table events(id int primary key);\ncreate table audit_log(at timestamptz, message text);\n",
    );
    let out = cli()
        .args(["audit", "--schema"])
        .arg(&schema)
        .args(["--format", "json"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["format_version"], 1);
    let pk = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "schema.primary_keys")
        .unwrap();
    assert_eq!(pk["status"], "partial");
    let findings: Vec<&str> = pk["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["object"].as_str().unwrap())
        .collect();
    assert_eq!(findings, vec!["public.audit_log"]);
    assert_eq!(doc["summary"]["gate"]["passed"], false);
}

#[test]
fn a_table_without_any_key_fails_outright() {
    let dir = tempfile::tempdir().unwrap();
    let schema = write(
        dir.path(),
        "schema.sql",
        "create table audit_log(at timestamptz, message text);\n",
    );
    let out = cli()
        .args([
            "audit",
            "--only",
            "schema.primary_keys",
            "--format",
            "json",
            "--schema",
        ])
        .arg(&schema)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["checks"][0]["status"], "fail");
    assert_eq!(
        doc["checks"][0]["findings"][0]["object"],
        "public.audit_log"
    );
}

#[test]
fn a_schema_file_that_fails_to_load_is_bad_input_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let schema = write(
        dir.path(),
        "broken.sql",
        "create table a(id int primary key);\ncreate tabel b(id int);\n",
    );
    cli()
        .args(["audit", "--schema"])
        .arg(&schema)
        .timeout(Duration::from_secs(120))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("broken.sql:2"))
        .stderr(predicate::str::contains("syntax error"));
}

#[test]
fn a_malformed_check_file_is_exit_2_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "custom.bad.toml",
        "id = \"custom.bad\"\nsection = \"custom\"\ntitle = 3 4\n",
    );
    cli()
        .args(["checks", "validate"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("custom.bad.toml:3:"));
}

#[test]
fn validate_reports_every_problem_in_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = "section = \"custom\"\ntitle = \"t\"\ndescription = \"d\"\nsql = \"select ''::text as object, true as ok, ''::text as evidence\"\n[[test]]\nname = \"p\"\nexpect = \"pass\"\n[[test]]\nname = \"f\"\nexpect = \"fail\"\n";
    write(
        dir.path(),
        "custom.one.toml",
        &format!("id = \"custom.one\"\nseverity = \"urgent\"\nkind = \"catalog\"\n{base}"),
    );
    write(dir.path(), "custom.two.toml", &format!("id = \"custom.two\"\nseverity = \"low\"\nkind = \"sometimes\"\nparams = [\"schema\"]\n{base}"));
    cli()
        .args(["checks", "validate"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("3 problems found"))
        .stderr(predicate::str::contains("unknown severity `urgent`"))
        .stderr(predicate::str::contains("unknown kind `sometimes`"))
        .stderr(predicate::str::contains("did you mean `schemas`?"));
}

#[test]
fn config_errors_point_at_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "pg-integrity.toml",
        "[tenancy]\ncolumn = \"tenant_id\"\n\n[checks]\ndisable = [\"schema.primary_key\"]\n",
    );
    cli()
        .args(["checks", "list", "--config"])
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("pg-integrity.toml:5:"))
        .stderr(predicate::str::contains(
            "did you mean `schema.primary_keys`?",
        ));
}

#[test]
fn a_refused_port_is_exit_3() {
    cli()
        .args([
            "audit",
            "--database-url",
            "host=127.0.0.1 port=1 user=postgres dbname=postgres",
        ])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(3);
}

#[test]
fn an_unreachable_host_is_exit_3_within_the_connect_timeout() {
    cli()
        .args([
            "audit",
            "--database-url",
            "host=10.255.255.1 port=5432 user=postgres dbname=postgres connect_timeout=2",
        ])
        .timeout(Duration::from_secs(20))
        .assert()
        .code(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_changes_nothing() {
    let db = TestDb::new(
        "create table tenants(id uuid primary key default gen_random_uuid());
         create table tickets(id uuid primary key default gen_random_uuid(), tenant_id uuid not null references tenants(id), ticket_number text unique);
         insert into tenants default values;",
    )
    .await;
    // What a dump would show, read with SQL (pg_dump must match the server's major
    // version, which a relocatable test server may not ship): every relation, column,
    // constraint, index, policy and function, the settings of this database and of the
    // connecting role, and every row. Not other databases' settings: pg_db_role_setting
    // is shared, and other tests set their own databases' settings while this one runs.
    let dump = || async {
        {
            let c = db.client().await;
            let catalog: String = c
                .query_one(
                    "select concat_ws('|',
                        (select string_agg(format('%s %s %s %s', c.oid, c.relname, c.relkind, c.relrowsecurity), ',' order by c.oid) from pg_class c where c.relnamespace = 'public'::regnamespace),
                        (select string_agg(format('%s %s %s %s', a.attrelid, a.attname, a.atttypid, a.attnotnull), ',' order by a.attrelid, a.attnum) from pg_attribute a join pg_class c on c.oid = a.attrelid where c.relnamespace = 'public'::regnamespace),
                        (select string_agg(pg_get_constraintdef(oid) || convalidated::text, ',' order by oid) from pg_constraint where connamespace = 'public'::regnamespace),
                        (select string_agg(pg_get_indexdef(indexrelid) || indisvalid::text, ',' order by indexrelid) from pg_index where indrelid in (select oid from pg_class where relnamespace = 'public'::regnamespace)),
                        (select string_agg(polname, ',' order by oid) from pg_policy),
                        (select string_agg(proname, ',' order by oid) from pg_proc where pronamespace = 'public'::regnamespace),
                        (select string_agg(array_to_string(setconfig, ';'), ',' order by setdatabase, setrole) from pg_db_role_setting where setdatabase = (select oid from pg_database where datname = current_database()) or (setdatabase = 0 and setrole = (select oid from pg_roles where rolname = current_user))),
                        (select string_agg(t::text, ',' order by t::text) from tenants t),
                        (select string_agg(t::text, ',' order by t::text) from tickets t))",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            catalog
        }
    };
    let stats = || async {
        let c = db.client().await;
        let row = c
            // This database's own tables and catalogs. Not the shared catalogs
            // (pg_database, pg_authid...), which other tests write as they create
            // their databases on the same server, nor pg_statistic, which
            // autovacuum's ANALYZE writes: either made this test flaky.
            .query_one(
                "select coalesce(sum(s.n_tup_ins + s.n_tup_upd + s.n_tup_del), 0)::bigint
                 from pg_stat_all_tables s join pg_class c on c.oid = s.relid
                 where not c.relisshared and c.oid <> 'pg_statistic'::regclass",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0)
    };
    let before = dump().await;
    let writes_before = stats().await;
    let url = db.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        cli()
            .args(["audit", "--format", "json", "--database-url", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the audit ran");
    assert!(doc["checks"].as_array().unwrap().len() > 3);
    assert_eq!(before, dump().await, "the schema and data are unchanged");
    assert_eq!(writes_before, stats().await, "no row was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_table_makes_one_check_error_and_the_audit_finishes() {
    let db = TestDb::new(
        "create table busy(id int primary key); create table calm(id int primary key);",
    )
    .await;
    let holder = db.client().await;
    holder
        .batch_execute("begin; lock table busy in access exclusive mode;")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    custom_check(dir.path(), "custom.reads_busy", "Reads a locked table", "select 'public.busy'::text as object, count(*) = 0 as ok, count(*)::text as evidence from public.busy");
    let out = audit_with_checks(
        &db.url,
        dir.path(),
        "custom.reads_busy,schema.primary_keys",
        &[],
    )
    .await;
    holder.batch_execute("rollback").await.unwrap();
    assert_exit(&out, 1);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_id = |id: &str| check_in(&doc, id);
    let busy = by_id("custom.reads_busy");
    assert_eq!(busy["status"], "error");
    assert!(
        busy["reason"].as_str().unwrap().contains("lock timeout"),
        "{busy}"
    );
    assert_eq!(by_id("schema.primary_keys")["status"], "pass");
}

/// The JSON report of `audit --deep [EXTRA...]` with only the custom data checks
/// `checks` (id, planning SQL).
async fn audit_custom_data_checks(
    db: &TestDb,
    checks: &[(&str, &str)],
    extra: &[&str],
) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    for (id, sql) in checks {
        custom_check_of_kind(dir.path(), id, id, "data", &[], sql);
    }
    let ids: Vec<&str> = checks.iter().map(|(id, _)| *id).collect();
    let mut args = vec!["--deep"];
    args.extend(extra);
    json_report(&audit_with_checks(&db.url, dir.path(), &ids.join(","), &args).await)
}

/// The work_mem a data check's query runs with, as a custom data check reports it.
async fn data_work_mem(db: &TestDb, config: &str) -> String {
    let conf_dir = tempfile::tempdir().unwrap();
    let config = write(conf_dir.path(), "pg-integrity.toml", config);
    let doc = audit_custom_data_checks(
        db,
        &[(
            "custom.work_mem",
            "select 'x'::text as object, 'select false as ok, current_setting(''work_mem'') as evidence'::text as query",
        )],
        &["--config", config.to_str().unwrap()],
    )
    .await;
    doc["checks"][0]["findings"][0]["evidence"]
        .as_str()
        .unwrap_or_else(|| panic!("{doc}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_checks_raise_work_mem_to_the_configured_size_and_never_lower_it() {
    let db = TestDb::new("create table t(id int primary key);").await;
    assert_eq!(data_work_mem(&db, "").await, "64MB");
    assert_eq!(
        data_work_mem(&db, "[audit]\nwork_mem_mb = 16\n").await,
        "16MB"
    );
    // a database that already gives more keeps it
    let admin = db.client().await;
    admin
        .batch_execute(&format!(
            "alter database \"{}\" set work_mem = '256MB'",
            db.name
        ))
        .await
        .unwrap();
    assert_eq!(data_work_mem(&db, "").await, "256MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_of_data_checks_alone_reads_on_every_connection() {
    // Only data checks: while the first connection plans them, the queue is empty,
    // and the others must wait for the statements rather than leave.
    let db = TestDb::new("create table t(id int primary key);").await;
    let doc = audit_custom_data_checks(
        &db,
        &[(
            "custom.backend",
            "select 'o' || g as object, 'select false as ok, pg_backend_pid()::text || pg_sleep(0.1)::text as evidence'::text as query from generate_series(1, 10) g",
        )],
        &["--jobs", "2"],
    )
    .await;
    let findings = doc["checks"][0]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(findings.len(), 10, "{doc}");
    let backends: std::collections::BTreeSet<&str> = findings
        .iter()
        .map(|f| f["evidence"].as_str().unwrap())
        .collect();
    assert_eq!(backends.len(), 2, "statements ran on {backends:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_checks_are_planned_on_every_connection() {
    // Each plan names the backend that ran it; two slow plans, two connections.
    let db = TestDb::new("create table t(id int primary key);").await;
    let plan = "select 'o'::text as object, format('select false as ok, %L as evidence', pg_backend_pid()) as query from pg_sleep(0.3)";
    let doc = audit_custom_data_checks(
        &db,
        &[("custom.plan_a", plan), ("custom.plan_b", plan)],
        &["--jobs", "2"],
    )
    .await;
    let planner = |id: &str| check_in(&doc, id)["findings"][0]["evidence"].clone();
    assert!(planner("custom.plan_a").is_string(), "{doc}");
    assert_ne!(planner("custom.plan_a"), planner("custom.plan_b"), "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_row_test_errors_its_own_check_and_spares_those_sharing_its_scan() {
    let db = TestDb::new(
        "create table jobs(id int primary key, status text); insert into jobs values (1, null), (2, 'done');",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // A data check whose row test reads a column that does not exist: the shared
    // scan of jobs fails, and is read again part by part.
    custom_check_of_kind(
        dir.path(),
        "custom.broken_part",
        "Broken row test",
        "data",
        &["data_scan"],
        "select d.object || '.nope' as object, d.scan, d.key_expr as scan_key, 'c.nope is null' as hit,
       'select $1 = 0 as ok, $1::text as evidence' as query
from data_scan d",
    );
    let out = audit_with_checks(
        &db.url,
        dir.path(),
        "custom.broken_part,data.required_nulls",
        &["--deep", "--fail-on", "never"],
    )
    .await;
    let doc = json_report(&out);
    let by_id = |id: &str| check_in(&doc, id);
    let broken = by_id("custom.broken_part");
    assert_eq!(broken["status"], "error", "{broken}");
    assert!(
        broken["reason"]
            .as_str()
            .unwrap()
            .contains("public.jobs.nope: column c.nope does not exist"),
        "{broken}"
    );
    let nulls = by_id("data.required_nulls");
    assert_eq!(nulls["status"], "fail", "{nulls}");
    assert_eq!(
        nulls["findings"][0]["evidence"],
        "1 row of public.jobs has status NULL (e.g. id=1)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audit_statement_runs_read_only() {
    // A check that tries to write is refused by the read-only transaction.
    let db = TestDb::new("create table t(id int primary key);").await;
    let dir = tempfile::tempdir().unwrap();
    custom_check(dir.path(), "custom.writes", "Tries to write", "with w as (insert into public.t values (1) returning id) select 'x'::text as object, true as ok, ''::text as evidence from w");
    let out = audit_with_checks(&db.url, dir.path(), "custom.writes", &[]).await;
    let doc = json_report(&out);
    assert_eq!(doc["checks"][0]["status"], "error");
    assert!(doc["checks"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("read-only transaction"));
    let n: i64 = db
        .client()
        .await
        .query_one("select count(*) from t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[test]
fn a_wrong_password_is_exit_3_and_never_printed() {
    let sb = pg_integrity::db::sandbox::Sandbox::start_with(
        &["password_encryption = 'scram-sha-256'"],
        Some("local all all scram-sha-256"),
    )
    .expect("throwaway server");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = pg_integrity::db::connection::connect(&sb.options("postgres"))
            .await
            .unwrap();
        c.batch_execute(
            "create role pgi_pw_user login password 'Right-Pass-123'; create table t(id int primary key)",
        )
            .await
            .unwrap();
    });
    let secret = "Wr0ng-S3cret-Pa55";
    let url = format!(
        "postgresql://pgi_pw_user:{secret}@/postgres?host={}",
        sb.socket_dir().display()
    );
    let out = cli()
        .args(["audit", "--database-url", &url])
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("password authentication failed"), "{all}");
    assert!(!all.contains(secret), "the password leaked: {all}");
    // The right password works (exit 0 or 1 is the gate, not the connection).
    let ok_url = url.replace(secret, "Right-Pass-123");
    let out = cli()
        .args(["audit", "--format", "json", "--database-url", &ok_url])
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn demo_audits_migrates_and_shows_the_score_change() {
    let out = cli()
        .arg("demo")
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 0);
    assert!(stdout.contains("→ 100%"), "{stdout}");
    assert!(stdout.contains("Applied 9 migration(s)"), "{stdout}");
}

#[test]
fn a_deep_audit_reads_more_tables_than_the_lock_table_holds() {
    // 10 locks per transaction x ~70 server processes: about 700 lock slots. 1,000
    // tables, each with a primary key and two more indexes, are 4,000 relations to
    // read: the data checks release each table's locks once read, or the audit runs
    // out of shared memory.
    let sb = pg_integrity::db::sandbox::Sandbox::start(&["max_locks_per_transaction = 10"])
        .expect("throwaway server");
    let mut sql = String::from("create table tenants(id int primary key);\n");
    for t in 0..1000 {
        sql.push_str(&format!(
            "create table t{t}(id int primary key, tenant_id int not null, status text, stock int, \
             ref_number text unique); create index on t{t}(tenant_id); insert into t{t} values (1, 1, null, -1, 'a');\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let schema = write(dir.path(), "schema.sql", &sql);
    sb.load_files("postgres", &[schema]).expect("schema loads");
    let url = format!(
        "host={} port=5432 user=postgres dbname=postgres",
        sb.socket_dir().display()
    );
    let out = cli()
        .args([
            "audit",
            "--format",
            "json",
            "--deep",
            "--fail-on",
            "never",
            "--jobs",
            "2",
        ])
        .args([
            "--only",
            "data.required_nulls,data.negative_inventory,data.tenant_duplicates",
        ])
        .args(["--database-url", &url])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let doc = json_report(&out);
    let nulls = check_in(&doc, "data.required_nulls");
    assert_eq!(nulls["status"], "fail", "{nulls}");
    assert_eq!(nulls["findings"].as_array().unwrap().len(), 1000);
    let negatives = check_in(&doc, "data.negative_inventory");
    assert_eq!(negatives["status"], "fail", "{negatives}");
    assert_eq!(negatives["findings"].as_array().unwrap().len(), 1000);
    assert_eq!(check_in(&doc, "data.tenant_duplicates")["status"], "pass");
}

#[test]
fn audit_help_prints_each_example_and_the_migration_file_pattern_as_written() {
    let out = cli().args(["audit", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = help.lines().map(str::trim).collect();
    for example in [
        "pg-integrity audit --database-url postgres://app@db/prod",
        "pg-integrity audit --schema schema.sql --format json --fail-on medium",
    ] {
        assert!(
            lines.contains(&example),
            "{example:?} on a line of its own:\n{help}"
        );
    }
    // clap reads `{n}` in help text as a line break.
    assert!(help.contains("V<n>__name.sql"), "{help}");
    // And where migrate takes another directory of migrations.
    let tree = cli().args(["migrate", "apply", "--help"]).output().unwrap();
    assert!(String::from_utf8(tree.stdout)
        .unwrap()
        .contains("V<n>__name.sql"));
}

/// A check's unknown rows (ok NULL) are listed with their reason and never fail; its
/// `related` column reaches the JSON report; both batched and on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_rows_and_related_objects_reach_the_report() {
    let db = TestDb::new("create table t(id int primary key);").await;
    let dir = tempfile::tempdir().unwrap();
    custom_check(
        dir.path(),
        "custom.verdicts",
        "Three verdicts",
        "select * from (values ('a'::text, true, 'fine'::text, null::text[]), \
         ('b', false, 'broken', array['b.1', 'b.2']), \
         ('c', null, 'cannot see: grant SELECT on c', null)) v(object, ok, evidence, related)",
    );
    for extra in [&[][..], &["--no-batch"][..]] {
        let out = audit_with_checks(&db.url, dir.path(), "custom.verdicts", extra).await;
        assert_exit(&out, 1);
        let c = check_in(&json_report(&out), "custom.verdicts");
        assert_eq!(c["status"], "partial", "{extra:?}: {c}");
        let findings = c["findings"].as_array().unwrap();
        assert_eq!(findings.len(), 1, "{c}");
        assert_eq!(findings[0]["object"], "b");
        assert_eq!(findings[0]["related"], serde_json::json!(["b.1", "b.2"]));
        assert_eq!(
            c["unknown"],
            serde_json::json!([{"object": "c", "reason": "cannot see: grant SELECT on c"}]),
            "{extra:?}"
        );
    }
    // all unknown: skipped, with the reason
    custom_check(
        dir.path(),
        "custom.verdicts",
        "Three verdicts",
        "select 'c'::text as object, null::bool as ok, 'cannot see: grant SELECT on c'::text as evidence",
    );
    let out = audit_with_checks(&db.url, dir.path(), "custom.verdicts", &[]).await;
    let c = check_in(&json_report(&out), "custom.verdicts");
    assert_eq!(c["status"], "skipped", "{c}");
    assert_eq!(c["reason"], "cannot see: grant SELECT on c");
}

/// A scope that holds nothing would turn every check off in silence: bad input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_schema_or_an_empty_scope_is_bad_input() {
    let db =
        TestDb::new("create schema billing; create table billing.invoices(id int primary key);")
            .await;
    let dir = tempfile::tempdir().unwrap();
    let typo = write(dir.path(), "typo.toml", "[scope]\nschemas = [\"biling\"]\n");
    let run = |config: &std::path::Path| {
        cli()
            .args(["audit", "--format", "json", "--config"])
            .arg(config)
            .args(["--database-url", &db.url])
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap()
    };
    let out = tokio::task::block_in_place(|| run(&typo));
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`biling`") && err.contains("did you mean `billing`?"),
        "{err}"
    );

    let excluded = write(
        dir.path(),
        "none.toml",
        "[scope]\nexclude_tables = [\"*\"]\n",
    );
    let out = tokio::task::block_in_place(|| run(&excluded));
    assert_exit(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no table is in scope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let right = write(dir.path(), "ok.toml", "[scope]\nschemas = [\"billing\"]\n");
    let out = tokio::task::block_in_place(|| run(&right));
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
}

#[test]
fn zero_timeouts_and_a_nan_min_score_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "p.toml", "[audit]\nlock_timeout_ms = 0\n");
    let out = cli()
        .args(["audit", "--config"])
        .arg(&config)
        .args(["--database-url", "host=/nonexistent"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("lock_timeout_ms = 0"));
    for bad in ["NaN", "150"] {
        let out = cli()
            .args([
                "audit",
                "--min-score",
                bad,
                "--database-url",
                "host=/nonexistent",
            ])
            .output()
            .unwrap();
        assert_exit(&out, 2);
    }
}

/// The write probe runs only with `--probe write`, even when named with --only.
#[test]
fn the_write_probe_needs_probe_write() {
    let out = cli()
        .args(["audit", "--probe", "--only", "isolation.cross_tenant_write"])
        .args(["--database-url", "host=/nonexistent"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--probe write"));
    let help = cli().args(["audit", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--probe write") && help.contains("row triggers"),
        "{help}"
    );
}

/// `init` proposes the tenancy the schema has, with why, and the file it writes loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_proposes_the_tenant_column_model_and_roles_and_the_file_loads() {
    let db = TestDb::new("").await;
    let role = format!("{}_app", db.name);
    db.client()
        .await
        .batch_execute(&format!(
            "create table organizations(id int primary key, name text not null);
             create table countries(code text primary key);
             create table projects(id int primary key, org_id int not null references organizations(id), country text references countries(code));
             create table invoices(id int primary key, org_id int not null references organizations(id));
             create table members(id int primary key, org_id int not null references organizations(id));
             create table tasks(id int primary key, project_id int not null references projects(id));
             alter table projects enable row level security;
             create policy projects_org on projects using (org_id = current_setting('app.org_id')::int);
             alter table invoices enable row level security;
             create policy invoices_org on invoices using (org_id = current_setting('app.org_id')::int);
             create role {role};
             grant select, insert, update on projects, invoices, tasks to {role};"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pg-integrity.toml");
    let run = |args: Vec<String>| {
        cli()
            .args(args)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    };
    let init_args = vec![
        "init".to_string(),
        "--database-url".into(),
        db.url.clone(),
        "--output".into(),
        path.display().to_string(),
    ];
    let out = tokio::task::block_in_place(|| run(init_args.clone()));
    assert_exit(&out, 0);
    let text = std::fs::read_to_string(&path).unwrap();
    for want in [
        "column = \"org_id\"",
        "tenant_table = \"public.organizations\"",
        "setting = \"app.org_id\"",
        "model = \"setting\"",
        &format!("app = [\"{role}\"]"),
        "public.organizations owns 4 tables",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    // a second init does not overwrite it
    let again = tokio::task::block_in_place(|| run(init_args));
    assert_exit(&again, 2);
    // the audit takes it: the tenancy checks examine org_id
    let audit = tokio::task::block_in_place(|| {
        run(vec![
            "audit".into(),
            "--format".into(),
            "json".into(),
            "--only".into(),
            "tenancy.tenant_not_null".into(),
            "--config".into(),
            path.display().to_string(),
            "--database-url".into(),
            db.url.clone(),
        ])
    });
    let doc = json_report(&audit);
    let c = check_in(&doc, "tenancy.tenant_not_null");
    assert_eq!(c["status"], "pass", "{c}");
    assert_eq!(c["objects_checked"], 3, "{c}");
    db.client()
        .await
        .batch_execute(&format!("drop owned by {role}; drop role {role};"))
        .await
        .unwrap();
}

/// `--findings` sets how many findings the human formats list, new ones first; the
/// gate names the objects that failed it; `--write-baseline` says what it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_flag_new_first_and_the_gate_names_objects() {
    let db = TestDb::new(
        "create table a1(x int); create table a2(x int); create table a3(x int);
         create table a4(x int); create table a5(x int);",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("baseline.json");
    let run = |args: Vec<String>| {
        let mut all = vec![
            "audit".to_string(),
            "--only".into(),
            "schema.primary_keys".into(),
        ];
        all.extend(args);
        all.extend(["--database-url".to_string(), db.url.clone()]);
        cli()
            .args(all)
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap()
    };
    // a baseline of the first four, then a fifth table is new
    let out = tokio::task::block_in_place(|| {
        run(vec![
            "--format".into(),
            "json".into(),
            "--write-baseline".into(),
            baseline.display().to_string(),
        ])
    });
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wrote baseline") && err.contains("5 findings of 1 check"),
        "{err}"
    );
    db.client()
        .await
        .batch_execute("create table b0_new(x int)")
        .await
        .unwrap();
    let md = |findings: &str| {
        let out = tokio::task::block_in_place(|| {
            run(vec![
                "--format".into(),
                "markdown".into(),
                "--findings".into(),
                findings.into(),
                "--baseline".into(),
                baseline.display().to_string(),
            ])
        });
        assert_exit(&out, 1);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let one = md("1");
    // the one new finding is listed first, ahead of the baseline ones
    assert!(
        one.contains("public.b0_new") && one.contains("and 5 more"),
        "{one}"
    );
    let all = md("all");
    for t in ["a1", "a2", "a3", "a4", "a5", "b0_new"] {
        assert!(all.contains(&format!("public.{t}")), "{t}: {all}");
    }
    assert!(!all.contains("more"), "{all}");
    // the gate names the object that failed it
    let out = tokio::task::block_in_place(|| {
        run(vec![
            "--format".into(),
            "json".into(),
            "--baseline".into(),
            baseline.display().to_string(),
        ])
    });
    let doc = json_report(&out);
    let reasons = doc["summary"]["gate"]["reasons"].to_string();
    assert!(reasons.contains("1 finding: public.b0_new"), "{reasons}");
}

/// Completions and the man page come from the same clap definitions as the parser.
#[test]
fn completions_and_man_page_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let out = cli().args(["completions", shell]).output().unwrap();
        assert_exit(&out, 0);
        let text = String::from_utf8_lossy(&out.stdout);
        for cmd in ["audit", "checks", "migrate", "init", "demo"] {
            assert!(text.contains(cmd), "{shell}: {cmd} missing");
        }
        assert!(text.contains("findings"), "{shell}");
    }
    let out = cli().arg("man").output().unwrap();
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(".ie") && text.contains(".TH pg-integrity 1"),
        "{text}"
    );
}

/// The configuration is found in a parent directory, or named by PG_INTEGRITY_CONFIG;
/// the report says which file it read and the tenancy model it judged by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_is_found_above_the_working_directory_and_named_in_the_report() {
    let db = TestDb::new("create table orgs(id int primary key); create table items(id int primary key, org_id int not null references orgs(id));").await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "pg-integrity.toml",
        "[tenancy]\ncolumn = \"org_id\"\ntenant_table = \"orgs\"\n",
    );
    let nested = dir.path().join("a/b");
    std::fs::create_dir_all(&nested).unwrap();
    let audit = |cwd: &std::path::Path, env: Option<&std::path::Path>| {
        let mut c = cli();
        c.current_dir(cwd)
            .args([
                "audit",
                "--format",
                "json",
                "--only",
                "tenancy.tenant_not_null",
            ])
            .args(["--database-url", &db.url]);
        if let Some(p) = env {
            c.env("PG_INTEGRITY_CONFIG", p);
        }
        json_report(&c.timeout(Duration::from_secs(30)).output().unwrap())
    };
    let doc = tokio::task::block_in_place(|| audit(&nested, None));
    assert_eq!(
        doc["target"]["config"],
        config.display().to_string(),
        "{}",
        doc["target"]
    );
    assert_eq!(
        check_in(&doc, "tenancy.tenant_not_null")["objects_checked"],
        1
    );
    assert!(
        doc["target"]["tenancy"]["model"].is_string(),
        "{}",
        doc["target"]
    );
    // elsewhere, PG_INTEGRITY_CONFIG names it
    let other = tempfile::tempdir().unwrap();
    let doc = tokio::task::block_in_place(|| audit(other.path(), Some(&config)));
    assert_eq!(doc["target"]["config"], config.display().to_string());
    // and with neither, the defaults (tenant_id matches nothing here)
    let doc = tokio::task::block_in_place(|| audit(other.path(), None));
    assert!(doc["target"]["config"].is_null(), "{}", doc["target"]);
}

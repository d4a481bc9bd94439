//! Faults end cleanly (SPEC §2): a server that stops answering, or stops, ends the
//! audit with exit 3 and no report; concurrent DDL and locked tables never turn into
//! errored checks. Each test that freezes or stops a server has a cluster of its own.

mod support;

use pg_integrity::db::connection::connect;
use pg_integrity::db::sandbox::Sandbox;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{check_in, cli, TestDb};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn url(sb: &Sandbox, db: &str) -> String {
    format!(
        "host={} port=5432 user=postgres dbname={db}",
        sb.socket_dir().display()
    )
}

/// A custom check whose statement sleeps `seconds` on the server.
fn slow_check(dir: &Path, seconds: f64) {
    let text = format!(
        "id = \"custom.slow\"\nsection = \"custom\"\ntitle = \"Slow\"\nseverity = \"low\"\nkind = \"catalog\"\n\
         description = \"Sleeps on the server\"\nsql = '''\nselect 'slow'::text as object, true as ok, 'slept'::text as evidence from pg_sleep({seconds})\n'''\n\
         [[test]]\nname = \"p\"\nexpect = \"pass\"\n[[test]]\nname = \"f\"\nexpect = \"fail\"\n"
    );
    std::fs::write(dir.join("custom.slow.toml"), text).unwrap();
}

/// The audit of `custom.slow` (and `more` checks), as a child process, the statement
/// timeout at `statement_ms` and the client-side margin at 1 s.
fn spawn_audit(url: &str, checks: &Path, config: &Path, more: &str) -> Child {
    let only = if more.is_empty() {
        "custom.slow".to_string()
    } else {
        format!("custom.slow,{more}")
    };
    Command::new(assert_cmd::cargo::cargo_bin("pg-integrity"))
        .env("NO_COLOR", "1")
        .env("PG_INTEGRITY_DEADLINE_MARGIN_MS", "1000")
        .env_remove("DATABASE_URL")
        .env_remove("PG_INTEGRITY_CONFIG")
        .args([
            "audit",
            "--format",
            "json",
            "--fail-on",
            "never",
            "--only",
            &only,
        ])
        .arg("--checks")
        .arg(checks)
        .arg("--config")
        .arg(config)
        .args(["--database-url", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for `child`; a guard against a hang (killed and reported), not a timing test.
fn wait(mut child: Child) -> Output {
    let guard = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if guard.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the audit hung: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until the audit's sleeping statement runs on the server.
fn until_sleeping(sb: &Sandbox, db: &str, rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let admin = connect(&sb.options(db)).await.unwrap();
        for _ in 0..2000 {
            let n: i64 = admin
                .query_one(
                    "select count(*) from pg_stat_activity where application_name = 'pg-integrity' \
                     and state = 'active' and query like '%pg_sleep%'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if n > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the audit's statement never ran");
    });
}

/// The postmaster and every process it started.
fn server_processes(sb: &Sandbox) -> Vec<i32> {
    let pidfile = sb.socket_dir().join("data/postmaster.pid");
    let text = std::fs::read_to_string(pidfile).unwrap();
    let postmaster: i32 = text.lines().next().unwrap().trim().parse().unwrap();
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(postmaster) {
            pids.push(pid);
        }
    }
    pids
}

fn signal(pids: &[i32], sig: nix::sys::signal::Signal) {
    for &pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// The database (one table), the checks directory, and the configuration file (in a
/// directory of its own: every TOML file beside the checks is read as a check).
fn setup(
    sb: &Sandbox,
    db: &str,
    rt: &tokio::runtime::Runtime,
) -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
    sb.create_database(db).unwrap();
    rt.block_on(async {
        let c = connect(&sb.options(db)).await.unwrap();
        c.batch_execute("create table accounts(id int primary key, name text)")
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    slow_check(dir.path(), 3.0);
    let conf_dir = tempfile::tempdir().unwrap();
    let config = conf_dir.path().join("pg-integrity.toml");
    std::fs::write(&config, "[audit]\nstatement_timeout_ms = 6000\n").unwrap();
    (dir, conf_dir, config)
}

#[test]
fn a_frozen_server_ends_the_audit_with_exit_3_and_no_report() {
    let sb = Sandbox::start(&[]).expect("a throwaway server");
    let rt = runtime();
    let (dir, _conf, config) = setup(&sb, "frozen", &rt);
    let url = url(&sb, "frozen");

    // Unfrozen, the same audit waits out the 3 s statement: the deadline cuts no
    // statement the server is still running.
    let out = wait(spawn_audit(&url, dir.path(), &config, ""));
    support::assert_exit(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check_in(&doc, "custom.slow")["status"], "pass", "{doc}");

    // Frozen mid-statement (the postmaster and every backend stopped): the kernel
    // still holds the socket open, so only the client-side deadline can end it.
    let child = spawn_audit(&url, dir.path(), &config, "");
    until_sleeping(&sb, "frozen", &rt);
    let pids = server_processes(&sb);
    signal(&pids, nix::sys::signal::Signal::SIGSTOP);
    let out = wait(child);
    signal(&server_processes(&sb), nix::sys::signal::Signal::SIGCONT);
    signal(&pids, nix::sys::signal::Signal::SIGCONT);
    support::assert_exit(&out, 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lost the server: no answer for 7 s"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "a report was printed");
}

#[test]
fn a_server_stopped_mid_audit_is_exit_3_with_no_score() {
    let mut sb = Sandbox::start(&[]).expect("a throwaway server");
    let rt = runtime();
    let (dir, _conf, config) = setup(&sb, "stopped", &rt);
    let url = url(&sb, "stopped");
    let child = spawn_audit(&url, dir.path(), &config, "schema.primary_keys");
    until_sleeping(&sb, "stopped", &rt);
    sb.stop();
    let out = wait(child);
    support::assert_exit(&out, 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lost the server mid-audit"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "a report was printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Tables in two tenants with one orphan; `locked` is the table another session holds
/// an ACCESS EXCLUSIVE lock on.
const LOCK_SCHEMA: &str = "
create table tenants(id int primary key);
create table events(id int primary key, tenant_id int not null references tenants(id));
create table tickets(id int primary key, tenant_id int not null references tenants(id), event_id int);
create table locked(id int primary key, tenant_id int not null references tenants(id), available_quantity int, event_id int);
insert into tenants values (1), (2);
insert into events values (1, 1);
insert into tickets values (1, 1, 1), (2, 1, 99);
insert into locked values (1, 1, -4, 98);
";

fn audit_json(url: &str, extra: &[&str]) -> serde_json::Value {
    let out = cli()
        .args(["audit", "--format", "json", "--fail-on", "never"])
        .args(extra)
        .args(["--database-url", url])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    support::json_report(&out)
}

fn errored(doc: &serde_json::Value) -> Vec<String> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "error")
        .map(|c| format!("{}: {}", c["id"], c["reason"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_table_blocks_no_catalog_check_and_only_its_own_data() {
    let db = TestDb::new(LOCK_SCHEMA).await;
    let holder = db.client().await;
    holder
        .batch_execute("begin; lock table locked in access exclusive mode;")
        .await
        .unwrap();
    let url = db.url.clone();
    let doc = tokio::task::spawn_blocking(move || audit_json(&url, &["--deep"]))
        .await
        .unwrap();
    // Every catalog check ran although a table of the scope is locked: none takes a
    // table lock, so none waited for the lock timeout.
    assert_eq!(errored(&doc), Vec::<String>::new(), "{doc}");
    // The locked table's data is unknown with the reason; the other tables' findings
    // stay.
    let orphans = check_in(&doc, "data.orphans");
    assert_eq!(orphans["status"], "fail", "{orphans}");
    let text = orphans.to_string();
    assert!(text.contains("public.tickets.event_id"), "{text}");
    assert!(
        text.contains("lock") && text.contains("public.locked"),
        "the locked table's objects are unknown with the lock named: {text}"
    );
    holder.batch_execute("rollback").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ddl_during_20_audits_errors_no_check() {
    let db = TestDb::new(LOCK_SCHEMA).await;
    let ddl = db.client().await;
    // The DDL never waits long behind an audit's lock: it fails and goes on.
    ddl.batch_execute("set lock_timeout = '200ms'")
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    // Tables, indexes, foreign keys and policies created and dropped in a loop.
    let churn = tokio::spawn(async move {
        let mut n = 0u64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let sql = format!(
                "create table churn_{n}(id int primary key, tenant_id int not null references tenants(id), event_id int, available_quantity int);
                 insert into churn_{n} values (1, 1, 97, -1);
                 create index churn_{n}_event on churn_{n}(event_id);
                 alter table churn_{n} enable row level security;
                 create policy churn_{n}_p on churn_{n} using (tenant_id = current_setting('app.tenant_id')::int);
                 drop index if exists churn_{}_event;
                 drop table if exists churn_{};",
                n.saturating_sub(1),
                n.saturating_sub(2)
            );
            // A DDL statement may wait for an audit's lock and time out: go on.
            let _ = ddl.batch_execute(&sql).await;
            n += 1;
        }
        n
    });
    let mut errors = vec![];
    for k in 0..20 {
        let url = db.url.clone();
        let deep = k % 2 == 0;
        let doc = tokio::task::spawn_blocking(move || {
            audit_json(&url, if deep { &["--deep"] } else { &[] })
        })
        .await
        .unwrap();
        errors.extend(errored(&doc).into_iter().map(|e| format!("audit {k}: {e}")));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = churn.await.unwrap();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(rounds > 20, "the DDL loop ran {rounds} rounds only");
}

/// `--schema` files are loaded by psql as the invoking user: one that would run a
/// program (here through a file it includes) is refused before any server starts,
/// unless `--allow-shell`.
#[test]
fn a_schema_file_that_runs_a_program_is_refused_without_allow_shell() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    std::fs::write(
        dir.path().join("schema.sql"),
        "create table accounts(id int primary key);\n\\ir more.sql\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("more.sql"),
        format!(
            "create table notes(id int primary key);\n\\! touch '{}'\n",
            marker.display()
        ),
    )
    .unwrap();
    let schema = dir.path().join("schema.sql");
    let out = cli()
        .args(["audit", "--format", "json", "--only", "schema.primary_keys"])
        .arg("--schema")
        .arg(&schema)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    support::assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("more.sql")
            && stderr.contains("runs a program")
            && stderr.contains("--allow-shell"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the command ran");

    let out = cli()
        .args(["audit", "--format", "json", "--only", "schema.primary_keys"])
        .arg("--schema")
        .arg(&schema)
        .arg("--allow-shell")
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    support::assert_exit(&out, 0);
    assert!(marker.exists(), "--allow-shell lets the file run it");
}

/// A partition another session holds an ACCESS EXCLUSIVE lock on (DDL mid-way): no
/// catalog check waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_partition_blocks_no_catalog_check() {
    let db = TestDb::new(
        "create table tenants(id int primary key);
         create table events(id int not null, tenant_id int not null references tenants(id),
                             primary key (id, tenant_id)) partition by list (tenant_id);
         create table events_1 partition of events for values in (1);
         create table events_2 partition of events for values in (2);
         alter table events enable row level security;",
    )
    .await;
    let holder = db.client().await;
    holder
        .batch_execute("begin; lock table events_2 in access exclusive mode;")
        .await
        .unwrap();
    let url = db.url.clone();
    let doc = tokio::task::spawn_blocking(move || audit_json(&url, &[]))
        .await
        .unwrap();
    assert_eq!(errored(&doc), Vec::<String>::new(), "{doc}");
    holder.batch_execute("rollback").await.unwrap();
}

/// A custom data check with one row test per table (`hit`), its plan sleeping
/// `sleep` seconds first (so that a table can be dropped between the plan, read in
/// the audit's snapshot, and the table's scan).
fn row_test_check(dir: &Path, hit: &str, sleep: f64) {
    let text = format!(
        "id = \"custom.row_test\"\nsection = \"custom\"\ntitle = \"Row test\"\nseverity = \"low\"\nkind = \"data\"\n\
         description = \"A row test\"\nuses = [\"data_scan\"]\nsql = '''\n\
         select d.object, d.unseen_reason as unknown_reason, d.scan, d.key_expr as scan_key,\n\
                $h${hit}$h$ as hit,\n\
                $q$select $1 = 0 as ok, $5 || ' has ' || $1 || ' hits' as evidence$q$ as query,\n\
                array[d.object] as args\n\
         from data_scan d cross join (select pg_sleep({sleep})) s\n'''\n\
         [[test]]\nname = \"p\"\nexpect = \"pass\"\n[[test]]\nname = \"f\"\nexpect = \"fail\"\n"
    );
    std::fs::write(dir.join("custom.row_test.toml"), text).unwrap();
}

fn audit_row_test(url: &str, checks: &Path) -> serde_json::Value {
    let out = cli()
        .args(["audit", "--format", "json", "--fail-on", "never", "--deep"])
        .args(["--only", "custom.row_test", "--checks"])
        .arg(checks)
        .args(["--database-url", url])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    support::json_report(&out)
}

/// A relation error is taken for a table dropped mid-audit only when the catalog
/// confirms it: a row test naming a relation that never existed errors, not skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_test_naming_a_relation_that_never_existed_errors() {
    let db = TestDb::new(
        "create table kept(id int primary key, n int); insert into kept values (1, -1);",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    row_test_check(
        dir.path(),
        "c.id in (select x.id from public.no_such_table x)",
        0.0,
    );
    let url = db.url.clone();
    let path = dir.path().to_path_buf();
    let doc = tokio::task::spawn_blocking(move || audit_row_test(&url, &path))
        .await
        .unwrap();
    let check = check_in(&doc, "custom.row_test");
    assert_eq!(check["status"], "error", "{check}");
    assert!(
        check.to_string().contains("no_such_table"),
        "the error names the relation: {check}"
    );
}

/// ... and a table that was there when the audit began and is dropped before its
/// scan is skipped, the other tables' findings kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_dropped_between_plan_and_scan_is_skipped() {
    let db = TestDb::new(
        "create table kept(id int primary key, n int); insert into kept values (1, -1);
         create table doomed(id int primary key, n int); insert into doomed values (1, -1);",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    row_test_check(dir.path(), "c.n < 0", 3.0);
    let url = db.url.clone();
    let path = dir.path().to_path_buf();
    let audit = tokio::task::spawn_blocking(move || audit_row_test(&url, &path));
    // Drop the table while the plan sleeps (it has read the catalog in its snapshot).
    let admin = db.client().await;
    let mut sleeping = false;
    for _ in 0..500 {
        let n: i64 = admin
            .query_one(
                "select count(*) from pg_stat_activity where datname = current_database() \
                 and state = 'active' and wait_event = 'PgSleep' and pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            sleeping = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sleeping, "the plan never ran");
    admin
        .batch_execute("set lock_timeout = '2s'; drop table doomed")
        .await
        .unwrap();
    let doc = audit.await.unwrap();
    let check = check_in(&doc, "custom.row_test");
    assert_eq!(check["status"], "fail", "{check}");
    let text = check.to_string();
    assert!(text.contains("public.kept"), "{text}");
    assert!(!text.contains("public.doomed"), "{text}");
}

/// A custom data check of `steps` plain queries that each sleep 1 s on the server:
/// spread over the audit's connections, each answers one a second.
fn sleepy_check(dir: &Path, steps: u32) {
    let text = format!(
        "id = \"custom.sleepy\"\nsection = \"custom\"\ntitle = \"Sleepy\"\nseverity = \"low\"\nkind = \"data\"\n\
         description = \"Steps that sleep\"\nsql = '''\n\
         select 'step ' || g as object,\n\
                $q$select true as ok, (select 'slept' from pg_sleep(1)) as evidence$q$ as query\n\
         from generate_series(1, {steps}) g\n'''\n\
         [[test]]\nname = \"p\"\nexpect = \"pass\"\n[[test]]\nname = \"f\"\nexpect = \"fail\"\n"
    );
    std::fs::write(dir.join("custom.sleepy.toml"), text).unwrap();
}

/// The client-side deadline is per connection: one backend frozen (SIGSTOP) while the
/// audit's other connections keep answering ends the audit with exit 3 at that
/// connection's deadline (statement_timeout 2 s + margin 1 s), not once the others
/// have run out of work (45 one-second steps over 3 connections: about 15 s).
#[test]
fn one_frozen_backend_among_answering_ones_is_exit_3_at_its_own_deadline() {
    let sb = Sandbox::start(&[]).expect("a throwaway server");
    let rt = runtime();
    sb.create_database("one_frozen").unwrap();
    rt.block_on(async {
        let c = connect(&sb.options("one_frozen")).await.unwrap();
        c.batch_execute("create table accounts(id int primary key)")
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    sleepy_check(dir.path(), 45);
    let conf_dir = tempfile::tempdir().unwrap();
    let config = conf_dir.path().join("pg-integrity.toml");
    std::fs::write(&config, "[audit]\nstatement_timeout_ms = 2000\n").unwrap();
    let child = Command::new(assert_cmd::cargo::cargo_bin("pg-integrity"))
        .env("NO_COLOR", "1")
        .env("PG_INTEGRITY_DEADLINE_MARGIN_MS", "1000")
        .env_remove("DATABASE_URL")
        .env_remove("PG_INTEGRITY_CONFIG")
        .args(["audit", "--format", "json", "--fail-on", "never", "--deep"])
        .args(["--jobs", "3", "--only", "custom.sleepy", "--checks"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .args(["--database-url", &url(&sb, "one_frozen")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the three connections sleep, then freeze one backend only.
    let (victim, others) = rt.block_on(async {
        let admin = connect(&sb.options("one_frozen")).await.unwrap();
        for _ in 0..2000 {
            let pids: Vec<i32> = admin
                .query(
                    "select pid from pg_stat_activity where application_name = 'pg-integrity' \
                     and wait_event = 'PgSleep' order by pid",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            if pids.len() >= 3 {
                return (pids[0], pids[1..].to_vec());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the audit's connections never slept together");
    });
    signal(&[victim], nix::sys::signal::Signal::SIGSTOP);
    let stopped = Instant::now();
    // The other connections keep answering meanwhile.
    let answering = rt.block_on(async {
        let admin = connect(&sb.options("one_frozen")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        admin
            .query_one(
                "select count(*) from pg_stat_activity where pid = any($1) and wait_event = 'PgSleep'",
                &[&others],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    });
    let out = wait(child);
    let took = stopped.elapsed();
    eprintln!("exit 3 came {took:?} after the freeze");
    signal(&[victim], nix::sys::signal::Signal::SIGCONT);
    support::assert_exit(&out, 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lost the server"), "{stderr}");
    assert!(out.stdout.is_empty(), "a report was printed");
    assert!(answering > 0, "the other connections had stopped too");
    // its deadline (3 s) plus slack for a loaded machine, well short of the ~14 s the
    // other connections still had to work
    assert!(
        took < Duration::from_secs(8),
        "exit 3 came {took:?} after the freeze"
    );
}

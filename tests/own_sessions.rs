//! An audit never judges its own sessions (issue 19): every connection it opens is
//! (its pool and its probes' connection) registered by backend pid (`pg_integrity.audit_pids`, `checks/lib/audit_sessions.sql`),
//! and the checks that read pg_stat_activity leave those out, while any other session,
//! even one with the audit's role and application_name, is still judged.

mod support;

use std::time::Duration;
use support::{check_in, cli, json_report, TestDb};

/// A runtime check that fails for every client session of this database that is not
/// one of the audit's own, naming its pid.
const OTHERS: &str = r#"id = "custom.other_sessions"
section = "custom"
title = "Sessions other than the audit's"
severity = "high"
kind = "runtime"
description = "every client session of this database that is not the audit's own"
uses = ["audit_sessions"]
sql = '''
select 'pid ' || a.pid as object, false as ok, coalesce(a.application_name, '') as evidence
from pg_stat_activity a
where a.datname = current_database()
  and a.backend_type = 'client backend'
  and a.pid not in (select pid from audit_sessions)
'''
[[test]]
name = "p"
expect = "pass"
[[test]]
name = "f"
expect = "fail"
"#;

/// A probe that reads nothing: the audit opens the probes' connection before any
/// check runs, so the runtime check above sees it.
const PROBE: &str = r#"id = "custom.probe"
section = "custom"
title = "A probe"
severity = "low"
kind = "probe"
description = "a probe that reads nothing"
sql = '''
select 'nothing' as object, 'select true as ok, ''read nothing'' as evidence' as query
'''
[[test]]
name = "p"
expect = "pass"
[[test]]
name = "f"
expect = "fail"
"#;

async fn audit(db: &TestDb, dir: &std::path::Path, jobs: &str) -> serde_json::Value {
    let (url, dir, jobs) = (db.url.clone(), dir.to_path_buf(), jobs.to_string());
    let out = tokio::task::spawn_blocking(move || {
        cli()
            .args(["audit", "--format", "json", "--checks"])
            .arg(&dir)
            // a batch of two runtime checks and one on its own: every kind of work
            .args([
                "--only",
                "custom.other_sessions,pool.connection_headroom,custom.probe",
            ])
            .args(["--jobs", &jobs, "--database-url", &url])
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    json_report(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audits_own_connections_are_never_judged_and_a_lookalike_is() {
    let db = TestDb::new("create table t(id int primary key);").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("custom.other_sessions.toml"), OTHERS).unwrap();
    std::fs::write(dir.path().join("custom.probe.toml"), PROBE).unwrap();

    for jobs in ["1", "4"] {
        let doc = audit(&db, dir.path(), jobs).await;
        assert_eq!(check_in(&doc, "custom.probe")["status"], "pass", "{doc}");
        let c = check_in(&doc, "custom.other_sessions");
        assert_eq!(
            c["status"], "not_applicable",
            "--jobs {jobs}: the audit judged one of its own sessions: {c}"
        );
    }

    // A session of the same role under the audit's application_name is not the audit.
    let lookalike = db.client().await;
    lookalike
        .batch_execute("set application_name = 'pg-integrity'")
        .await
        .unwrap();
    let pid: i32 = lookalike
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let doc = audit(&db, dir.path(), "4").await;
    let c = check_in(&doc, "custom.other_sessions");
    assert_eq!(c["status"], "fail", "{c}");
    let objects: Vec<&str> = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["object"].as_str())
        .collect();
    assert_eq!(objects, vec![format!("pid {pid}")], "{c}");
}

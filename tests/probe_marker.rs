//! What the probes do is never read back as the application's behaviour (SPEC §2):
//! probe statements carry `/* pg-integrity probe */`, kept in pg_stat_statements'
//! stored text, and every check reading tracked statements leaves them out.

use std::time::Duration;

fn cli() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("pg-integrity").unwrap();
    c.env("NO_COLOR", "1").env_remove("DATABASE_URL");
    c
}

#[test]
fn a_marked_probe_statement_is_not_taken_for_the_applications_claim() {
    let sb = pg_integrity::db::sandbox::Sandbox::start(&[
        "shared_preload_libraries = 'pg_stat_statements'",
    ])
    .expect("a throwaway server with pg_stat_statements");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status_after = |statement: &str, db: &str| -> String {
        rt.block_on(async {
            let admin = pg_integrity::db::connection::connect(&sb.options("postgres"))
                .await
                .unwrap();
            admin
                .batch_execute(&format!("create database {db}"))
                .await
                .unwrap();
            let c = pg_integrity::db::connection::connect(&sb.options(db))
                .await
                .unwrap();
            c.batch_execute(
                "create extension pg_stat_statements;
                 create table jobs(id int primary key, status text not null, run_at timestamptz not null);
                 insert into jobs values (1, 'ready', now());",
            )
            .await
            .unwrap();
            for _ in 0..3 {
                c.batch_execute(&format!("begin; {statement}; rollback;"))
                    .await
                    .unwrap();
            }
        });
        let url = format!(
            "host={} port=5432 user=postgres dbname={db}",
            sb.socket_dir().display()
        );
        let out = cli()
            .args(["audit", "--format", "json", "--only", "locking.skip_locked"])
            .args(["--database-url", &url])
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        doc["checks"][0]["status"].as_str().unwrap().to_string()
    };
    let claim =
        "select id from jobs where status = 'ready' order by run_at limit 1 for update skip locked";
    // The application's own claim is seen: the queue passes.
    assert_eq!(status_after(claim, "app_claims"), "pass");
    // The same statement sent by a probe is not the application's: no claim is seen.
    let marked = format!("/* pg-integrity probe */ {claim}");
    assert_ne!(status_after(&marked, "probe_claims"), "pass");
}

//! What the probes do is never read back as the application's behaviour (SPEC §2):
//! probe statements carry `/* pg-integrity probe */`, kept in pg_stat_statements'
//! stored text, and every check reading tracked statements leaves them out.

mod support;

use std::time::Duration;

fn cli() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("pg-integrity").unwrap();
    c.env("NO_COLOR", "1").env_remove("DATABASE_URL");
    c
}

#[test]
fn a_marked_probe_statement_is_not_taken_for_the_applications_claim() {
    let (sb, rt) = support::preloaded_server();
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

/// Audit → `--probe write --deep` → audit: the second audit gives the same verdicts
/// as the first (the probes' and the data scans' statements are marked and left out of
/// every check reading tracked statements; the probes' writes are rolled back).
#[test]
fn a_probe_run_changes_nothing_a_later_audit_sees() {
    let sb = pg_integrity::db::sandbox::Sandbox::start(&[
        "shared_preload_libraries = 'pg_stat_statements'",
        "pg_stat_statements.track = all",
    ])
    .expect("a throwaway server with pg_stat_statements");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let admin = pg_integrity::db::connection::connect(&sb.options("postgres"))
            .await
            .unwrap();
        admin.batch_execute("create database stable").await.unwrap();
        let c = pg_integrity::db::connection::connect(&sb.options("stable"))
            .await
            .unwrap();
        // Two tenants; a queue, inventory, a table under a tenant policy, one without
        // RLS (the write probe moves its row), and a sequence a trigger advances.
        c.batch_execute(
            "create extension pg_stat_statements;
             create role pm_app nologin;
             create table tenants(id int primary key);
             create table jobs(id bigint primary key, tenant_id int not null references tenants(id),
                               status text not null, run_at timestamptz not null default now());
             create table products(id int primary key, tenant_id int not null references tenants(id),
                                   stock int not null);
             alter table products enable row level security;
             create policy products_tenant on products
               using (tenant_id = nullif(current_setting('app.current_tenant', true), '')::int);
             create table notes(id int primary key, tenant_id int not null references tenants(id), body text);
             create sequence note_edits;
             create function count_edit() returns trigger language plpgsql as $$
               begin perform nextval('note_edits'); return new; end $$;
             create trigger notes_edit before update on notes for each row execute function count_edit();
             grant select, update on products, notes, jobs to pm_app;
             grant usage on sequence note_edits to pm_app;
             insert into tenants values (1), (2);
             insert into jobs values (1, 1, 'ready', now()), (2, 2, 'ready', now());
             insert into products values (1, 1, 5), (2, 2, 5);
             insert into notes values (1, 1, 'a'), (2, 2, 'b');",
        )
        .await
        .unwrap();
        // the application: transaction-local tenant, a relative update
        for _ in 0..3 {
            c.batch_execute(
                "begin; select set_config('app.current_tenant', '1', true);
                 update products set stock = stock - 1 where id = 1; commit;",
            )
            .await
            .unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pg-integrity.toml");
    std::fs::write(&config, "[roles]\napp = [\"pm_app\"]\n").unwrap();
    let url = format!(
        "host={} port=5432 user=postgres dbname=stable",
        sb.socket_dir().display()
    );
    let audit = |extra: &[&str]| -> serde_json::Value {
        let out = cli()
            .args([
                "audit",
                "--format",
                "json",
                "--fail-on",
                "never",
                "--config",
            ])
            .arg(&config)
            .args(extra)
            .args(["--database-url", &url])
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
    };
    // Each check's status and its findings' objects.
    let verdicts = |doc: &serde_json::Value| -> Vec<(String, String, Vec<String>)> {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let mut objects: Vec<String> = c["findings"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .map(|x| x["object"].as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                objects.sort();
                (
                    c["id"].as_str().unwrap().to_string(),
                    c["status"].as_str().unwrap().to_string(),
                    objects,
                )
            })
            .collect()
    };
    let sequence = || -> i64 {
        rt.block_on(async {
            let c = pg_integrity::db::connection::connect(&sb.options("stable"))
                .await
                .unwrap();
            c.query_one(
                "select coalesce((select last_value from note_edits where is_called), 0)",
                &[],
            )
            .await
            .unwrap()
            .get(0)
        })
    };
    let before = verdicts(&audit(&[]));
    let probed = audit(&["--probe", "write", "--deep"]);
    let write = probed["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "isolation.cross_tenant_write")
        .cloned()
        .unwrap_or_default();
    // the write probe ran: it moved the notes row (no RLS) and reported it
    assert_eq!(write["status"], "partial", "{write}");
    let after = verdicts(&audit(&[]));
    let changed: Vec<String> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(b, a)| format!("{b:?} -> {a:?}"))
        .collect();
    assert_eq!(before.len(), after.len());
    assert!(
        changed.is_empty(),
        "the probes changed what an audit sees: {changed:#?}"
    );
    // The trigger the write probe fired advanced the sequence: a sequence is not
    // transactional, so this is the one trace a rolled-back probe leaves (the README
    // says so).
    assert!(sequence() >= 1, "the trigger fired in the probe");
}

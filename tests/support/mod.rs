//! Shared by the integration tests: one PostgreSQL server per test binary —
//! PG_INTEGRITY_TEST_URL when set, else a throwaway cluster — and a fresh,
//! uniquely named database per test, dropped when the test ends.

#![allow(dead_code)]

use pg_integrity::db::connection::{connect, ConnectOptions};
use pg_integrity::db::sandbox::Sandbox;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub struct Server {
    pub admin: ConnectOptions,
    /// The conninfo string for child processes (the CLI under test).
    pub url_for: Box<dyn Fn(&str) -> String + Send + Sync>,
    _sandbox: Option<Sandbox>,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("PG_INTEGRITY_TEST_URL") {
            let admin =
                ConnectOptions::resolve(Some(&url), &|_| None).expect("PG_INTEGRITY_TEST_URL");
            let base = url.clone();
            return Server {
                admin,
                url_for: Box::new(move |db| with_dbname(&base, db)),
                _sandbox: None,
            };
        }
        let sb =
            Sandbox::start(&[]).expect("start a throwaway PostgreSQL (server binaries needed)");
        let dir = sb.socket_dir();
        Server {
            admin: sb.options("postgres"),
            url_for: Box::new(move |db| {
                format!("host={} port=5432 user=postgres dbname={db}", dir.display())
            }),
            _sandbox: Some(sb),
        }
    })
}

/// Replace the database of a URL or key=value string.
fn with_dbname(url: &str, db: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (head, query) = url
            .split_once('?')
            .map_or((url, None), |(h, q)| (h, Some(q)));
        let scheme_end = head.find("://").unwrap() + 3;
        let path_start = head[scheme_end..]
            .find('/')
            .map(|i| i + scheme_end)
            .unwrap_or(head.len());
        let mut s = format!("{}/{db}", &head[..path_start]);
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        s
    } else {
        format!("{url} dbname={db}")
    }
}

/// A database for one test, dropped on drop.
pub struct TestDb {
    pub name: String,
    pub options: ConnectOptions,
    pub url: String,
}

impl TestDb {
    pub async fn new(setup: &str) -> TestDb {
        let s = server();
        let name = format!(
            "pgi_it_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            chrono::Utc::now().timestamp_subsec_micros()
        );
        let admin = connect(&s.admin).await.expect("connect to the test server");
        admin
            .batch_execute(&format!("create database \"{name}\""))
            .await
            .unwrap();
        let db = TestDb {
            options: s.admin.clone().with_dbname(&name),
            url: (s.url_for)(&name),
            name,
        };
        if !setup.is_empty() {
            let c = db.client().await;
            c.batch_execute(setup).await.expect("setup SQL");
        }
        db
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.options)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = server().admin.clone();
        let name = self.name.clone();
        // Drop runs inside or outside a runtime: use a private one on a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let c = connect(&admin).await.ok()?;
                c.batch_execute(&format!("drop database if exists \"{name}\" with (force)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// The CLI binary with a clean, colourless environment.
pub fn cli() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("pg-integrity").unwrap();
    c.env("NO_COLOR", "1")
        .env_remove("DATABASE_URL")
        .env_remove("PGHOST")
        .env_remove("PGPASSWORD")
        .env_remove("PG_INTEGRITY_CONFIG")
        .env_remove("GITHUB_ACTIONS");
    c
}

/// Assert the command exited with `code`, showing its stderr when it did not.
pub fn assert_exit(out: &std::process::Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The JSON report an audit printed, or a panic with what it said on stderr.
pub fn json_report(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no JSON report: {}", String::from_utf8_lossy(&out.stderr)))
}

/// The JSON report's entry for check `id`.
pub fn check_in(doc: &serde_json::Value, id: &str) -> serde_json::Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {doc}"))
        .clone()
}

/// A throwaway server that preloads pg_stat_statements (for the checks that read tracked
/// statements), with a current-thread runtime to talk to it.
pub fn preloaded_server() -> (Sandbox, tokio::runtime::Runtime) {
    let sb = Sandbox::start(&["shared_preload_libraries = 'pg_stat_statements'"])
        .expect("a throwaway server with pg_stat_statements");
    (sb, runtime())
}

/// A current-thread runtime for a test's own client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `f` run to its end on a fresh current-thread runtime.
pub fn sync<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// The first column of every row `sql` returns.
pub async fn first_column<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Vec<T> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

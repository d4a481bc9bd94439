//! `cargo bench --bench scale`: how the audit scales. Prints figures; asserts nothing.
//!
//! Starts a throwaway server, generates multi-tenant schemas of N tables (BENCH_TABLES,
//! default "1000,5000") and a tickets table of BENCH_ROWS rows (default 10,000,000),
//! then times (medians of 5 runs, 3 for the deep audit): the catalog audit per N, one read of the catalog tables, the deep
//! audit, one sequential scan of tickets, and the deep audit's floor (one scan plus one
//! hash of the duplicate test's keys: an exact duplicate test must hash or sort them),
//! printing the ratio deep audit / floor (target <= 1.5); and the peak memory (max RSS)
//! of the pg-integrity process.

use pg_integrity::db::sandbox::Sandbox;
use std::process::Command;
use std::time::Instant;

fn psql(sb: &Sandbox, db: &str, sql: &str) -> String {
    psql_with(sb, db, sql, false)
}

/// `psql -c sql`; with `discard`, the rows go to /dev/null instead of this process.
fn psql_with(sb: &Sandbox, db: &str, sql: &str, discard: bool) -> String {
    let mut cmd = Command::new(sb.bindir().join("psql"));
    if discard {
        cmd.args(["-o", "/dev/null"]);
    }
    let out = cmd
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(sb.socket_dir())
        .args(["-U", "postgres", "-d", db, "-c", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn generate_schema(sb: &Sandbox, db: &str, n: usize) {
    psql(
        sb,
        db,
        "create table tenants(id uuid primary key default gen_random_uuid(), name text not null)",
    );
    let batch = 250;
    let mut i = 1;
    while i <= n {
        let end = (i + batch - 1).min(n);
        let mut sql = String::from("begin;\n");
        for t in i..=end {
            let parent = if t > 1 {
                format!(", t{}_id uuid references t{} (id)", t - 1, t - 1)
            } else {
                String::new()
            };
            sql.push_str(&format!(
                "create table t{t}(id uuid primary key default gen_random_uuid(), tenant_id uuid not null references tenants(id){parent}, \
                 name text not null, status text, created_at timestamptz not null default now(), ref_number text unique, \
                 amount numeric(12,2) check (amount >= 0), quantity int);\n\
                 create index on t{t}(tenant_id);\n"
            ));
            if t % 3 == 0 {
                sql.push_str(&format!(
                    "alter table t{t} enable row level security;\n\
                     create policy t{t}_tenant on t{t} using (tenant_id = (select nullif(current_setting('app.current_tenant', true), '')::uuid));\n"
                ));
            }
        }
        sql.push_str("commit;\n");
        psql(sb, db, &sql);
        i = end + 1;
    }
}

fn timed(label: &str, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    let s = t.elapsed().as_secs_f64();
    println!("{label:<55} {s:>9.3} s");
    s
}

/// Run `f` `runs` times; print and return the median wall time (a shared 2-core
/// machine varies by ~10% from run to run), with the fastest and slowest.
fn timed_median(label: &str, runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    println!(
        "{label:<55} {median:>9.3} s  (median of {}: {:.3}–{:.3})",
        times.len(),
        times[0],
        times[times.len() - 1]
    );
    median
}

/// Connections for the audit: one per core (the server runs on this machine, and
/// the README advises `--jobs` = the server's cores), at most the default 4.
fn jobs() -> String {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get().min(4))
        .to_string()
}

/// Run the CLI; returns its peak RSS in MB (from wait4's rusage).
fn audit(url: &str, extra: &[&str]) -> f64 {
    let exe = env!("CARGO_BIN_EXE_pg-integrity");
    let mut child = Command::new(exe)
        .args([
            "audit",
            "--format",
            "json",
            "--fail-on",
            "never",
            "--jobs",
            &jobs(),
            "--database-url",
            url,
        ])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run pg-integrity");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut usage: libc_rusage = unsafe { std::mem::zeroed() };
    let mut status = 0i32;
    // wait4 gives the child's own max RSS (kilobytes on Linux).
    unsafe { wait4(pid.as_raw(), &mut status, 0, &mut usage) };
    let _ = child.try_wait();
    usage.ru_maxrss as f64 / 1024.0
}

#[repr(C)]
#[allow(non_camel_case_types)]
struct libc_rusage {
    ru_utime: [i64; 2],
    ru_stime: [i64; 2],
    ru_maxrss: i64,
    _rest: [i64; 13],
}

extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut libc_rusage) -> i32;
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / `cargo bench -- --list`: nothing to list
    }
    let sizes: Vec<usize> = std::env::var("BENCH_TABLES")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rows: u64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let sb = Sandbox::start(&[
        "max_locks_per_transaction = 1024",
        "shared_buffers = 512MB",
        "max_wal_size = 4GB",
    ])
    .expect("throwaway server");
    let url_of = |db: &str| {
        format!(
            "host={} port=5432 user=postgres dbname={db}",
            sb.socket_dir().display()
        )
    };
    let catalog_read = "select (select count(*) from pg_class), (select count(*) from pg_attribute), \
        (select count(*) from pg_constraint), (select count(*) from pg_index), (select count(*) from pg_policy), \
        (select count(*) from pg_proc), (select count(*) from pg_depend), (select count(*) from pg_namespace)";
    // The same catalogs read row by row into the client, as a tool that evaluated
    // checks client-side would have to.
    let catalog_fetch = "select * from pg_class; select * from pg_attribute; select * from pg_constraint; \
        select * from pg_index; select * from pg_policy; select * from pg_proc; select * from pg_depend; \
        select * from pg_namespace; select * from pg_type";
    println!(
        "audits run with --jobs {} (one connection per core)",
        jobs()
    );
    let mut per_n = vec![];
    for &n in &sizes {
        let db = format!("bench_{n}");
        psql(&sb, "postgres", &format!("create database {db}"));
        timed(&format!("generate {n} tables"), || {
            generate_schema(&sb, &db, n)
        });
        psql(&sb, &db, "analyze");
        let url = url_of(&db);
        audit(&url, &[]); // warm the cache
        let mut rss: f64 = 0.0;
        let t = timed_median(&format!("catalog audit, {n} tables"), 5, || {
            rss = rss.max(audit(&url, &[]))
        });
        let c = timed_median(
            &format!("scan the catalog tables once (count), {n} tables"),
            5,
            || {
                psql(&sb, &db, catalog_read);
            },
        );
        let f = timed_median(
            &format!("fetch the catalog tables once (select *), {n} tables"),
            5,
            || {
                // into /dev/null: held here, the rows would swell this process, whose
                // memory a child shares until it execs (and so counts in its max RSS)
                psql_with(&sb, &db, catalog_fetch, true);
            },
        );
        println!(
            "{:<55} {:>9.1} MB",
            format!("  peak memory of pg-integrity, {n} tables"),
            rss
        );
        println!("{:<55} {:>9.1} x", "  audit / catalog scan", t / c);
        println!("{:<55} {:>9.1} x", "  audit / catalog fetch", t / f);
        per_n.push((n, t));
    }
    if per_n.len() >= 2 {
        let (n0, t0) = per_n[0];
        let (n1, t1) = per_n[per_n.len() - 1];
        println!(
            "{:<55} {:>9.2}",
            format!("time({n1}) / time({n0})"),
            t1 / t0
        );
    }
    if rows > 0 {
        let db = "bench_rows";
        psql(&sb, "postgres", &format!("create database {db}"));
        let schema = "create table tenants(id uuid primary key, name text not null);
            create table events(id uuid primary key, tenant_id uuid not null references tenants(id), name text not null);
            create table tickets(id bigint primary key, tenant_id uuid not null references tenants(id), event_id uuid,
                ticket_number text not null, status text, available_quantity int, created_at timestamptz not null default now());
            insert into tenants select ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, 'tenant ' || g from generate_series(1, 10) g;
            insert into events select ('00000000-0000-0000-0001-' || lpad(g::text, 12, '0'))::uuid,
                ('00000000-0000-0000-0000-' || lpad((1 + g % 10)::text, 12, '0'))::uuid, 'event ' || g from generate_series(1, 1000) g;";
        psql(&sb, db, schema);
        timed(&format!("generate {rows} ticket rows"), || {
            psql(&sb, db, &format!(
                "insert into tickets select g, ('00000000-0000-0000-0000-' || lpad((1 + (g % 1000) % 10)::text, 12, '0'))::uuid,
                 ('00000000-0000-0000-0001-' || lpad((g % 1000)::text, 12, '0'))::uuid,
                 'T-' || g, 'sold', 1, now() from generate_series(1, {rows}) g; analyze"
            ));
        });
        let url = url_of(db);
        // The first read of new rows sets their hint bits (writes): not a scan's cost.
        psql(&sb, db, "select count(*) from tickets");
        let scan = timed_median(
            "one sequential scan: select count(*) from tickets",
            5,
            || {
                psql(&sb, db, "select count(*) from tickets");
            },
        );
        // The floor of a deep audit: an exact duplicate test must hash or sort its
        // keys, so the least any audit can do is one scan that hashes each (tenant, key)
        // pair and compares the hashes (count distinct), with the work_mem the data
        // checks get (audit.work_mem_mb, default 64 MB). A GROUP BY of the pairs
        // themselves would spill and cost several times more.
        let floor = timed_median(
            "floor: one scan + one hash of (tenant_id, ticket_number)",
            5,
            || {
                psql(
                    &sb,
                    db,
                    "set work_mem = '64MB'; set jit = off; \
                     select count(*), count(distinct hashtextextended(ticket_number, \
                     uuid_hash_extended(tenant_id, 0))) from tickets",
                );
            },
        );
        let mut rss: f64 = 0.0;
        let data_checks = [
            "data.orphans",
            "data.cross_tenant_references",
            "data.required_nulls",
            "data.negative_inventory",
            "data.tenant_duplicates",
        ];
        let only = data_checks.join(",");
        let deep = timed_median("deep audit (data checks only)", 3, || {
            rss = rss.max(audit(&url, &["--deep", "--only", &only]))
        });
        println!(
            "{:<55} {:>9.1} MB",
            "  peak memory of pg-integrity, deep audit", rss
        );
        // The target: the deep audit of all five checks within 1.5x the floor.
        println!(
            "{:<55} {:>9.2} x  (target <= 1.5)",
            "  deep audit / floor (one scan + one hash of the keys)",
            deep / floor
        );
        println!("{:<55} {:>9.2} x", "  deep audit / one scan", deep / scan);
        timed("full deep audit (catalog + data)", || {
            audit(&url, &["--deep"]);
        });
    }
}

//! The migrations are safe on a live database (SPEC §7, issue 16), proven on the shipped
//! (compiled-in) set and on a set `pg-integrity fix` writes for the ticket-service fixture:
//! - one table locked per transaction: the lock checker (`migrate::locks`, what `plan`
//!   shows) says so of every transaction, and the locks PostgreSQL really holds at the end
//!   of each transaction (pg_locks) are among those the checker names;
//! - 8 concurrent appliers apply each migration exactly once;
//! - `migrate apply` killed with SIGKILL at random points converges on re-run to the
//!   catalog of an uninterrupted apply.

mod support;

use pg_integrity::migrate::files::{load, MigrationFile};
use pg_integrity::migrate::locks::{migration_rules, strength, table_key, MODES};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{assert_exit, cli, first_column, sync, TestDb};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_sql() -> String {
    let f = root().join("fixtures/ticket-service");
    std::fs::read_to_string(f.join("schema.sql")).unwrap()
        + &std::fs::read_to_string(f.join("data.sql")).unwrap()
}

fn config() -> PathBuf {
    root().join("fixtures/ticket-service/pg-integrity.toml")
}

/// `fix` on a fresh fixture database: the directory of migrations it wrote.
fn generated() -> tempfile::TempDir {
    let db = sync(TestDb::new(&fixture_sql()));
    let dir = tempfile::tempdir().unwrap();
    let out = cli()
        .args(["fix", "--database-url", &db.url, "--config"])
        .arg(config())
        .arg("--out")
        .arg(dir.path())
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() > 5,
        "fix wrote migrations for the fixture"
    );
    dir
}

/// `migrate apply` of the compiled-in migrations (`from` None) or of a directory.
fn apply_cmd(url: &str, from: Option<&Path>) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pg-integrity"));
    c.args([
        "migrate",
        "apply",
        "--no-audit",
        "--lock-wait",
        "300",
        "--database-url",
        url,
    ]);
    if let Some(dir) = from {
        c.arg("--from").arg(dir);
    }
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

async fn foreign_keys(c: &tokio_postgres::Client) -> BTreeMap<(String, String), String> {
    c.query(
        "select conrelid::regclass::text, conname::text, confrelid::regclass::text
         from pg_constraint where contype = 'f'",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            (table_key(&r.get::<_, String>(0)), r.get::<_, String>(1)),
            r.get(2),
        )
    })
    .collect()
}

/// Tables (and views) this session holds a lock on beyond ACCESS SHARE, by strongest mode.
async fn held(c: &tokio_postgres::Client) -> BTreeMap<String, &'static str> {
    let rows = c
        .query(
            "select c.oid::regclass::text, l.mode
             from pg_locks l join pg_class c on c.oid = l.relation
             where l.pid = pg_backend_pid() and l.locktype = 'relation'
               and c.relkind in ('r', 'p', 'v', 'm', 'f')
               and c.relnamespace not in ('pg_catalog'::regnamespace,
                                          'information_schema'::regnamespace)",
            &[],
        )
        .await
        .unwrap();
    let mut out: BTreeMap<String, &'static str> = BTreeMap::new();
    for r in rows {
        let mode: String = r.get(1);
        // AccessShareLock -> ACCESS SHARE
        let mode = MODES
            .into_iter()
            .find(|m| m.replace(' ', "").to_lowercase() + "lock" == mode.to_lowercase())
            .unwrap_or("ACCESS EXCLUSIVE");
        if strength(mode) == 0 {
            continue;
        }
        let e = out.entry(table_key(&r.get::<_, String>(0))).or_insert(mode);
        if strength(mode) > strength(e) {
            *e = mode;
        }
    }
    out
}

/// Apply `files` in order on `db`, transaction by transaction as `migrate apply` groups
/// them: the checker must call every transaction one-table, and the locks held at its end
/// must be among those it names (ROW SHARE and ROW EXCLUSIVE, which block no reader or
/// writer, aside). Returns how many transactions were checked against pg_locks.
async fn check_locks(db: &TestDb, files: &[MigrationFile]) -> usize {
    let c = db.client().await;
    let mut observed = 0;
    for m in files {
        let fks = foreign_keys(&c).await;
        let lookup = |t: &str, k: &str| {
            fks.get(&(table_key(t), k.trim_matches('"').to_string()))
                .cloned()
        };
        let rules = migration_rules(&m.sql, m.no_transaction, &lookup).unwrap();
        for (i, (tx, rule)) in rules.iter().enumerate() {
            assert_eq!(
                rule.one_table,
                Some(true),
                "{} transaction {}: {:?}\n{}",
                m.label(),
                i + 1,
                rule.reason,
                tx.statements.join(";\n")
            );
            let outside = tx.statements.iter().any(|s| {
                let s = s.to_lowercase();
                s.contains("concurrently")
            });
            if outside {
                for s in &tx.statements {
                    c.batch_execute(s).await.unwrap();
                }
                continue;
            }
            c.batch_execute("begin").await.unwrap();
            for s in &tx.statements {
                if let Err(e) = c.batch_execute(s).await {
                    panic!("{}: {e:?}\n{s}", m.label());
                }
            }
            let locks = held(&c).await;
            c.batch_execute("commit").await.unwrap();
            observed += 1;
            let named: BTreeMap<String, &str> = rule.tables.iter().cloned().collect();
            for (t, mode) in &locks {
                // ROW SHARE and ROW EXCLUSIVE conflict with no reader or writer: what a
                // validation takes on a key's parent, or a SQL function's body its tables.
                if strength(mode) <= strength("ROW EXCLUSIVE") {
                    continue;
                }
                let ok = named.get(t).is_some_and(|n| strength(n) >= strength(mode));
                assert!(
                    ok,
                    "{} transaction {}: PostgreSQL holds {mode} on {t}, the checker names {named:?}\n{}",
                    m.label(),
                    i + 1,
                    tx.statements.join(";\n")
                );
            }
        }
    }
    observed
}

#[test]
fn every_shipped_and_generated_migration_locks_one_table_per_transaction() {
    let shipped = load(None).unwrap();
    let db = sync(TestDb::new(&fixture_sql()));
    let n = sync(check_locks(&db, &shipped));
    assert!(n > 40, "{n} transactions observed");

    let dir = generated();
    let written = load(Some(dir.path())).unwrap();
    let db = sync(TestDb::new(&fixture_sql()));
    let n = sync(check_locks(&db, &written));
    assert!(n > 5, "{n} transactions observed");
}

#[test]
fn the_checker_calls_a_migration_locking_many_tables_what_it_is() {
    let none = |_: &str, _: &str| None;
    let many = "alter table a add constraint a_c check (x > 0) not valid;\n\
                alter table b add constraint b_c check (x > 0) not valid;";
    let r = migration_rules(many, false, &none).unwrap();
    assert_eq!(r[0].1.one_table, Some(false));
    assert!(r[0]
        .1
        .reason
        .as_deref()
        .unwrap()
        .contains("locks 2 tables: a, b"));
    // The same, one BEGIN … COMMIT block per table: two transactions, each one table.
    let split = format!(
        "-- pg-integrity: no-transaction\nbegin;\n{}\ncommit;\nbegin;\n{}\ncommit;\n",
        "alter table a add constraint a_c check (x > 0) not valid;",
        "alter table b add constraint b_c check (x > 0) not valid;"
    );
    let r = migration_rules(&split, true, &none).unwrap();
    assert_eq!(r.len(), 2);
    assert!(r
        .iter()
        .all(|(t, rule)| t.block && rule.one_table == Some(true)));
    // One ALTER adding keys to two parents: two parents in one transaction.
    let two = "alter table c add constraint c_a foreign key (a) references a (id) not valid, \
               add constraint c_b foreign key (b) references b (id) not valid";
    let r = migration_rules(two, false, &none).unwrap();
    assert_eq!(r[0].1.one_table, Some(false), "{:?}", r[0].1);
    // A new table may reference several parents (nobody waits for it).
    let new =
        "create table c (id int primary key, a int references a (id), b int references b (id))";
    assert_eq!(
        migration_rules(new, false, &none).unwrap()[0].1.one_table,
        Some(true)
    );
    // Dropping a foreign key locks its parent ACCESS EXCLUSIVE: alone, allowed; with more, not.
    let fk = |_: &str, k: &str| (k == "c_a_fkey").then(|| "a".to_string());
    let drop = "alter table c drop constraint c_a_fkey";
    assert_eq!(
        migration_rules(drop, false, &fk).unwrap()[0].1.one_table,
        Some(true)
    );
    let more = "alter table c drop constraint c_a_fkey; alter table c add constraint c_x check (x > 0) not valid";
    assert_eq!(
        migration_rules(more, false, &fk).unwrap()[0].1.one_table,
        Some(false)
    );
    // A DO block is read for what it runs; a computed EXECUTE is unknown.
    let role = "do $$ begin execute format('alter role app in database %I set lock_timeout = %L', current_database(), '3s'); end $$";
    assert_eq!(
        migration_rules(role, false, &none).unwrap()[0].1.one_table,
        Some(true)
    );
    let computed =
        "do $$ declare s text := 'alter table a add column z int'; begin execute s; end $$";
    assert_eq!(
        migration_rules(computed, false, &none).unwrap()[0]
            .1
            .one_table,
        None
    );
}

async fn history(db: &TestDb) -> Vec<(i32, String)> {
    db.client()
        .await
        .query(
            "select version, name from refinery_schema_history order by version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// What the migrations change, read from the catalog: constraints (and whether
/// validated), indexes (and whether valid), policies, row security, view options,
/// routine settings, role settings of this database, and which tables exist.
async fn catalog(db: &TestDb) -> Vec<String> {
    let sql = "
        select 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || convalidated || ' ' || pg_get_constraintdef(oid)
          from pg_constraint where connamespace = 'public'::regnamespace
        union all
        select 'index ' || indexrelid::regclass || ' ' || indisvalid || ' ' || pg_get_indexdef(indexrelid)
          from pg_index i join pg_class c on c.oid = i.indexrelid where c.relnamespace = 'public'::regnamespace
        union all
        select 'policy ' || tablename || ' ' || policyname || ' ' || cmd || ' ' || roles::text || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '')
          from pg_policies where schemaname = 'public'
        union all
        select 'relation ' || relname || ' ' || relkind::text || ' ' || relrowsecurity || ' ' || relforcerowsecurity || ' ' || coalesce(reloptions::text, '')
          from pg_class where relnamespace = 'public'::regnamespace and relkind in ('r', 'p', 'v', 'm')
            and relname <> 'refinery_schema_history'
        union all
        select 'routine ' || oid::regprocedure || ' ' || coalesce(proconfig::text, '') || ' ' || md5(prosrc)
          from pg_proc where pronamespace = 'public'::regnamespace
        union all
        select 'setting ' || setrole::regrole || ' ' || setconfig::text
          from pg_db_role_setting where setdatabase = (select oid from pg_database where datname = current_database())
        order by 1";
    first_column(&db.client().await, sql).await
}

/// 8 appliers at once on one database: every one succeeds (waiting for the advisory
/// lock), each migration is applied once, and the catalog is that of one applier.
fn concurrent_appliers(from: Option<&Path>, n_files: usize, reference: &[String]) {
    let db = sync(TestDb::new(&fixture_sql()));
    let children: Vec<_> = (0..8)
        .map(|_| apply_cmd(&db.url, from).spawn().unwrap())
        .collect();
    let mut applied_lines = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{err}");
        applied_lines += err.lines().filter(|l| l.starts_with("applied  ")).count();
    }
    assert_eq!(
        applied_lines, n_files,
        "each migration applied by exactly one applier"
    );
    let h = sync(history(&db));
    assert_eq!(h.len(), n_files);
    let versions: BTreeSet<i32> = h.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions.len(), n_files, "no version twice");
    assert_eq!(sync(catalog(&db)), reference);
}

/// Kill `migrate apply` with SIGKILL at `kills` random points (seeded, printed), then run it
/// to the end: the history is complete and the catalog is that of an uninterrupted apply.
fn killed_and_rerun(from: Option<&Path>, n_files: usize, reference: &[String], full: Duration) {
    let db = sync(TestDb::new(&fixture_sql()));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!(
        "kill -9 seed {seed}, uninterrupted apply {} ms",
        full.as_millis()
    );
    let mut x = seed | 1;
    let mut points = vec![];
    for _ in 0..6 {
        // xorshift: reproducible from the printed seed
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = Duration::from_millis(x % (full.as_millis() as u64 + 1));
        let mut child = apply_cmd(&db.url, from).spawn().unwrap();
        let started = Instant::now();
        while started.elapsed() < at {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        points.push(at.as_millis());
    }
    eprintln!("killed at {points:?} ms");
    let out = apply_cmd(&db.url, from).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "after kills at {points:?} ms (seed {seed}): {err}"
    );
    assert_eq!(sync(history(&db)).len(), n_files);
    let steps: bool = sync(async {
        db.client()
            .await
            .query_one(
                "select to_regclass('pg_integrity_migration_steps') is not null",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert!(
        !steps,
        "no step bookkeeping left once every migration is recorded"
    );
    assert_eq!(
        sync(catalog(&db)),
        reference,
        "after kills at {points:?} ms (seed {seed})"
    );
}

/// The catalog after one uninterrupted apply, and how long it took.
fn reference(from: Option<&Path>) -> (Vec<String>, Duration) {
    let db = sync(TestDb::new(&fixture_sql()));
    let started = Instant::now();
    let out = apply_cmd(&db.url, from).output().unwrap();
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (sync(catalog(&db)), took)
}

#[test]
fn shipped_migrations_hold_under_concurrent_appliers_and_kill_9() {
    let n = load(None).unwrap().len();
    let (reference, took) = reference(None);
    concurrent_appliers(None, n, &reference);
    killed_and_rerun(None, n, &reference, took);
}

#[test]
fn generated_migrations_hold_under_concurrent_appliers_and_kill_9() {
    let dir = generated();
    let n = load(Some(dir.path())).unwrap().len();
    let (reference, took) = reference(Some(dir.path()));
    concurrent_appliers(Some(dir.path()), n, &reference);
    killed_and_rerun(Some(dir.path()), n, &reference, took);
}

/// A `BEGIN; … COMMIT;` block runs exactly once: after the second block fails, `status`
/// says how far the migration got, and the re-run skips the first block (its insert is
/// not repeated) and applies the corrected second one.
#[test]
fn a_block_runs_once_and_status_says_how_far_a_migration_got() {
    let db = sync(TestDb::new(
        "create table a(id int); create table b(id int);",
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("V1__two_steps.sql");
    let text = |second: &str| {
        format!(
            "-- pg-integrity: no-transaction\nbegin;\ninsert into a values (1);\ncommit;\n\nbegin;\n{second};\ncommit;\n"
        )
    };
    std::fs::write(&file, text("insert into missing values (2)")).unwrap();
    let out = apply_cmd(&db.url, Some(dir.path())).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("step 2") && err.contains("the steps before it are done"),
        "{err}"
    );
    let status = cli()
        .args([
            "migrate",
            "status",
            "--format",
            "json",
            "--database-url",
            &db.url,
            "--from",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(said.contains("part-way: 1 of 2"), "{said}");
    std::fs::write(&file, text("insert into b values (2)")).unwrap();
    let out = apply_cmd(&db.url, Some(dir.path())).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts: (i64, i64, bool) = sync(async {
        let c = db.client().await;
        let r = c
            .query_one(
                "select (select count(*) from a), (select count(*) from b),
                        to_regclass('pg_integrity_migration_steps') is null",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    });
    assert_eq!(
        counts,
        (1, 1, true),
        "block 1 once, block 2 once, no steps table left"
    );
    assert_eq!(sync(history(&db)).len(), 1);
}

//! `pg-integrity fix` end to end, each schema in its own database on the test server:
//! audit → fix → `migrate apply --from` the written directory → audit. Every object a
//! written migration fixes is no longer a finding, every check whose findings were all
//! written passes, nothing that passed now fails, and a second `fix` writes nothing.
//! On the ticket-service fixture, and on corpus schemas (../shared/corpus; skipped with
//! a notice where it is absent).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{assert_exit, cli, first_column, json_report, sync, TestDb};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str], db: &TestDb, config: &Path) -> std::process::Output {
    let mut c = cli();
    c.args(args)
        .args(["--database-url", &db.url, "--config"])
        .arg(config)
        .timeout(Duration::from_secs(600));
    c.output().unwrap()
}

/// Check id → (status, finding objects).
fn audit(db: &TestDb, config: &Path) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let out = run(
        &["audit", "--format", "json", "--fail-on", "never"],
        db,
        config,
    );
    // 1: a check errored (reported as `error` in the document, compared below)
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_report(&out);
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let findings = c["findings"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .map(|x| x["object"].as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default();
            (
                c["id"].as_str().unwrap().to_string(),
                (c["status"].as_str().unwrap().to_string(), findings),
            )
        })
        .collect()
}

/// `fix` into `dir`: its stdout, and the files it wrote (sorted).
fn fix(db: &TestDb, config: &Path, dir: &Path) -> (String, Vec<PathBuf>) {
    fix_with(db, config, dir, &[])
}

/// `fix` with more arguments (`--only ID`).
fn fix_with(db: &TestDb, config: &Path, dir: &Path, extra: &[&str]) -> (String, Vec<PathBuf>) {
    let before: BTreeSet<PathBuf> = files(dir).into_iter().collect();
    let mut args = vec!["fix", "--out", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(&args, db, config);
    assert_exit(&out, 0);
    let written = files(dir)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), written)
}

/// The files in `dir`, in migration order (by the version number, then name).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    let version = |p: &PathBuf| -> u64 {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        name.trim_start_matches('V')
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0)
    };
    v.sort_by(|a, b| version(a).cmp(&version(b)).then_with(|| a.cmp(b)));
    v
}

/// (check, object) pairs the written migrations say they fix.
fn fixed_objects(written: &[PathBuf]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for p in written {
        let text = std::fs::read_to_string(p).unwrap();
        let check = text
            .lines()
            .find_map(|l| l.strip_prefix("-- Written by `pg-integrity fix` for "))
            .and_then(|l| l.split(':').next())
            .unwrap_or_default()
            .to_string();
        if let Some(objs) = text.lines().find_map(|l| l.strip_prefix("-- Fixes: ")) {
            for o in objs.split(", ") {
                out.insert((check.clone(), o.to_string()));
            }
        }
    }
    out
}

/// The round trip on a loaded database; returns how many migrations the fix wrote.
fn round_trip(name: &str, db: &TestDb, config: &Path) -> usize {
    round_trip_with(name, db, config, &[])
}

/// The round trip with more `fix` arguments (`--only ID`), the second `fix` too.
fn round_trip_with(name: &str, db: &TestDb, config: &Path, extra: &[&str]) -> usize {
    let before = audit(db, config);
    let dir = tempfile::tempdir().unwrap();
    let (said, written) = fix_with(db, config, dir.path(), extra);
    eprintln!(
        "[{name}] fix wrote {} file(s); {}",
        written.len(),
        said.lines()
            .find(|l| l.starts_with("left to a person"))
            .unwrap_or("nothing left to a person")
    );
    let fixed = fixed_objects(&written);
    if !written.is_empty() {
        let mut c = cli();
        c.args([
            "migrate",
            "apply",
            "--no-audit",
            "--database-url",
            &db.url,
            "--from",
        ])
        .arg(dir.path())
        .timeout(Duration::from_secs(600));
        let out = c.output().unwrap();
        assert_exit(&out, 0);
    }
    let after = audit(db, config);
    let mut problems = vec![];
    for (check, object) in &fixed {
        if let Some((status, findings)) = after.get(check) {
            if findings.contains(object) {
                problems.push(format!("{check}: {object} is still a finding ({status})"));
            }
        }
    }
    let manual: BTreeSet<&str> = said
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for (check, (status, _)) in &after {
        let (was, _) = &before[check];
        if was == "pass" && status != "pass" {
            problems.push(format!("{check} passed before and is {status} now"));
        }
        let addressed = fixed.iter().any(|(c, _)| c == check);
        if addressed && !manual.contains(check.as_str()) && status != "pass" {
            problems.push(format!(
                "{check}: every finding was fixed, yet it is {status}"
            ));
        }
    }
    assert!(problems.is_empty(), "[{name}]\n{}", problems.join("\n"));
    let (said, again) = fix_with(db, config, dir.path(), extra);
    assert!(
        again.is_empty(),
        "[{name}] a second fix wrote {again:?}:\n{said}"
    );
    written.len()
}

#[test]
fn fixture_round_trip() {
    let fixture = root().join("fixtures/ticket-service");
    let setup = std::fs::read_to_string(fixture.join("schema.sql")).unwrap()
        + &std::fs::read_to_string(fixture.join("data.sql")).unwrap();
    let db = sync(TestDb::new(&setup));
    let n = round_trip("ticket-service", &db, &fixture.join("pg-integrity.toml"));
    assert!(n > 0, "the fixture has findings with mechanical fixes");
}

#[test]
fn a_decision_is_a_todo_that_preflight_refuses() {
    let db = sync(TestDb::new(
        "create table parents(id int primary key);
         create table children(id int primary key, parent_id int, note text default 'x');
         insert into parents values (1);
         insert into children values (1, 1, 'a'), (2, 7, null);",
    ));
    let config = tempfile::NamedTempFile::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (said, written) = fix(&db, config.path(), dir.path());
    let todo: Vec<&PathBuf> = written
        .iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("-- TODO(pg-integrity):")
        })
        .collect();
    assert!(!todo.is_empty(), "{said}");
    let text = std::fs::read_to_string(todo[0]).unwrap();
    assert!(text.contains("not exists (select 1 from"), "{text}");
    let mut c = cli();
    c.args([
        "migrate",
        "apply",
        "--no-audit",
        "--database-url",
        &db.url,
        "--from",
    ])
    .arg(dir.path());
    let out = c.output().unwrap();
    assert_exit(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("decision"), "{err}");
    // all preflights ran before the first migration: nothing was applied, no history left
    let history: bool = sync(async {
        db.client()
            .await
            .query_one(
                "select to_regclass('refinery_schema_history') is not null",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert!(!history, "a refused apply leaves no history table");
}

/// Corpus entries: (folder, files in load order, configuration).
const CORPUS: &[(&str, &[&str], &str)] = &[
    (
        "lago",
        &["structure.sql"],
        "[tenancy]\ncolumn = \"organization_id\"\nsetting = \"app.current_organization\"\n",
    ),
    (
        "hi-events",
        &["extensions.sql", "schema.sql"],
        "[tenancy]\ncolumn = \"account_id\"\nsetting = \"app.current_account\"\n",
    ),
    ("pagila", &["pagila-schema.sql"], ""),
];

#[test]
fn corpus_round_trips() {
    let corpus = root().join("../shared/corpus");
    if !corpus.is_dir() {
        eprintln!(
            "corpus not found at {}: skipping the corpus round trips",
            corpus.display()
        );
        return;
    }
    for (entry, files, config_text) in CORPUS {
        let folder = corpus.join(entry);
        if !folder.is_dir() {
            eprintln!("corpus entry {entry} absent: skipped");
            continue;
        }
        let db = sync(TestDb::new(""));
        let mut load = std::process::Command::new("psql");
        load.args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-d", &db.url])
            .current_dir(&folder);
        for f in *files {
            load.args(["-f", f]);
        }
        let out = load.output().expect("psql");
        assert!(out.status.success(), "{entry}: psql failed");
        let config = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(config.path(), config_text).unwrap();
        let n = round_trip(entry, &db, config.path());
        eprintln!("[{entry}] round trip passed with {n} migration(s)");
    }
}

/// The catalog's definition of a constraint, or None.
fn constraint_def(db: &TestDb, table: &str, name: &str) -> Option<String> {
    sync(async {
        db.client()
            .await
            .query_opt(
                "select pg_get_constraintdef(oid) from pg_constraint where conrelid = $1::text::regclass and conname = $2",
                &[&table, &name],
            )
            .await
            .unwrap()
            .map(|r| r.get(0))
    })
}

#[test]
fn tenant_scoped_foreign_keys_are_replaced_keeping_on_delete() {
    let db = sync(TestDb::new(
        "create table tenants(id int primary key);
         create table events(id int primary key, tenant_id int not null references tenants(id), name text);
         create index events_tenant_id_idx on events (tenant_id);
         create table tickets(id int primary key, tenant_id int not null references tenants(id),
           event_id int references events(id) on delete cascade,
           parent_id int references tickets(id) on delete set null deferrable);
         create index tickets_tenant_id_idx on tickets (tenant_id);
         create index tickets_event_id_idx on tickets (event_id);
         create index tickets_parent_id_idx on tickets (parent_id);
         insert into tenants values (1), (2);
         insert into events values (10, 1, 'a'), (20, 2, 'b');
         insert into tickets values (100, 1, 10, null), (101, 1, 10, 100), (200, 2, 20, null);",
    ));
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[tenancy]\ncolumn = \"tenant_id\"\ntenant_table = \"tenants\"\n",
    )
    .unwrap();
    let before = audit(&db, config.path());
    assert_eq!(
        before["tenancy.tenant_scoped_foreign_keys"].1,
        BTreeSet::from(["public.tickets".to_string()]),
    );
    round_trip("tenant-scoped keys", &db, config.path());
    // the composite keys, ON UPDATE CASCADE, the old ON DELETE and deferrability kept
    assert_eq!(
        constraint_def(&db, "tickets", "tickets_tenant_id_event_id_fkey").as_deref(),
        Some("FOREIGN KEY (tenant_id, event_id) REFERENCES events(tenant_id, id) ON UPDATE CASCADE ON DELETE CASCADE")
    );
    assert_eq!(
        constraint_def(&db, "tickets", "tickets_tenant_id_parent_id_fkey").as_deref(),
        Some("FOREIGN KEY (tenant_id, parent_id) REFERENCES tickets(tenant_id, id) ON UPDATE CASCADE ON DELETE SET NULL (parent_id) DEFERRABLE")
    );
    assert_eq!(
        constraint_def(&db, "tickets", "tickets_event_id_fkey"),
        None
    );
    assert_eq!(
        constraint_def(&db, "tickets", "tickets_parent_id_fkey"),
        None
    );
    assert_eq!(
        constraint_def(&db, "events", "events_tenant_id_id_key").as_deref(),
        Some("UNIQUE (tenant_id, id)")
    );
    sync(async {
        let client = db.client().await;
        // plain indexes the new UNIQUE (tenant_id, id) or the child's (event_id, tenant_id)
        // start with are dropped; the others stay
        let idx: Vec<String> = first_column(&client, "select indexrelid::regclass::text from pg_index where indrelid in ('events'::regclass, 'tickets'::regclass) order by 1").await;
        assert_eq!(
            idx,
            [
                "events_pkey",
                "events_tenant_id_id_key",
                "tickets_event_id_tenant_id_idx",
                "tickets_parent_id_tenant_id_idx",
                "tickets_pkey",
                "tickets_tenant_id_id_key"
            ]
        );
        // a move to another tenant carries the children; a delete still cascades and sets NULL
        client
            .batch_execute("update events set tenant_id = 2 where id = 10; delete from tickets where id = 100;")
            .await
            .unwrap();
        let rows: Vec<(i32, i32, Option<i32>)> = client
            .query(
                "select id, tenant_id, parent_id from tickets order by id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(rows, [(101, 2, None), (200, 2, None)]);
        // a cross-tenant reference is refused
        let err = client
            .batch_execute("insert into tickets values (300, 1, 20, null)")
            .await
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("tickets_tenant_id_event_id_fkey"),
            "{err:?}"
        );
    });
}

#[test]
fn a_cross_tenant_reference_is_a_todo_before_the_tenant_scoped_key() {
    let db = sync(TestDb::new(
        "create table tenants(id int primary key);
         create table events(id int primary key, tenant_id int not null references tenants(id), unique (tenant_id, id));
         create table tickets(id int primary key, tenant_id int not null references tenants(id),
           event_id int references events(id));
         create index on tickets (tenant_id, event_id);
         insert into tenants values (1), (2);
         insert into events values (10, 1);
         insert into tickets values (100, 1, 10), (101, 2, 10);",
    ));
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[tenancy]\ntenant_table = \"tenants\"\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (said, written) = fix(&db, config.path(), dir.path());
    let texts: Vec<String> = written
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .filter(|t| t.contains("for tenancy.tenant_scoped_foreign_keys"))
        .collect();
    // the unique and the index exist: add, validate, drop, each its own migration
    assert_eq!(texts.len(), 3, "{said}");
    assert!(
        texts[0].contains(
            "-- TODO(pg-integrity): rows of public.tickets reference a row of another tenant"
        ),
        "{}",
        texts[0]
    );
    assert!(
        texts[0].contains("(1 found when this file was written)"),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("not exists (select 1 from public.events p where p.tenant_id = c.tenant_id and p.id = c.event_id)"), "{}", texts[0]);
    assert!(
        texts[0].contains("on update cascade not valid;"),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].starts_with("-- pg-integrity: no-transaction")
            && texts[1].contains("validate constraint")
    );
    assert!(
        texts[2].contains("alter table public.tickets drop constraint tickets_event_id_fkey;"),
        "{}",
        texts[2]
    );
}

#[test]
fn membership_model_policies_read_the_memberships_once_and_fail_closed() {
    let db = sync(TestDb::new(
        "create schema auth;
         create function auth.uid() returns uuid language sql stable
           as $$ select nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
         create table users(id uuid primary key);
         create table orgs(id int primary key);
         create table memberships(org_id int not null references orgs(id), user_id uuid not null references users(id),
           primary key (org_id, user_id));
         alter table memberships enable row level security;
         create policy own on memberships for select using (user_id = (select auth.uid()));
         create table projects(id int primary key, org_id int not null references orgs(id));
         alter table projects enable row level security;
         alter table projects force row level security;
         create policy members on projects using (org_id in (select org_id from memberships where user_id = (select auth.uid())));
         create table documents(id int primary key, org_id int not null references orgs(id), body text);
         create index on documents (org_id);
         create role membership_fix_app;
         grant usage on schema auth to membership_fix_app;
         grant select, insert on all tables in schema public to membership_fix_app;
         insert into users values ('00000000-0000-0000-0000-000000000001'), ('00000000-0000-0000-0000-000000000002');
         insert into orgs values (1), (2);
         insert into memberships values (1, '00000000-0000-0000-0000-000000000001'), (2, '00000000-0000-0000-0000-000000000002');
         insert into documents values (10, 1, 'one'), (20, 2, 'two');",
    ));
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[tenancy]\ncolumn = \"org_id\"\ntenant_table = \"orgs\"\nglobal_tables = [\"users\"]\n",
    )
    .unwrap();
    let before = audit(&db, config.path());
    assert_eq!(
        before["rls.enabled"].1,
        BTreeSet::from(["public.documents".to_string()])
    );
    let dir = tempfile::tempdir().unwrap();
    let (said, written) = fix(&db, config.path(), dir.path());
    let text = written
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .find(|t| t.contains("for rls.enabled"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        text.contains("using (org_id in (select m.org_id from public.memberships m where m.user_id = (select auth.uid())))"),
        "{text}"
    );
    std::fs::remove_dir_all(dir.path()).unwrap();
    round_trip("membership", &db, config.path());
    let after = audit(&db, config.path());
    for id in ["rls.enabled", "rls.tenant_policies"] {
        assert_eq!(after[id].0, "pass", "{id}: {:?}", after[id]);
    }
    sync(async {
        let client = db.client().await;
        let seen = |sub: &'static str| {
            let client = &client;
            async move {
                client
                    .batch_execute(&format!(
                        "begin; set local role membership_fix_app; set local request.jwt.claim.sub = '{sub}'"
                    ))
                    .await
                    .unwrap();
                let ids: Vec<i32> =
                    first_column(client, "select id from documents order by id").await;
                client.batch_execute("rollback").await.unwrap();
                ids
            }
        };
        assert_eq!(seen("00000000-0000-0000-0000-000000000001").await, [10]);
        assert_eq!(seen("00000000-0000-0000-0000-000000000002").await, [20]);
        // no identity: no rows (fail closed)
        assert_eq!(seen("").await, Vec::<i32>::new());
        client
            .batch_execute("drop owned by membership_fix_app; drop role membership_fix_app")
            .await
            .unwrap();
    });
}

#[test]
fn check_constraints_are_added_not_valid_then_validated_and_negative_rows_are_a_todo() {
    let setup = "create table order_items(id int primary key, quantity int, price numeric(10,2), balance int);
         insert into order_items values (1, 2, 9.50, -3), (2, 1, 0, 4);";
    let db = sync(TestDb::new(setup));
    let config = tempfile::NamedTempFile::new().unwrap();
    let before = audit(&db, config.path());
    assert_eq!(
        before["schema.check_constraints"].1,
        BTreeSet::from([
            "public.order_items.price".to_string(),
            "public.order_items.quantity".to_string()
        ]),
        "balance is signed by its name: unknown, not fixed"
    );
    round_trip("check constraints", &db, config.path());
    assert_eq!(
        constraint_def(&db, "order_items", "order_items_quantity_non_negative").as_deref(),
        Some("CHECK ((quantity >= 0))")
    );
    assert_eq!(
        constraint_def(&db, "order_items", "order_items_balance_non_negative"),
        None
    );
    // a negative row: the first migration carries the query and a TODO
    let db = sync(TestDb::new(&format!(
        "{setup} insert into order_items values (3, -1, 5, 0);"
    )));
    let dir = tempfile::tempdir().unwrap();
    let (said, written) = fix(&db, config.path(), dir.path());
    let texts: Vec<String> = written
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .filter(|t| t.contains("for schema.check_constraints"))
        .collect();
    let todo: Vec<&String> = texts
        .iter()
        .filter(|t| t.contains("-- TODO(pg-integrity):"))
        .collect();
    assert_eq!(todo.len(), 1, "{said}");
    assert!(
        todo[0].contains("rows of public.order_items hold a negative quantity"),
        "{}",
        todo[0]
    );
    assert!(
        todo[0].contains("select count(*) from public.order_items where quantity < 0"),
        "{}",
        todo[0]
    );
    assert!(
        todo[0].contains("(1 found when this file was written)"),
        "{}",
        todo[0]
    );
    assert!(
        todo[0].contains("check (quantity >= 0) not valid;"),
        "{}",
        todo[0]
    );
}

#[test]
fn an_idempotency_table_is_written_only_when_asked_with_the_schemas_key_types() {
    let db = sync(TestDb::new(
        "create role idem_fix_app;
         create table tenants(id uuid primary key);
         create table users(id uuid primary key, tenant_id uuid not null references tenants(id), email text,
           unique (tenant_id, id));
         create table orders(id bigint primary key, tenant_id uuid not null references tenants(id), user_id uuid not null,
           total numeric(12,2) not null check (total >= 0),
           foreign key (tenant_id, user_id) references users(tenant_id, id) on update cascade);
         create index on orders (user_id, tenant_id);
         alter table users enable row level security; alter table users force row level security;
         alter table orders enable row level security; alter table orders force row level security;
         create policy tenant_isolation on users to idem_fix_app
           using (tenant_id = (select nullif(current_setting('app.current_tenant', true), '')::uuid))
           with check (tenant_id = (select nullif(current_setting('app.current_tenant', true), '')::uuid));
         create policy tenant_isolation on orders to idem_fix_app
           using (tenant_id = (select nullif(current_setting('app.current_tenant', true), '')::uuid))
           with check (tenant_id = (select nullif(current_setting('app.current_tenant', true), '')::uuid));
         grant select, insert, update, delete on users, orders to idem_fix_app;
         insert into tenants values ('00000000-0000-0000-0000-00000000000a'), ('00000000-0000-0000-0000-00000000000b');
         insert into users values ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', 'a@x'),
           ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-00000000000b', 'b@x');",
    ));
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[tenancy]\ncolumn = \"tenant_id\"\ntenant_table = \"tenants\"\nsetting = \"app.current_tenant\"\n[roles]\napp = [\"idem_fix_app\"]\n",
    )
    .unwrap();
    // not asked: left to a person, saying how to ask
    let dir = tempfile::tempdir().unwrap();
    let (said, written) = fix(&db, config.path(), dir.path());
    assert!(
        written.iter().all(|p| !std::fs::read_to_string(p)
            .unwrap()
            .contains("for races.idempotency_keys")),
        "{said}"
    );
    assert!(
        said.contains("races.idempotency_keys  idempotency_keys: its fix is a design decision, written only when asked: `pg-integrity fix --only races.idempotency_keys`"),
        "{said}"
    );
    // asked: the table, then the round trip (idempotency checks pass, nothing that passed fails)
    let n = round_trip_with(
        "idempotency keys",
        &db,
        config.path(),
        &["--only", "races.idempotency_keys"],
    );
    assert!(n > 0);
    let after = audit(&db, config.path());
    for id in [
        "races.idempotency_keys",
        "races.idempotency_expiry",
        "rls.enabled",
        "rls.forced",
        "tenancy.tenant_scoped_foreign_keys",
    ] {
        assert_eq!(after[id].0, "pass", "{id}: {:?}", after[id]);
    }
    // the schema's key types, the tenant in the unique and in the key to the users
    assert_eq!(
        constraint_def(&db, "idempotency_keys", "idempotency_keys_scope_key").as_deref(),
        Some("UNIQUE (tenant_id, user_id, idempotency_key)")
    );
    assert_eq!(
        constraint_def(&db, "idempotency_keys", "idempotency_keys_user_id_fkey").as_deref(),
        Some("FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON UPDATE CASCADE ON DELETE CASCADE")
    );
    sync(async {
        let client = db.client().await;
        let types: Vec<String> = first_column(&client, "select format_type(atttypid, atttypmod) from pg_attribute
                 where attrelid = 'idempotency_keys'::regclass and attname in ('tenant_id', 'user_id', 'response_body', 'expires_at')
                 order by attname").await;
        assert_eq!(types, ["timestamp with time zone", "jsonb", "uuid", "uuid"]);
        // the application claims a key once per tenant; another tenant does not see it
        let claim = "begin; set local role idem_fix_app; set local app.current_tenant = '00000000-0000-0000-0000-00000000000a';
             insert into idempotency_keys (tenant_id, user_id, idempotency_key, request_method, request_path, request_hash)
             values ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 'k1', 'POST', '/orders', '\\x00')
             on conflict (tenant_id, user_id, idempotency_key) do nothing; commit;";
        client.batch_execute(claim).await.unwrap();
        client.batch_execute(claim).await.unwrap();
        let seen = |tenant: &'static str| {
            let client = &client;
            async move {
                client
                    .batch_execute(&format!(
                        "begin; set local role idem_fix_app; set local app.current_tenant = '{tenant}'"
                    ))
                    .await
                    .unwrap();
                let n: i64 = client
                    .query_one("select count(*) from idempotency_keys", &[])
                    .await
                    .unwrap()
                    .get(0);
                client.batch_execute("rollback").await.unwrap();
                n
            }
        };
        assert_eq!(seen("00000000-0000-0000-0000-00000000000a").await, 1);
        assert_eq!(seen("00000000-0000-0000-0000-00000000000b").await, 0);
        client
            .batch_execute("drop owned by idem_fix_app; drop role idem_fix_app")
            .await
            .unwrap();
    });
}

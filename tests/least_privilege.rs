//! The audit as the roles production runs it as (SPEC §2 "never silently wrong"): a
//! role that row level security hides rows from must get `unknown` for those tables'
//! data, never a pass, and no role may get a pass where a superuser gets a finding.

mod support;

use std::time::Duration;
use support::{check_in, cli, json_report, TestDb};

/// Two tenants; `stock` under forced tenant RLS holds a negative inventory row;
/// `tickets` (no RLS) holds an orphan; `ledger` has RLS, not forced, and is owned by
/// the `owner` role, so its owner reads every row.
const SCHEMA: &str = "
create table tenants(id int primary key);
create table stock(id int primary key, tenant_id int not null references tenants(id), available_quantity int);
alter table stock enable row level security;
alter table stock force row level security;
create policy stock_tenant on stock using (tenant_id = nullif(current_setting('app.current_tenant', true), '')::int);
create table events(id int primary key, tenant_id int not null references tenants(id));
create table tickets(id int primary key, tenant_id int not null references tenants(id), event_id int);
insert into tenants values (1), (2);
insert into stock values (1, 1, 5), (2, 2, -3);
insert into events values (1, 1);
insert into tickets values (1, 1, 1), (2, 1, 99);
";

const CHECKS: &str = "data.negative_inventory,data.orphans";

/// `db.url` as `role` (the test server trusts local connections).
fn url_as(db: &TestDb, role: &str) -> String {
    db.url
        .replace("user=postgres", &format!("user={role}"))
        .replace("://postgres@", &format!("://{role}@"))
}

fn deep_audit(url: &str) -> serde_json::Value {
    let out = cli()
        .args(["audit", "--format", "json", "--deep", "--fail-on", "never"])
        .args(["--only", CHECKS, "--database-url", url])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    json_report(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_role_passes_what_a_superuser_finds_and_hidden_rows_are_unknown() {
    let db = TestDb::new(SCHEMA).await;
    let tag = db.name.clone();
    let role = |r: &str| format!("{tag}_{r}");
    let (reader, select_only, bypass) = (role("reader"), role("select"), role("bypass"));
    let admin = db.client().await;
    admin
        .batch_execute(&format!(
            "create role {reader} login in role pg_read_all_data, pg_monitor;
             create role {select_only} login;
             grant connect on database \"{tag}\" to {select_only};
             grant usage on schema public to {select_only};
             grant select on all tables in schema public to {select_only};
             create role {bypass} login bypassrls in role pg_read_all_data;"
        ))
        .await
        .unwrap();

    let superuser = deep_audit(&db.url);
    for id in CHECKS.split(',') {
        assert_eq!(
            check_in(&superuser, id)["status"],
            "fail",
            "{id}: {superuser}"
        );
    }

    for r in [&reader, &select_only, &bypass] {
        let doc = deep_audit(&url_as(&db, r));
        for id in CHECKS.split(',') {
            let c = check_in(&doc, id);
            assert_ne!(
                c["status"], "pass",
                "{r} {id}: a pass where the superuser fails: {c}"
            );
            assert_ne!(c["status"], "error", "{r} {id}: {c}");
        }
        // the orphan sits in a table without RLS: every role finds it
        assert_eq!(
            check_in(&doc, "data.orphans")["status"],
            "fail",
            "{r}: {doc}"
        );
        let inventory = check_in(&doc, "data.negative_inventory");
        if r == &bypass {
            assert_eq!(inventory["status"], "fail", "{inventory}");
        } else {
            // every inventory column is hidden by RLS: nothing to judge, skipped, with
            // the table and the grant that fixes it
            assert_eq!(inventory["status"], "skipped", "{r}: {inventory}");
            let reason = inventory["reason"].as_str().unwrap();
            assert!(
                reason.contains("row level security on public.stock")
                    && reason.contains("BYPASSRLS"),
                "{reason}"
            );
        }
    }

    // The owner of a table with RLS, not forced, reads all of it: a verdict.
    admin
        .batch_execute(&format!(
            "alter table stock no force row level security; alter table stock owner to {reader};"
        ))
        .await
        .unwrap();
    let doc = deep_audit(&url_as(&db, &reader));
    assert_eq!(
        check_in(&doc, "data.negative_inventory")["status"],
        "fail",
        "{doc}"
    );

    admin
        .batch_execute(&format!(
            "drop owned by {reader}, {select_only}, {bypass} cascade;
             drop role {reader}; drop role {select_only}; drop role {bypass};"
        ))
        .await
        .unwrap();
}

/// A role without SELECT on a table gets unknown for its data objects, with the
/// grant to give, not the raw permission error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_select_privilege_is_named_with_the_grant() {
    let db = TestDb::new(SCHEMA).await;
    let tag = db.name.clone();
    let partial = format!("{tag}_partial");
    let admin = db.client().await;
    admin
        .batch_execute(&format!(
            "create role {partial} login;
             grant connect on database \"{tag}\" to {partial};
             grant usage on schema public to {partial};
             grant select on tenants, events, tickets to {partial};"
        ))
        .await
        .unwrap();
    let doc = deep_audit(&url_as(&db, &partial));
    let inventory = check_in(&doc, "data.negative_inventory");
    assert_eq!(inventory["status"], "skipped", "{inventory}");
    let reason = inventory["reason"].as_str().unwrap();
    assert!(
        reason.contains("no SELECT on public.stock")
            && reason.contains("GRANT SELECT ON public.stock"),
        "{reason}"
    );
    assert_eq!(check_in(&doc, "data.orphans")["status"], "fail", "{doc}");
    admin
        .batch_execute(&format!(
            "drop owned by {partial} cascade; drop role {partial};"
        ))
        .await
        .unwrap();
}

/// pg_stat_statements hides other roles' statement texts from a role without
/// pg_read_all_stats: the checks reading tracked statements say so (unknown, naming
/// the grant) where a superuser sees the application's lost update.
#[test]
fn hidden_tracked_statements_are_unknown_never_a_pass() {
    let (sb, rt) = support::preloaded_server();
    rt.block_on(async {
        let admin = pg_integrity::db::connection::connect(&sb.options("postgres"))
            .await
            .unwrap();
        admin
            .batch_execute("create database lp_stats")
            .await
            .unwrap();
        let c = pg_integrity::db::connection::connect(&sb.options("lp_stats"))
            .await
            .unwrap();
        c.batch_execute(
            "create extension pg_stat_statements;
             create table products(id int primary key, stock int not null);
             insert into products values (1, 10);
             create role lp_select login;
             grant connect on database lp_stats to lp_select;
             grant usage on schema public to lp_select;
             grant select on all tables in schema public to lp_select;
             create role lp_stats login in role pg_read_all_stats;
             grant connect on database lp_stats to lp_stats;
             grant usage on schema public to lp_stats;
             grant select on all tables in schema public to lp_stats;",
        )
        .await
        .unwrap();
        // the application's lost update: an absolute assignment, no row lock
        for _ in 0..3 {
            c.batch_execute("update products set stock = 9 where id = 1")
                .await
                .unwrap();
        }
    });
    let audit = |user: &str| -> serde_json::Value {
        let url = format!(
            "host={} port=5432 user={user} dbname=lp_stats",
            sb.socket_dir().display()
        );
        let out = cli()
            .args(["audit", "--format", "json", "--fail-on", "never"])
            .args(["--only", "locking.atomic_inventory_updates"])
            .args(["--database-url", &url])
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        json_report(&out)
    };
    let id = "locking.atomic_inventory_updates";
    let superuser = audit("postgres");
    assert_eq!(check_in(&superuser, id)["status"], "fail", "{superuser}");
    // With pg_read_all_stats the role sees what the superuser sees.
    let stats = audit("lp_stats");
    assert_eq!(check_in(&stats, id)["status"], "fail", "{stats}");
    // Without it: no pass, and the reason names the grant.
    let doc = audit("lp_select");
    let c = check_in(&doc, id);
    assert_eq!(c["status"], "skipped", "{c}");
    let reason = c["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("hidden from lp_select")
            && reason.contains("GRANT pg_read_all_stats TO lp_select"),
        "{reason}"
    );
}

//! Isolation probes under the membership model (SPEC §5, `[tenancy] model =
//! "membership"`), end to end through `audit --probe write` on a Supabase-style schema
//! written here: `auth.uid()` reads the JWT's `sub` claim, one table has a member
//! policy, one a policy that does not tie the row's account to the member's, one a
//! fallback that opens up without an identity. The probes act as a user who is a
//! member of one account, are always rolled back, and never pass where they cannot
//! form that identity.

mod support;

use std::time::Duration;
use support::{check_in, cli, json_report, TestDb};

fn schema(role: &str, members: bool) -> String {
    let members = if members {
        "insert into account_members values
           ('a0000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001'),
           ('b0000000-0000-4000-8000-000000000002', '20000000-0000-4000-8000-000000000002'),
           ('a0000000-0000-4000-8000-000000000001', '30000000-0000-4000-8000-000000000003'),
           ('b0000000-0000-4000-8000-000000000002', '30000000-0000-4000-8000-000000000003');"
    } else {
        ""
    };
    format!(
        "create role {role} nologin;
         create schema auth;
         create table auth.users(id uuid primary key);
         create function auth.uid() returns uuid language sql stable as $$
           select coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                           (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid $$;
         grant usage on schema auth to {role};
         create table accounts(id uuid primary key);
         create table account_members(account_id uuid not null references accounts(id),
                                      user_id uuid not null references auth.users(id),
                                      primary key (account_id, user_id));
         create table projects(id serial primary key, account_id uuid not null references accounts(id), name text);
         create table notes(id int primary key, account_id uuid not null references accounts(id), body text);
         create table invoices(id int primary key, account_id uuid not null references accounts(id));
         create table labels(id int primary key, account_id uuid not null references accounts(id));
         insert into accounts values ('a0000000-0000-4000-8000-000000000001'), ('b0000000-0000-4000-8000-000000000002');
         insert into auth.users values ('10000000-0000-4000-8000-000000000001'),
           ('20000000-0000-4000-8000-000000000002'), ('30000000-0000-4000-8000-000000000003');
         {members}
         insert into projects(account_id, name) values ('a0000000-0000-4000-8000-000000000001', 'p1'),
                                                       ('b0000000-0000-4000-8000-000000000002', 'p2');
         insert into notes values (1, 'a0000000-0000-4000-8000-000000000001', 'n1'),
                                  (2, 'b0000000-0000-4000-8000-000000000002', 'n2');
         insert into invoices values (1, 'a0000000-0000-4000-8000-000000000001'),
                                     (2, 'b0000000-0000-4000-8000-000000000002');
         insert into labels values (1, 'a0000000-0000-4000-8000-000000000001'),
                                   (2, 'b0000000-0000-4000-8000-000000000002');
         alter table account_members enable row level security;
         create policy own_memberships on account_members for select to {role}
           using (user_id = (select auth.uid()));
         alter table projects enable row level security;
         create policy members_only on projects for all to {role}
           using (account_id in (select m.account_id from account_members m where m.user_id = (select auth.uid())));
         alter table notes enable row level security;
         create policy notes_members on notes for all to {role}
           using (exists (select 1 from account_members m where m.user_id = (select auth.uid())));
         alter table invoices enable row level security;
         create policy invoices_members on invoices for all to {role}
           using ((select auth.uid()) is null
                  or account_id in (select m.account_id from account_members m where m.user_id = (select auth.uid())));
         grant select, update on accounts, account_members, projects, notes, invoices, labels to {role};"
    )
}

const PROBES: &str =
    "isolation.cross_tenant_read,isolation.cross_tenant_write,isolation.unset_context";

fn probe_audit(url: &str, config: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pg-integrity.toml");
    std::fs::write(&path, config).unwrap();
    let out = cli()
        .args([
            "audit",
            "--format",
            "json",
            "--fail-on",
            "never",
            "--probe",
            "write",
        ])
        .args(["--only", PROBES, "--database-url", url, "--config"])
        .arg(&path)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    json_report(&out)
}

fn config(role: &str, extra: &str) -> String {
    format!(
        "[tenancy]\ncolumn = \"account_id\"\ntenant_table = \"accounts\"\nmodel = \"membership\"\n{extra}\
         [roles]\napp = [\"{role}\"]\n"
    )
}

fn failing(check: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = check["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| f["object"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The rows as they are (each table's rows as text with their xmin, in order).
async fn rows(db: &TestDb) -> Vec<String> {
    let c = db.client().await;
    let mut out = vec![];
    for t in ["account_members", "projects", "notes", "invoices", "labels"] {
        let r = c
            .query_one(
                &format!(
                    "select coalesce(string_agg(t::text || '@' || t.xmin::text, ';' order by t::text), '') from {t} t"
                ),
                &[],
            )
            .await
            .unwrap();
        out.push(format!("{t}: {}", r.get::<_, String>(0)));
    }
    let seq: i64 = c
        .query_one("select last_value from projects_id_seq", &[])
        .await
        .unwrap()
        .get(0);
    out.push(format!("projects_id_seq: {seq}"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_probes_act_as_a_member_and_leave_nothing_behind() {
    let role = format!("pgi_mp_auth_{}", std::process::id());
    let db = TestDb::new(&schema(&role, true)).await;
    let before = rows(&db).await;
    let url = db.url.clone();
    let cfg = config(&role, "");
    let doc = tokio::task::spawn_blocking(move || probe_audit(&url, &cfg))
        .await
        .unwrap();

    let read = check_in(&doc, "isolation.cross_tenant_read");
    assert_eq!(read["status"], "partial", "{read}");
    assert_eq!(
        failing(&read),
        vec![
            format!("{role} on public.labels"),
            format!("{role} on public.notes")
        ],
        "{read}"
    );
    assert!(
        read.to_string().contains(&format!(
            "{role} acting as 10000000-0000-4000-8000-000000000001 (auth.uid()), a member of a0000000-0000-4000-8000-000000000001, sees 1 row of 1 other tenant in public.notes"
        )),
        "{read}"
    );
    let write = check_in(&doc, "isolation.cross_tenant_write");
    assert_eq!(write["status"], "partial", "{write}");
    assert_eq!(
        failing(&write),
        vec![
            format!("{role} on public.labels"),
            format!("{role} on public.notes")
        ],
        "{write}"
    );
    let unset = check_in(&doc, "isolation.unset_context");
    assert_eq!(
        failing(&unset),
        vec![
            format!("{role} on public.invoices"),
            format!("{role} on public.labels")
        ],
        "{unset}"
    );

    // The report says the probes acted as a member.
    let activity = doc["target"]["activity"].to_string();
    assert!(activity.contains("membership model"), "{activity}");

    // Nothing survives: every row, its version (xmin: a committed update, even one
    // that wrote the same values, makes a new one) and the sequence as they were (the
    // write probe rewrote a label and a note of account B and tried to move a
    // project, all rolled back).
    assert_eq!(rows(&db).await, before);

    drop(db);
    drop_role(&role).await;
}

/// Where the probe cannot act as a member it says why, and never passes: no member
/// rows; an identity the policies do not read (the member then sees no row of its
/// own accounts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_the_probe_cannot_form_is_unknown_never_a_pass() {
    let role = format!("pgi_mp_none_{}", std::process::id());
    for (members, extra, reason) in [
        (
            false,
            "",
            "no user in public.account_members is a member of a tenant with rows in",
        ),
        (
            true,
            "user_identity = \"current_setting('app.user_id')::uuid\"\n",
            "the identity did not take effect",
        ),
    ] {
        let db = TestDb::new(&schema(&role, members)).await;
        let url = db.url.clone();
        let cfg = config(&role, extra);
        let doc = tokio::task::spawn_blocking(move || probe_audit(&url, &cfg))
            .await
            .unwrap();
        for id in [
            "isolation.cross_tenant_read",
            "isolation.cross_tenant_write",
        ] {
            let check = check_in(&doc, id);
            let text = check.to_string();
            assert_ne!(check["status"], "pass", "{text}");
            // the member policy's table is unknown with the reason (the invoices'
            // fallback shows every account without a working identity: that stays a
            // finding)
            let projects = format!("{role} on public.projects");
            let unknown = check["unknown"].as_array().cloned().unwrap_or_default();
            // every object unknown: the check is skipped, its reason the first one's
            let why = match unknown.iter().find(|u| u["object"] == projects.as_str()) {
                Some(u) => u["reason"].as_str().unwrap().to_string(),
                None if check["status"] == "skipped" => check["reason"].as_str().unwrap().into(),
                None => panic!("{id}: {projects} not unknown: {text}"),
            };
            assert!(why.contains(reason), "{id}: {text}");
            assert!(!failing(&check).contains(&projects), "{text}");
        }
        drop(db);
        drop_role(&role).await;
    }
}

/// Drop a cluster-wide role a test made (its database dropped first).
async fn drop_role(role: &str) {
    let admin = TestDb::new("").await;
    let _ = admin
        .client()
        .await
        .batch_execute(&format!("drop role if exists {role}"))
        .await;
}

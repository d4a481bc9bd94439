//! A newcomer's first run on a real schema, as the README says it: `pg-integrity
//! init` in an empty directory writes `pg-integrity.toml`, then `pg-integrity audit`
//! in the same directory finds it and recognises the tenancy: the tenancy and rls
//! checks examine the tables instead of saying there is nothing to examine.
//!
//! On corpus schemas (../shared/corpus, loaded as their SOURCE.md says; skipped with
//! a notice when absent): lago (organization_id, 125 of 138 tables) and Hi.Events
//! (account_id, on 5 tables, the rest owned through events). Before `init`, the
//! checks about tenancy are skipped, saying why and naming the likely tenant.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{check_in, cli, TestDb};

fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "NOTICE: corpus not found at {}: init and audit on corpus schemas not run",
            dir.display()
        );
        None
    }
}

/// A fresh database loaded with a corpus entry's files (psql, ON_ERROR_STOP=0 as its
/// SOURCE.md says); `None` when the entry is absent.
fn load(entry: &str, files: &[&str]) -> Option<TestDb> {
    let folder = corpus()?.join(entry);
    if !folder.is_dir() {
        eprintln!("NOTICE: corpus entry {entry} absent: skipped");
        return None;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(TestDb::new(""));
    let mut psql = std::process::Command::new("psql");
    psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-d", &db.url])
        .current_dir(&folder);
    for f in files {
        psql.args(["-f", f]);
    }
    let out = psql.output().expect("psql runs");
    assert!(out.status.success(), "{entry}: psql failed: {out:?}");
    Some(db)
}

/// `audit` in an empty directory (no configuration): its JSON report.
fn audit_without_config(db: &TestDb) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = cli()
        .args([
            "audit",
            "--format",
            "json",
            "--fail-on",
            "never",
            "--database-url",
            &db.url,
        ])
        .current_dir(dir.path())
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Without a configuration, on a schema whose tenant column is not `tenant_id`: the
/// checks about tenancy are skipped, each saying that no table has the tenant column
/// and naming the likely tenant table and column; the other checks run as ever.
fn skipped_naming(doc: &serde_json::Value, likely: &str) {
    for id in [
        "tenancy.tenant_column",
        "tenancy.tenant_not_null",
        "rls.enabled",
        "rls.tenant_policies",
    ] {
        let c = check_in(doc, id);
        assert_eq!(c["status"], "skipped", "{c}");
        let reason = c["reason"].as_str().unwrap();
        assert!(
            reason
                .starts_with("no table in scope has the tenant column tenant_id (tenancy.column)")
                && reason.contains(&format!("the likely tenant is {likely}"))
                && reason.contains("pg-integrity init"),
            "{id}: {reason}"
        );
    }
    let keys = check_in(doc, "schema.primary_keys");
    assert!(keys["objects_checked"].as_u64().unwrap() > 0, "{keys}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_config_the_tenancy_checks_say_why_and_name_the_likely_tenant() {
    let db = TestDb::new(
        "create table orgs(id int primary key);
         create table projects(id int primary key, org_id int not null references orgs);
         create table invoices(id int primary key, org_id int not null references orgs);
         create table tasks(id int primary key, project_id int not null references projects);
         create table countries(code text primary key);",
    )
    .await;
    let doc = tokio::task::block_in_place(|| audit_without_config(&db));
    skipped_naming(&doc, "public.orgs by org_id (2 tables have it");
    // where the column exists, nothing changes: not applicable stays as it was
    let tenanted = TestDb::new("create table tenants(id int primary key); create table t(id int primary key, tenant_id int not null references tenants);").await;
    let doc = tokio::task::block_in_place(|| audit_without_config(&tenanted));
    assert!(
        !doc.to_string()
            .contains("no table in scope has the tenant column"),
        "{doc}"
    );
}

/// `init` then `audit` in an empty directory, as a newcomer runs them: the written
/// configuration and the audit's JSON report.
fn init_then_audit(db: &TestDb) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = cli()
        .args(["init", "--database-url", &db.url])
        .current_dir(dir.path())
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "init: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrote pg-integrity.toml"), "{err}");
    let config = std::fs::read_to_string(dir.path().join("pg-integrity.toml")).unwrap();
    let out = cli()
        .args(["audit", "--format", "json", "--database-url", &db.url])
        .current_dir(dir.path())
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the gate fails on these schemas: {out:?}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (config, doc)
}

/// The tenancy and rls checks examined tables (none says "nothing to examine" for want
/// of a tenant column), and `rls.enabled` judged at least `tenant_tables`.
fn tenancy_recognised(doc: &serde_json::Value, config_file: &str, tenant_tables: u64) {
    assert!(
        doc["target"]["config"]
            .as_str()
            .is_some_and(|c| c.ends_with(config_file)),
        "the audit names the file init wrote: {}",
        doc["target"]
    );
    assert!(
        doc["target"]["tenancy"]["model"].is_string(),
        "{}",
        doc["target"]
    );
    for c in doc["checks"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        if id.starts_with("tenancy.") {
            assert!(
                c["objects_checked"].as_u64().unwrap() > 0,
                "{id} examined nothing: {c}"
            );
        }
    }
    let enabled = check_in(doc, "rls.enabled");
    assert!(
        enabled["objects_checked"].as_u64().unwrap() >= tenant_tables,
        "{enabled}"
    );
}

#[test]
fn init_then_audit_recognises_lago() {
    let Some(db) = load("lago", &["structure.sql"]) else {
        return;
    };
    skipped_naming(
        &audit_without_config(&db),
        "public.organizations by organization_id (125 tables have it",
    );
    let (config, doc) = init_then_audit(&db);
    for want in [
        "column = \"organization_id\"",
        "tenant_table = \"public.organizations\"",
    ] {
        assert!(config.contains(want), "{want} missing from:\n{config}");
    }
    tenancy_recognised(&doc, "pg-integrity.toml", 125);
    let column = check_in(&doc, "tenancy.tenant_column");
    assert!(
        column["objects_checked"].as_u64().unwrap() >= 125,
        "{column}"
    );
}

#[test]
fn init_then_audit_recognises_hi_events() {
    let Some(db) = load("hi-events", &["extensions.sql", "schema.sql"]) else {
        return;
    };
    skipped_naming(&audit_without_config(&db), "public.accounts by account_id");
    let (config, doc) = init_then_audit(&db);
    for want in [
        "column = \"account_id\"",
        "tenant_table = \"public.accounts\"",
    ] {
        assert!(config.contains(want), "{want} missing from:\n{config}");
    }
    tenancy_recognised(&doc, "pg-integrity.toml", 5);
    // the tables owned through events are judged too, not only the 5 with account_id
    let column = check_in(&doc, "tenancy.tenant_column");
    assert!(
        column["objects_checked"].as_u64().unwrap() >= 20,
        "{column}"
    );
}

/// The product documents itself: no text a user reads (README, docs, the checks' words,
/// every `--help`) points to a specification users do not have. docs/precision.md and
/// docs/test-strength.md are records of reviews and measurements, which quote the
/// specification the reviewers worked from.
#[test]
fn no_user_visible_text_mentions_the_specification() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts: Vec<(String, String)> = vec![];
    let mut files = vec![
        root.join("README.md"),
        root.join("checks/README.md"),
        root.join("fixtures/ticket-service/README.md"),
    ];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".md") && !["precision.md", "test-strength.md"].contains(&name.as_str()) {
            files.push(p);
        }
    }
    for f in files {
        texts.push((
            f.display().to_string(),
            std::fs::read_to_string(&f).unwrap(),
        ));
    }
    let run = |args: &[&str]| {
        let out = cli().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    texts.push((
        "checks list --format markdown".into(),
        run(&["checks", "list", "--format", "markdown"]),
    ));
    for cmd in [
        &[][..],
        &["audit"],
        &["init"],
        &["fix"],
        &["demo"],
        &["checks"],
        &["checks", "list"],
        &["checks", "show"],
        &["checks", "validate"],
        &["checks", "test"],
        &["migrate"],
        &["migrate", "status"],
        &["migrate", "plan"],
        &["migrate", "apply"],
        &["migrate", "verify"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        texts.push((args.join(" "), run(&args)));
    }
    let spec = regex::Regex::new(r"\bSPEC\b|SPEC\.md").unwrap();
    let found: Vec<String> = texts
        .iter()
        .flat_map(|(name, text)| {
            text.lines()
                .filter(|l| spec.is_match(l))
                .map(move |l| format!("{name}: {}", &l[..l.len().min(160)]))
        })
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// `checks test` never reads DATABASE_URL, and its help says so without naming it as
/// what the flag takes.
#[test]
fn checks_test_help_does_not_claim_to_read_database_url() {
    let out = cli().args(["checks", "test", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("DATABASE_URL is never read here"), "{help}");
    assert_eq!(flat.matches("DATABASE_URL").count(), 1, "{help}");
    assert!(flat.contains("[env: PG_INTEGRITY_TEST_URL]"), "{help}");
}

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
use support::{assert_exit, cli, json_report, sync, TestDb};

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
    let before: BTreeSet<PathBuf> = files(dir).into_iter().collect();
    let out = run(&["fix", "--out", dir.to_str().unwrap()], db, config);
    assert_exit(&out, 0);
    let written = files(dir)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), written)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
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
    let before = audit(db, config);
    let dir = tempfile::tempdir().unwrap();
    let (said, written) = fix(db, config, dir.path());
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
    let (said, again) = fix(db, config, dir.path());
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

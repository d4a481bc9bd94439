//! Every report format on the ticket-service fixture audit (golden files with
//! insta), the machine formats checked against their standards (SARIF against the
//! official 2.1.0 schema, JUnit through an XML parser), the generated example in
//! docs/, and the CI gate through the CLI: threshold, baseline, waivers, expiry,
//! and GitHub annotations.
//!
//! Refresh the golden files after a catalog change with
//! `INSTA_UPDATE=always cargo test --test reports` (or `cargo insta review`);
//! that also rewrites docs/example-audit.md (as does `UPDATE_DOCS=1`).

mod support;

use pg_integrity::audit::execute::{self, AuditOptions};
use pg_integrity::audit::gate::{assess, Assessment, FailOn, GateOptions};
use pg_integrity::checks::catalog::Catalog;
use pg_integrity::cli::args::TargetArgs;
use pg_integrity::cli::target::open_target;
use pg_integrity::config::LoadedConfig;
use pg_integrity::model::{Kind, Severity, Status};
use pg_integrity::report::{self, Format};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use support::cli;

const FIXTURE: &str = "fixtures/ticket-service";
/// The reference audit's date: the fixture data is a snapshot as of that day.
const AUDIT_DATE: &str = "2025-12-23T09:00:00Z";
const SERVER_VERSION: &str = "[server version]";
const TOOL_VERSION: &str = "[version]";

/// The fixture audit, run once per test binary, with what varies from run to run
/// (clock, durations, server version) fixed. Runtime checks read the live server
/// (sessions, connection counts), so they are left out of the golden files.
struct Fixture {
    assessment: Assessment,
    /// The real server version, replaced in rendered text (skip reasons quote it).
    server_version: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE_AUDIT: OnceLock<Fixture> = OnceLock::new();
    FIXTURE_AUDIT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut catalog = Catalog::load(&[] as &[PathBuf]).expect("the built-in catalog loads");
            let config = LoadedConfig::load(Some(&Path::new(FIXTURE).join("pg-integrity.toml")))
                .expect("the fixture config loads");
            // as the CLI does: the checks' words in the configured names
            report::names::fill_catalog(&mut catalog, &config.config);
            let opts = AuditOptions {
                skip: catalog
                    .ordered()
                    .into_iter()
                    .filter(|c| c.kind == Kind::Runtime)
                    .map(|c| c.id.clone())
                    .collect(),
                ..AuditOptions::default()
            };
            let selected = execute::select(&catalog, &config, &opts).unwrap();
            let target = open_target(&TargetArgs {
                schema: vec![
                    Path::new(FIXTURE).join("schema.sql"),
                    Path::new(FIXTURE).join("data.sql"),
                ],
                ..TargetArgs::default()
            })
            .await
            .expect("a throwaway server with the fixture");
            let mut run = execute::audit(&target.options, &catalog, &config, &opts, selected)
                .await
                .expect("the audit runs");
            drop(target);
            let server_version = std::mem::replace(&mut run.server_version, SERVER_VERSION.into());
            run.started_at = AUDIT_DATE.parse().unwrap();
            run.duration_ms = 0;
            for r in &mut run.results {
                r.duration_ms = 0;
            }
            let gate = GateOptions {
                fail_on: FailOn::At(Severity::High),
                min_score: None,
                today: run.started_at.date_naive(),
            };
            Fixture {
                assessment: assess(run, &config, None, &gate),
                server_version,
            }
        })
    })
}

/// Render without colour at a fixed width, with versions replaced by placeholders.
fn rendered(a: &Assessment, format: Format) -> String {
    colored::control::set_override(false);
    let text = report::render(format, a, Some(120)).unwrap();
    let text = text.replace(&fixture().server_version, SERVER_VERSION);
    text.replace(
        &format!("\"{}\"", env!("CARGO_PKG_VERSION")),
        &format!("\"{TOOL_VERSION}\""),
    )
}

fn golden(format: Format) -> String {
    rendered(&fixture().assessment, format)
}

#[test]
fn table_report() {
    insta::assert_snapshot!("table", golden(Format::Table));
}

#[test]
fn markdown_report() {
    insta::assert_snapshot!("markdown", golden(Format::Markdown));
}

#[test]
fn json_report() {
    insta::assert_snapshot!("json", golden(Format::Json));
}

#[test]
fn sarif_report() {
    insta::assert_snapshot!("sarif", golden(Format::Sarif));
}

#[test]
fn junit_report() {
    insta::assert_snapshot!("junit", golden(Format::Junit));
}

#[test]
fn github_report() {
    insta::assert_snapshot!("github", golden(Format::Github));
}

/// The fixture audit with every disposition the reports must show: a waived
/// finding, a baseline finding and an errored check.
fn with_every_disposition() -> Assessment {
    let mut a = fixture().assessment.clone();
    let mut findings = a.checks.iter_mut().flat_map(|c| c.findings.iter_mut());
    let waived = findings.next().expect("the fixture has findings");
    waived.waived = true;
    waived.waiver_reason = Some("a \"polymorphic\" reference | <by design> & agreed".into());
    findings.next().expect("two findings").baseline = true;
    let errored = a
        .checks
        .iter_mut()
        .find(|c| c.result.status == Status::Pass)
        .expect("a passing check");
    errored.result.status = Status::Error;
    errored.result.reason = Some("canceling statement due to lock timeout (55P03)".into());
    errored.result.objects.clear();
    a
}

#[test]
fn sarif_validates_against_the_official_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/sarif-schema-2.1.0.json").unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the SARIF schema compiles");
    for a in [&fixture().assessment, &with_every_disposition()] {
        let doc: serde_json::Value = serde_json::from_str(&rendered(a, Format::Sarif)).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "SARIF schema violations:\n{}",
            errors.join("\n")
        );
        let run = &doc["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        for r in run["results"].as_array().unwrap() {
            let i = r["ruleIndex"].as_u64().unwrap() as usize;
            assert_eq!(rules[i]["id"], r["ruleId"], "ruleIndex points at its rule");
            let fp = r["partialFingerprints"]["pgIntegrity/v1"].as_str().unwrap();
            assert_eq!(fp.len(), 64);
        }
    }
    let doc: serde_json::Value =
        serde_json::from_str(&rendered(&with_every_disposition(), Format::Sarif)).unwrap();
    let results = doc["runs"][0]["results"].as_array().unwrap();
    let suppressed: Vec<&str> = results
        .iter()
        .filter_map(|r| r["suppressions"][0]["justification"].as_str())
        .collect();
    assert_eq!(suppressed.len(), 2, "the waived and the baseline finding");
    assert!(suppressed[0].contains("polymorphic"));
    let notes = doc["runs"][0]["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .unwrap();
    assert_eq!(notes.len(), 1, "the errored check");
}

#[test]
fn junit_parses_and_its_counts_add_up() {
    use quick_xml::events::Event;
    for a in [&fixture().assessment, &with_every_disposition()] {
        let xml = rendered(a, Format::Junit);
        let mut reader = quick_xml::Reader::from_str(&xml);
        let (mut cases, mut failures, mut errors, mut skipped) = (0, 0, 0, 0);
        let mut declared = None;
        let (mut total_time, mut suites_time) = (None, 0.0f64);
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Eof => break,
                Event::Start(e) | Event::Empty(e) => {
                    let attr = |name: &str| {
                        e.try_get_attribute(name).unwrap().map(|a| {
                            a.normalized_value(quick_xml::XmlVersion::default())
                                .unwrap()
                                .into_owned()
                        })
                    };
                    match e.name().as_ref() {
                        b"testsuite" => {
                            suites_time += attr("time").unwrap().parse::<f64>().unwrap();
                        }
                        b"testsuites" => {
                            total_time = attr("time").map(|t| t.parse::<f64>().unwrap());
                            declared = Some((
                                attr("tests").unwrap(),
                                attr("failures").unwrap(),
                                attr("errors").unwrap(),
                                attr("skipped").unwrap(),
                            ))
                        }
                        b"testcase" => {
                            cases += 1;
                            assert!(attr("classname").unwrap().starts_with("pg-integrity."));
                        }
                        b"failure" => {
                            failures += 1;
                            assert!(attr("type").is_some_and(|t| Severity::parse(&t).is_some()));
                        }
                        b"error" => errors += 1,
                        b"skipped" => skipped += 1,
                        _ => {}
                    }
                }
                Event::Text(t) => {
                    t.decode().expect("text decodes");
                }
                _ => {}
            }
        }
        assert_eq!(cases, a.checks.len());
        let counted = (
            cases.to_string(),
            failures.to_string(),
            errors.to_string(),
            skipped.to_string(),
        );
        assert_eq!(declared, Some(counted));
        // the total time is the sum of the suites' (each rounded to a millisecond)
        let total = total_time.expect("testsuites time");
        assert!(
            (total - suites_time).abs() < 0.001 * 20.0,
            "{total} vs {suites_time}"
        );
    }
}

#[test]
fn every_format_marks_waived_and_baseline_findings() {
    let a = with_every_disposition();
    let md = rendered(&a, Format::Markdown);
    assert!(
        md.contains("**[waived]**") && md.contains("**[baseline]**"),
        "{md}"
    );
    assert!(md.contains("| ERROR |"));
    let json: serde_json::Value = serde_json::from_str(&rendered(&a, Format::Json)).unwrap();
    let findings: Vec<&serde_json::Value> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["findings"].as_array().unwrap())
        .collect();
    assert!(findings.iter().any(|f| f["waived"] == true));
    assert!(findings.iter().any(|f| f["baseline"] == true));
    // Neither is annotated; the errored check is.
    let gh = rendered(&a, Format::Github);
    // Rolled up: a summary, then one annotation per check with counted findings (or
    // errored), naming how many.
    let checks_with: usize = a
        .checks
        .iter()
        .filter(|c| c.findings.iter().any(|f| f.counts()) || c.result.status == Status::Error)
        .count();
    assert_eq!(gh.lines().count(), checks_with + 1, "{gh}");
    assert!(
        gh.lines().next().unwrap().contains("pg-integrity%3A gate"),
        "{gh}"
    );
    assert!(gh.contains("(errored)::"));
    for line in gh.lines() {
        assert!(
            line.starts_with("::error title=")
                || line.starts_with("::warning title=")
                || line.starts_with("::notice title="),
            "{line}"
        );
    }
}

#[test]
fn docs_example_audit_is_the_rendered_fixture_audit() {
    let path = Path::new("docs/example-audit.md");
    let text = golden(Format::Markdown);
    let update = std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1")
        || std::env::var("INSTA_UPDATE").is_ok_and(|v| v == "always");
    if update {
        std::fs::create_dir_all("docs").unwrap();
        std::fs::write(path, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == text,
        "docs/example-audit.md is out of date: run `UPDATE_DOCS=1 cargo test --test reports`"
    );
}

// The gate through the command line.

const NO_KEY: &str = "create table events(id int primary key);\n\
                      create table audit_log(at timestamptz, message text);\n";

struct Gate {
    code: Option<i32>,
    json: serde_json::Value,
    stdout: String,
    stderr: String,
}

/// Audit a schema with a table lacking a primary key, in `dir`; a trailing
/// `--config` in `extra` gets `dir/pg-integrity.toml`.
fn audit_no_key(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Gate {
    let schema = dir.join("schema.sql");
    std::fs::write(&schema, NO_KEY).unwrap();
    let mut cmd = cli();
    cmd.arg("audit");
    if !extra.contains(&"--only") {
        cmd.args(["--only", "schema.primary_keys"]);
    }
    cmd.arg("--schema")
        .arg(&schema)
        .args(extra)
        .current_dir(dir)
        .timeout(Duration::from_secs(120));
    if extra.last() == Some(&"--config") {
        cmd.arg(dir.join("pg-integrity.toml"));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Gate {
        code: out.status.code(),
        json: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout,
    }
}

fn finding(g: &Gate) -> &serde_json::Value {
    &g.json["checks"][0]["findings"][0]
}

#[test]
fn a_finding_fails_the_gate_until_it_is_in_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let first = audit_no_key(
        dir.path(),
        &["--format", "json", "--write-baseline", "baseline.json"],
        &[],
    );
    assert_eq!(first.code, Some(1), "stderr: {}", first.stderr);
    assert_eq!(finding(&first)["object"], "public.audit_log");
    assert_eq!(finding(&first)["baseline"], false);
    assert_eq!(first.json["summary"]["gate"]["passed"], false);

    let again = audit_no_key(
        dir.path(),
        &["--format", "json", "--baseline", "baseline.json"],
        &[],
    );
    assert_eq!(again.code, Some(0), "stderr: {}", again.stderr);
    assert_eq!(finding(&again)["baseline"], true);
    assert_eq!(finding(&again)["waived"], false);
    assert_eq!(again.json["summary"]["gate"]["passed"], true);
}

fn waiver(dir: &Path, expires: &str) {
    std::fs::write(
        dir.join("pg-integrity.toml"),
        format!(
            "[[waiver]]\ncheck = \"schema.primary_keys\"\nobject = \"public.audit_*\"\n\
             reason = \"append-only log, keyed by time\"\nexpires = \"{expires}\"\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_waiver_passes_the_gate_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    waiver(dir.path(), "2999-12-31");
    let waived = audit_no_key(
        dir.path(),
        &[
            "--format",
            "json",
            "--output",
            "sarif:out.sarif",
            "--config",
        ],
        &[],
    );
    assert_eq!(waived.code, Some(0), "stderr: {}", waived.stderr);
    assert_eq!(finding(&waived)["waived"], true);
    assert_eq!(
        finding(&waived)["waiver_reason"],
        "append-only log, keyed by time"
    );
    let sarif: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out.sarif")).unwrap())
            .unwrap();
    assert_eq!(
        sarif["runs"][0]["results"][0]["suppressions"][0]["kind"],
        "external"
    );

    // Expired: void, reported, and the finding fails the gate again. (A manual
    // check rides along, to show how Markdown lists it.)
    waiver(dir.path(), "2020-01-31");
    let checks = dir.path().join("checks");
    std::fs::create_dir(&checks).unwrap();
    std::fs::write(
        checks.join("schema.review_retention.toml"),
        "id = \"schema.review_retention\"\nsection = \"schema\"\n\
         title = \"Retention | archiving\"\nseverity = \"low\"\nkind = \"manual\"\n\
         description = \"d\"\nguidance = \"Check that old rows are archived.\"\n",
    )
    .unwrap();
    let expired = audit_no_key(
        dir.path(),
        &[
            "--format",
            "markdown",
            "--checks",
            "checks",
            "--only",
            "schema.primary_keys,schema.review_retention",
            "--config",
        ],
        &[],
    );
    assert_eq!(expired.code, Some(1), "stderr: {}", expired.stderr);
    let md = &expired.stdout;
    assert!(md.contains("expired on 2020-01-31"), "{md}");
    assert!(md.contains("**Gate:** FAIL"), "{md}");
    assert!(md.contains("## Migration/Schema (0/1)"), "{md}");
    assert!(
        md.contains("- [ ] Retention | archiving (`schema.review_retention`) — Check that old rows are archived."),
        "{md}"
    );
    assert!(
        md.contains("| PARTIAL | 1/2 ok; `public.audit_log`"),
        "{md}"
    );
}

/// The timeout checks without `roles.app` judge the database and name it
/// (`database <name>`); baselines and waivers key that finding as `database`, so a
/// baseline taken on a live (staging) database holds for a `--schema` run, whose
/// throwaway database has another name; so does one an earlier version wrote with
/// the name, and a waiver with `object = "database"`. SARIF fingerprints agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_baseline_of_the_timeout_checks_holds_for_a_schema_run() {
    const TIMEOUTS: [&str; 3] = [
        "pool.statement_timeout",
        "locking.lock_timeout",
        "transactions.idle_in_transaction_timeout",
    ];
    let only = TIMEOUTS.join(",");
    let staging = support::TestDb::new(NO_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::block_in_place(|| {
        cli()
            .args(["audit", "--only", &only, "--format", "sarif"])
            .args(["--write-baseline", "baseline.json", "--fail-on", "never"])
            .args(["--database-url", &staging.url])
            .current_dir(dir.path())
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    });
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let staging_sarif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let written = std::fs::read_to_string(dir.path().join("baseline.json")).unwrap();
    let entries: serde_json::Value = serde_json::from_str(&written).unwrap();
    let entries = entries["findings"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        3,
        "a throwaway server sets no timeout: {written}"
    );
    for e in entries {
        assert_eq!(e["object"], "database", "{written}");
    }
    assert!(!written.contains(&staging.name), "{written}");

    let objects = |g: &Gate| -> Vec<(String, serde_json::Value, serde_json::Value)> {
        g.json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["findings"].as_array().unwrap().clone())
            .map(|f| {
                (
                    f["object"].as_str().unwrap().to_string(),
                    f["baseline"].clone(),
                    f["waived"].clone(),
                )
            })
            .collect()
    };
    let schema_run = |extra: &[&str]| {
        let mut args = vec!["--only", only.as_str(), "--format", "json"];
        args.extend(extra);
        tokio::task::block_in_place(|| audit_no_key(dir.path(), &args, &[]))
    };
    // without the baseline the --schema run fails the gate on all three
    let bare = schema_run(&[]);
    assert_eq!(bare.code, Some(1), "stderr: {}", bare.stderr);
    let names = objects(&bare);
    assert_eq!(names.len(), 3, "{}", bare.stdout);
    for (object, baseline, _) in &names {
        assert!(
            object.starts_with("database ") && *object != format!("database {}", staging.name),
            "the throwaway database has its own name: {object}"
        );
        assert_eq!(*baseline, false);
    }
    // with the staging baseline it passes, every finding marked baseline
    let with = schema_run(&["--baseline", "baseline.json"]);
    assert_eq!(with.code, Some(0), "stderr: {}", with.stderr);
    assert!(
        objects(&with).iter().all(|(_, b, _)| *b == true),
        "{}",
        with.stdout
    );
    // a baseline an earlier version wrote, with the database's name
    let old = serde_json::json!({
        "format_version": 1,
        "findings": TIMEOUTS.iter().map(|c| serde_json::json!({"check": c, "object": "database staging_tickets"})).collect::<Vec<_>>(),
    });
    std::fs::write(dir.path().join("old.json"), old.to_string()).unwrap();
    let with_old = schema_run(&["--baseline", "old.json"]);
    assert_eq!(with_old.code, Some(0), "stderr: {}", with_old.stderr);
    assert!(objects(&with_old).iter().all(|(_, b, _)| *b == true));
    // a waiver naming the database without its name
    let waivers: String = TIMEOUTS
        .iter()
        .map(|c| format!("[[waiver]]\ncheck = \"{c}\"\nobject = \"database\"\nreason = \"set by the pool\"\n"))
        .collect();
    std::fs::write(dir.path().join("pg-integrity.toml"), waivers).unwrap();
    let waived = schema_run(&["--config"]);
    assert_eq!(waived.code, Some(0), "stderr: {}", waived.stderr);
    assert!(
        objects(&waived).iter().all(|(_, _, w)| *w == true),
        "{}",
        waived.stdout
    );
    std::fs::remove_file(dir.path().join("pg-integrity.toml")).unwrap();
    // the SARIF fingerprints of staging and of the --schema run are the same
    let sarif_run = schema_run(&["--output", "sarif:run.sarif"]);
    assert_eq!(sarif_run.code, Some(1), "stderr: {}", sarif_run.stderr);
    let run_sarif: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run.sarif")).unwrap())
            .unwrap();
    let prints = |s: &serde_json::Value| -> Vec<String> {
        let mut v: Vec<String> = s["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["partialFingerprints"].to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(prints(&staging_sarif).len(), 3);
    assert_eq!(prints(&staging_sarif), prints(&run_sarif));
}

#[test]
fn github_actions_get_annotations_on_stderr_unless_asked_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("GITHUB_ACTIONS", "true")];
    let json = audit_no_key(dir.path(), &["--format", "json"], &env);
    assert_eq!(json.code, Some(1));
    assert!(
        json.json.is_object(),
        "stdout stays valid JSON: {}",
        json.stdout
    );
    assert!(
        json.stderr
            .contains("::error title=schema.primary_keys Primary keys"),
        "{}",
        json.stderr
    );
    assert!(
        json.stderr.contains("::- public.audit_log"),
        "{}",
        json.stderr
    );

    let quiet = audit_no_key(dir.path(), &["--format", "json", "--no-annotations"], &env);
    assert!(!quiet.stderr.contains("::error"), "{}", quiet.stderr);

    let gh = audit_no_key(dir.path(), &["--format", "github"], &env);
    assert_eq!(gh.stdout.lines().count(), 2, "{}", gh.stdout);
    assert!(gh
        .stdout
        .starts_with("::error title=pg-integrity%3A gate failed"));
    assert!(gh
        .stdout
        .contains("::error title=schema.primary_keys Primary keys"));
    assert!(!gh.stderr.contains("::error"), "not twice: {}", gh.stderr);
}

// The HTML report: the CLI writes it, a real browser opens it.

/// The Chromium binary: PG_INTEGRITY_CHROMIUM, else `chromium` or `chromium-browser`
/// on PATH; `None` when there is none.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PG_INTEGRITY_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
        .find(|p| p.is_file())
}

/// Headless Chromium on `url` with `extra` arguments: (stdout, the console lines it
/// logged). Its profile lives in a fresh directory, so tests can run side by side.
fn headless(browser: &Path, url: &str, extra: &[&str]) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .timeout(Duration::from_secs(90))
        .output()
        .unwrap();
    assert!(out.status.success(), "{browser:?} {url}: {out:?}");
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// The value of `data-NAME="…"` on the page's `<body>` in a dumped DOM.
fn body_attr<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let body = &dom[dom.find("<body")?..];
    let tag = &body[..body.find('>')?];
    let key = format!("data-{name}=\"");
    let start = tag.find(&key)? + key.len();
    Some(&tag[start..start + tag[start..].find('"')?])
}

#[test]
fn html_report_is_one_self_contained_page_whose_filters_work_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let html_path = dir.path().join("audit.html");
    let json_path = dir.path().join("audit.json");
    let out = cli()
        .args(["audit", "--format", "html", "--config"])
        .arg(Path::new(FIXTURE).join("pg-integrity.toml"))
        .arg("--schema")
        .arg(Path::new(FIXTURE).join("schema.sql"))
        .arg("--schema")
        .arg(Path::new(FIXTURE).join("data.sql"))
        .arg("--output")
        .arg(format!("json:{}", json_path.display()))
        .timeout(Duration::from_secs(180))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = String::from_utf8(out.stdout).unwrap();
    std::fs::write(&html_path, &html).unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let checks = doc["checks"].as_array().unwrap();

    // One file: nothing is fetched, nothing outside it is named.
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..80]);
    assert!(html.trim_end().ends_with("</html>"));
    for outside in [
        "<link", " src=", "href=", "url(", "@import", "http://", "https://",
    ] {
        assert!(!html.contains(outside), "the page names `{outside}`");
    }
    // A row per finding of a check with findings, a row per other check; each with
    // its check's severity, section and status, and the fix where there is one.
    let rows_of = |c: &serde_json::Value| c["findings"].as_array().unwrap().len().max(1);
    let total: usize = checks.iter().map(rows_of).sum();
    assert_eq!(html.matches("<tr data-severity=").count(), total);
    for c in checks {
        let id = c["id"].as_str().unwrap();
        assert!(
            html.contains(&format!("<code class=\"id\">{id}</code>")),
            "{id}"
        );
        for f in c["findings"].as_array().unwrap() {
            let object = f["object"].as_str().unwrap();
            assert!(html.contains(&format!("<code>{object}</code>")), "{object}");
        }
        if let Some(m) = c["fixed_by"].as_array().unwrap().first() {
            if c["status"] == "fail" || c["status"] == "partial" {
                assert!(html.contains(&format!("<code>{}</code>", m.as_str().unwrap())));
            }
        }
    }
    // A check with a fix template names the command that writes its migration.
    let catalog = Catalog::load(&[] as &[PathBuf]).unwrap();
    let mut with_fix = 0;
    for c in checks
        .iter()
        .filter(|c| c["status"] == "fail" || c["status"] == "partial")
    {
        let id = c["id"].as_str().unwrap();
        if catalog.checks[id].fix.is_some() {
            with_fix += 1;
            assert!(
                html.contains(&format!("pg-integrity fix --only {id}</code>")),
                "{id}"
            );
        }
    }
    assert!(
        with_fix > 0,
        "the fixture fails some check with a fix template"
    );
    assert!(html.contains("Gate FAIL"));
    assert!(html.contains(&format!(
        "Pass rate: {} of {} applicable checks pass",
        doc["summary"]["passed"], doc["summary"]["applicable"]
    )));

    let Some(browser) = chromium() else {
        eprintln!(
            "NOTICE: no chromium on PATH (nor PG_INTEGRITY_CHROMIUM): the HTML report was not \
             opened in a browser; install it (apt-get install chromium) to run that part"
        );
        return;
    };
    // What each filter must show, counted from the JSON report.
    let count = |keep: &dyn Fn(&serde_json::Value, Option<&serde_json::Value>) -> bool| -> usize {
        checks
            .iter()
            .map(|c| match c["findings"].as_array().unwrap().as_slice() {
                [] => usize::from(keep(c, None)),
                fs => fs.iter().filter(|f| keep(c, Some(f))).count(),
            })
            .sum()
    };
    let needs_work = |c: &serde_json::Value| {
        ["partial", "fail", "error"].contains(&c["status"].as_str().unwrap())
    };
    let url = format!("file://{}", html_path.display());
    let cases: Vec<(&str, usize)> = vec![
        ("", count(&|c, _| needs_work(c))),
        ("#status=", total),
        (
            "#severity=critical&status=",
            count(&|c, _| c["severity"] == "critical"),
        ),
        (
            "#section=rls&status=fail",
            count(&|c, _| c["section"] == "rls" && c["status"] == "fail"),
        ),
        ("#status=pass", count(&|c, _| c["status"] == "pass")),
        (
            "#q=public.tickets",
            count(&|c, f| {
                needs_work(c)
                    && (c["id"].as_str().unwrap().contains("public.tickets")
                        || f.is_some_and(|f| {
                            f["object"].as_str().unwrap().contains("public.tickets")
                                || f["related"].as_array().is_some_and(|r| {
                                    r.iter()
                                        .any(|o| o.as_str().unwrap().contains("public.tickets"))
                                })
                        }))
            }),
        ),
    ];
    let mut seen = vec![];
    for (hash, want) in &cases {
        let (dom, console) = headless(&browser, &format!("{url}{hash}"), &["--dump-dom"]);
        assert!(
            console.is_empty(),
            "console output on {hash:?}: {console:?}"
        );
        assert_eq!(
            body_attr(&dom, "ready"),
            Some("1"),
            "the script ran to its end"
        );
        let shown: usize = body_attr(&dom, "shown").unwrap().parse().unwrap();
        let hidden = dom
            .match_indices("<tr data-severity=")
            .filter(|(i, _)| dom[*i..][..dom[*i..].find('>').unwrap()].contains(" hidden"))
            .count();
        assert_eq!((hash, shown, total - hidden), (hash, *want, *want));
        seen.push(shown);
    }
    // The filters change what is visible (the fixture has rows of every kind).
    seen.sort();
    seen.dedup();
    assert!(seen.len() >= 4, "{seen:?}");

    // docs/report.png: a screenshot of the default view, when asked.
    if std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1") {
        let png = std::fs::canonicalize("docs").unwrap().join("report.png");
        headless(
            &browser,
            &url,
            &[
                "--hide-scrollbars",
                "--window-size=1280,1700",
                &format!("--screenshot={}", png.display()),
            ],
        );
        assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
    }
}

// The catalog as a document: docs/checks.md is `checks list --format markdown`.

/// `checks list ARGS` from a directory with no configuration (so that no
/// pg-integrity.toml of the machine's overrides a severity): its stdout.
/// `--history DIR` keeps each audit's JSON report in DIR, and the HTML report draws the
/// trend over the reports kept there (score, findings per severity and per section),
/// inline, with no fetch; files that are not pg-integrity JSON reports are left out.
/// Opened in headless Chromium: no console output, the trend drawn.
#[test]
fn html_report_shows_the_trend_over_the_history_directory() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let audit = |format: &str| {
        let out = cli()
            .args(["audit", "--format", format, "--config"])
            .arg(Path::new(FIXTURE).join("pg-integrity.toml"))
            .arg("--schema")
            .arg(Path::new(FIXTURE).join("schema.sql"))
            .arg("--schema")
            .arg(Path::new(FIXTURE).join("data.sql"))
            .arg("--history")
            .arg(&history)
            .timeout(Duration::from_secs(180))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // the first audit has no history: no trend, and its report is kept
    let first: serde_json::Value = serde_json::from_str(&audit("json")).unwrap();
    let kept: Vec<PathBuf> = std::fs::read_dir(&history)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let kept_doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kept[0]).unwrap()).unwrap();
    assert_eq!(kept_doc["started_at"], first["started_at"]);
    // an older audit with a lower score and one high finding less, and files that are
    // not reports
    let mut older = first.clone();
    older["started_at"] = "2020-01-02T03:04:05+00:00".into();
    older["summary"]["score"] = 12.0.into();
    let high = older["checks"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["severity"] == "high" && c["findings"].as_array().unwrap().len() > 1)
        .expect("a high check with findings");
    high["findings"].as_array_mut().unwrap().pop();
    std::fs::write(history.join("older.json"), older.to_string()).unwrap();
    std::fs::write(history.join("notes.json"), "{\"format_version\": 2}").unwrap();
    std::fs::write(history.join("README.txt"), "not a report").unwrap();

    let html = audit("html");
    assert_eq!(
        std::fs::read_dir(&history).unwrap().count(),
        5,
        "the second report is kept"
    );
    for outside in [
        "<link", " src=", "href=", "url(", "@import", "http://", "https://",
    ] {
        assert!(!html.contains(outside), "the page names `{outside}`");
    }
    let trend = &html[html
        .find("<section id=\"trend\">")
        .expect("a trend section")..];
    let trend = &trend[..trend.find("</section>").unwrap()];
    assert!(
        trend.contains("3 audits from the history directory"),
        "{trend}"
    );
    let rows: Vec<&str> = trend.split("<tr><td>").skip(1).collect();
    assert_eq!(rows.len(), 3, "{trend}");
    assert!(
        rows[0].starts_with("2020-01-02 03:04</td>"),
        "oldest first: {}",
        rows[0]
    );
    assert!(rows[0].contains("<td>12%</td>"), "{}", rows[0]);
    // findings per severity of each point, as its JSON report counts them
    let per_severity = |doc: &serde_json::Value| -> Vec<usize> {
        ["critical", "high", "medium", "low"]
            .iter()
            .map(|s| {
                doc["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| c["severity"] == *s)
                    .flat_map(|c| c["findings"].as_array().unwrap())
                    .filter(|f| f["waived"] != true)
                    .count()
            })
            .collect()
    };
    let cells = |row: &str| -> Vec<usize> {
        row.split("<td>")
            .skip(3)
            .take(4)
            .map(|c| c[..c.find('<').unwrap()].parse().unwrap())
            .collect()
    };
    assert_eq!(cells(rows[0]), per_severity(&older), "{}", rows[0]);
    assert_eq!(cells(rows[1]), per_severity(&first), "{}", rows[1]);
    assert_eq!(cells(rows[0])[1] + 1, cells(rows[1])[1]);
    // a line per severity and one for the score, a dot per audit on each
    assert_eq!(trend.matches("<circle class=\"dot score\"").count(), 3);
    assert_eq!(trend.matches("<polyline class=\"line ").count(), 5);

    let Some(browser) = chromium() else {
        eprintln!(
            "NOTICE: no chromium on PATH (nor PG_INTEGRITY_CHROMIUM): the trend was not \
             opened in a browser; install it (apt-get install chromium) to run that part"
        );
        return;
    };
    let page = dir.path().join("trend.html");
    std::fs::write(&page, &html).unwrap();
    let (dom, console) = headless(
        &browser,
        &format!("file://{}", page.display()),
        &["--dump-dom"],
    );
    assert!(console.is_empty(), "console output: {console:?}");
    assert_eq!(
        body_attr(&dom, "ready"),
        Some("1"),
        "the script ran to its end"
    );
    assert!(dom.contains("<section id=\"trend\">"));
    assert_eq!(dom.matches("class=\"dot score\"").count(), 3);
}

/// The rls checks' remediation says the tenant-bound expression of the model in
/// force with the names it uses: the configured setting under the setting model; the
/// membership table, user column and identity read from the policies (or the
/// configuration) under the membership model. No placeholder is left.
#[test]
fn rls_remediation_names_the_model_in_force() {
    const PLACEHOLDERS: [&str; 5] = [
        "<tenancy.setting>",
        "<membership table>",
        "<identity",
        "<user column>",
        "{tenant_",
    ];
    const RLS: &str =
        "rls.enabled,rls.tenant_policies,rls.write_check,rls.policy_initplan,rls.context_set";
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.sql");
    std::fs::write(
        &schema,
        "create table orgs(id uuid primary key);\n\
         create table users(id uuid primary key);\n\
         create table members(org_id uuid not null references orgs, user_id uuid not null references users,\n\
                              primary key (org_id, user_id));\n\
         create table projects(id uuid primary key, org_id uuid not null references orgs);\n\
         create table notes(id uuid primary key, org_id uuid not null references orgs);\n\
         alter table projects enable row level security;\n\
         create policy projects_member on projects using (org_id in (select m.org_id from members m\n\
             where m.user_id = (select nullif(current_setting('app.user_id', true), '')::uuid)));\n",
    )
    .unwrap();
    let config = dir.path().join("pg-integrity.toml");
    std::fs::write(
        &config,
        "[tenancy]\ncolumn = \"org_id\"\ntenant_table = \"orgs\"\n",
    )
    .unwrap();
    let out = cli()
        .args(["audit", "--format", "json", "--only", RLS, "--config"])
        .arg(&config)
        .arg("--schema")
        .arg(&schema)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(doc["target"]["tenancy"]["model"], "membership", "{doc}");
    let enabled = support::check_in(&doc, "rls.enabled");
    assert_eq!(enabled["status"], "partial", "notes has no RLS: {enabled}");
    let bound = "org_id IN (select org_id from public.members where user_id = \
                 (select current_setting('app.user_id')))";
    for id in [
        "rls.enabled",
        "rls.tenant_policies",
        "rls.write_check",
        "rls.policy_initplan",
    ] {
        let text = support::check_in(&doc, id)["remediation"].to_string();
        assert!(text.contains(bound), "{id}: {text}");
        assert!(
            !text.contains("current_setting('app.current_tenant'"),
            "{id}: {text}"
        );
    }
    let all = doc.to_string();
    for left in PLACEHOLDERS {
        assert!(!all.contains(left), "`{left}` in {all}");
    }
    // Without a database, the configuration's model and names decide.
    std::fs::write(
        &config,
        "[tenancy]\ncolumn = \"org_id\"\nmodel = \"setting\"\nsetting = \"app.org\"\n",
    )
    .unwrap();
    let list = checks_list(&[
        "--format",
        "markdown",
        "--config",
        &config.display().to_string(),
    ]);
    assert!(
        list.contains(
            "USING (org_id = (select nullif(current_setting('app.org', true), '')::<its type>))"
        ),
        "{list}"
    );
    assert!(list.contains("set_config('app.org', $1, true)"), "{list}");
    for left in PLACEHOLDERS {
        assert!(!list.contains(left), "`{left}` in {list}");
    }
    std::fs::write(
        &config,
        "[tenancy]\ncolumn = \"org_id\"\nmodel = \"membership\"\n\
         membership_table = \"app.members\"\nuser_identity = \"auth.uid()\"\n",
    )
    .unwrap();
    let show = cli()
        .args(["checks", "show", "rls.tenant_policies", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains("USING (org_id IN (select org_id from app.members where <user column> = (select auth.uid())))"),
        "the user column needs the database: {show}"
    );
    for left in &PLACEHOLDERS[..3] {
        assert!(!show.contains(left), "`{left}` in {show}");
    }
}

fn checks_list(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = cli()
        .args(["checks", "list"])
        .args(args)
        .current_dir(dir.path())
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn docs_checks_md_is_the_generated_catalog() {
    let text = checks_list(&["--format", "markdown"]);
    let catalog = Catalog::load(&[] as &[PathBuf]).unwrap();
    for c in catalog.ordered() {
        assert!(text.contains(&format!("\n### {}\n", c.id)), "{}", c.id);
    }
    let path = Path::new("docs/checks.md");
    if std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1") {
        std::fs::write(path, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let stale = committed
        .lines()
        .zip(text.lines())
        .position(|(a, b)| a != b)
        .map_or(committed.lines().count().min(text.lines().count()), |i| i)
        + 1;
    assert!(
        committed == text,
        "docs/checks.md is stale (first difference at line {stale}): regenerate it with \
         `cargo run -q -- checks list --format markdown > docs/checks.md` \
         (or `UPDATE_DOCS=1 cargo test --test reports docs_checks`)"
    );
}

#[test]
fn checks_list_json_has_every_check_with_its_fields() {
    let doc: serde_json::Value =
        serde_json::from_str(&checks_list(&["--format", "json"])).expect("valid JSON");
    assert_eq!(doc["format_version"], 1);
    let catalog = Catalog::load(&[] as &[PathBuf]).unwrap();
    let ids: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = catalog.ordered().iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, want, "every check, in catalog order");
    let fk = &doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "schema.foreign_keys")
        .unwrap();
    assert_eq!(fk["section"], "schema");
    assert_eq!(fk["kind"], "catalog");
    assert_eq!(fk["disabled"], false);
    assert!(Severity::parse(fk["severity"].as_str().unwrap()).is_some());
    assert!(!fk["remediation"].as_str().unwrap().is_empty());
    assert!(fk["fixed_by"].as_array().is_some());
    assert!(fk["requires"]["config"].is_array());

    // A configuration's override and disable show, as in the table.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pg-integrity.toml");
    std::fs::write(
        &config,
        "[checks]\ndisable = [\"schema.duplicate_indexes\"]\n\
         severity = { \"schema.foreign_keys\" = \"critical\" }\n",
    )
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&checks_list(&[
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
    ]))
    .unwrap();
    let by_id = |id: &str| {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("schema.foreign_keys")["severity"], "critical");
    assert_eq!(by_id("schema.duplicate_indexes")["disabled"], true);
}

#[test]
fn titles_and_remediation_use_the_configured_names() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.sql");
    std::fs::write(
        &schema,
        "create table organizations(id uuid primary key);\n\
         create table invoices(id uuid primary key, organization_id uuid not null);\n\
         create role lago_app_pgi_names;\n",
    )
    .unwrap();
    let config = dir.path().join("pg-integrity.toml");
    std::fs::write(
        &config,
        "[tenancy]\ncolumn = \"organization_id\"\ntenant_table = \"organizations\"\n\
         setting = \"app.org\"\n[roles]\napp = [\"lago_app_pgi_names\"]\n",
    )
    .unwrap();
    let out = cli()
        .args(["audit", "--format", "json", "--only"])
        .arg("tenancy.tenant_column,tenancy.tenant_foreign_key,pool.statement_timeout")
        .arg("--config")
        .arg(&config)
        .arg("--schema")
        .arg(&schema)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let check = |id: &str| support::check_in(&doc, id);
    assert_eq!(
        check("tenancy.tenant_column")["title"],
        "organization_id on all tables"
    );
    let fk = check("tenancy.tenant_foreign_key");
    assert_eq!(fk["title"], "organization_id references organizations");
    assert_eq!(fk["status"], "fail", "{fk}");
    let text = fk["remediation"].as_str().unwrap();
    assert!(
        text.contains("FOREIGN KEY (organization_id) REFERENCES organizations(id)"),
        "{text}"
    );
    let timeout = check("pool.statement_timeout")["remediation"].to_string();
    assert!(
        timeout.contains("ALTER ROLE lago_app_pgi_names SET"),
        "{timeout}"
    );
    // No default name and no placeholder is left in what this audit says.
    let all = doc.to_string();
    for left in ["tenant_id", "ticket_app", "{tenant_", "{app_role}"] {
        assert!(!all.contains(left), "`{left}` in {all}");
    }
    // `checks show` and `checks list` speak the same names.
    let show = cli()
        .args(["checks", "show", "tenancy.tenant_foreign_key", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.starts_with("tenancy.tenant_foreign_key — organization_id references organizations"),
        "{show}"
    );
}

#[test]
fn demo_prints_the_before_and_after_summary_and_what_changed_wrapped_on_a_pipe() {
    let out = cli()
        .arg("demo")
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    support::assert_exit(&out, 0);
    let text = String::from_utf8(out.stdout).unwrap();
    for part in [
        "Applied 9 migration(s):",
        "Before: score ",
        "After:  score ",
        "What changed (",
        "Still to do (",
    ] {
        assert!(text.contains(part), "no `{part}` in:\n{text}");
    }
    let score = text
        .lines()
        .find(|l| l.starts_with("Score:  "))
        .expect("a score line");
    assert!(
        score.contains(" → ") && score.ends_with(" points"),
        "{score}"
    );
    // A fixed check shows its before and after; a summary, not two full reports.
    assert!(
        text.lines().any(|l| l.contains("rls.enabled")) && text.contains("partial: 9 findings"),
        "{text}"
    );
    assert!(
        text.lines().count() < 120,
        "{} lines:\n{text}",
        text.lines().count()
    );
    let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(
        widest <= 120,
        "a line of {widest} characters on a pipe:\n{text}"
    );
    // Progress is on stderr, never in the summary.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("applying the remediation migrations"), "{err}");
    assert!(!text.contains("applying"), "{text}");
}

// The --schema target: what a user sees while it starts and loads, and load errors.

const WITH_MISSING_EXTENSION: &str = "create table t(id int primary key);\n\
     create extension if not exists pgi_missing_extension;\n\
     create table u(x int);\n";

#[test]
fn schema_errors_continue_loads_past_a_failing_statement_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("structure.sql");
    std::fs::write(&schema, WITH_MISSING_EXTENSION).unwrap();
    let run = |extra: &[&str]| {
        cli()
            .args(["audit", "--only", "schema.primary_keys", "--format", "json"])
            .args(extra)
            .arg("--schema")
            .arg("structure.sql")
            .current_dir(dir.path())
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap()
    };
    // By default the first failing statement stops the command (exit 2).
    let stopped = run(&[]);
    support::assert_exit(&stopped, 2);
    assert!(stopped.stdout.is_empty());
    // With continue: a warning naming the file, line and error, and an audit of the rest.
    let kept = run(&["--schema-errors", "continue"]);
    support::assert_exit(&kept, 1);
    let err = String::from_utf8_lossy(&kept.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].starts_with("warning: structure.sql:2: extension \"pgi_missing_extension\""),
        "{err}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&kept.stdout).unwrap();
    let pk = support::check_in(&doc, "schema.primary_keys");
    assert_eq!(pk["objects_checked"], 2, "both tables loaded: {pk}");
    assert_eq!(pk["findings"][0]["object"], "public.u");
    // The report keeps the warning, and says what the audit did to the database.
    let w = doc["target"]["load_warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{doc}");
    assert!(w[0].as_str().unwrap().contains("structure.sql:2"), "{doc}");
    let activity: Vec<&str> = doc["target"]["activity"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert_eq!(activity.len(), 4, "{doc}");
    assert!(activity[0].starts_with("read: the catalog"), "{doc}");
    assert_eq!(activity[1], "written: nothing", "{doc}");
    assert!(activity[2].starts_with("locked: no table lock"), "{doc}");
    assert_eq!(activity[3], "fired: nothing", "{doc}");
    let md = cli()
        .args([
            "audit",
            "--only",
            "schema.primary_keys",
            "--format",
            "markdown",
            "--deep",
        ])
        .args(["--schema-errors", "continue", "--schema", "structure.sql"])
        .current_dir(dir.path())
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(
        md.contains("**What the audit did:** read: the catalog")
            && md.contains("every row of the tables in scope (--deep)")
            && md.contains("ACCESS SHARE lock for its one read (--deep)"),
        "{md}"
    );
    assert!(
        md.contains("**Schema file warning:** structure.sql:2"),
        "{md}"
    );
    // The flag needs --schema.
    let alone = cli()
        .args([
            "audit",
            "--schema-errors",
            "continue",
            "--database-url",
            "host=/nonexistent",
        ])
        .output()
        .unwrap();
    support::assert_exit(&alone, 2);
}

#[test]
fn schema_target_shows_progress_on_a_terminal_and_none_on_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.sql"), NO_KEY).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("pg-integrity");
    let command = format!(
        "{} audit --only schema.primary_keys --format json --schema schema.sql > report.json",
        bin.display()
    );
    // `script` gives the command a terminal for stderr (util-linux; skipped without).
    let Ok(out) = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
    else {
        eprintln!("NOTICE: no `script` command: the terminal half of this test did not run");
        return;
    };
    let shown = String::from_utf8_lossy(&out.stdout);
    for step in [
        "starting a throwaway PostgreSQL…",
        "loading schema.sql (1/1)…",
        "throwaway server ready (",
    ] {
        assert!(shown.contains(step), "no `{step}` in:\n{shown}");
    }
    let report = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&report).is_ok());
    // On a pipe: no progress.
    let piped = audit_no_key(dir.path(), &["--format", "json"], &[]);
    assert!(
        !piped.stderr.contains("starting a throwaway"),
        "{}",
        piped.stderr
    );
}

#[test]
fn errors_are_printed_once_and_without_the_internal_code() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.sql"),
        "create table a(id int primary key);\ncreate tabel b(id int);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pg-integrity.toml"),
        "[checks]\ndisable = [\"schema.primary_key\"]\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = cli()
            .args(args)
            .current_dir(dir.path())
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cases = [
        // a --schema file the server rejects: the message, then the statement in its file
        (
            vec!["audit", "--schema", "broken.sql", "--config", "/dev/null"],
            2,
            "syntax error at or near",
        ),
        // a configuration naming an unknown check: one problem, shown once
        (
            vec!["audit", "--schema", "broken.sql"],
            2,
            "unknown check id `schema.primary_key`",
        ),
        (
            vec![
                "audit",
                "--config",
                "/dev/null",
                "--database-url",
                "host=/nonexistent-pgi dbname=x",
            ],
            3,
            "refused: ",
        ),
    ];
    for (args, code, message) in &cases {
        let (got, err) = run(args);
        assert_eq!(got, Some(*code), "{args:?}: {err}");
        assert_eq!(
            err.matches(message).count(),
            1,
            "{args:?}, said once:\n{err}"
        );
        assert!(
            !err.contains("pg_integrity::"),
            "{args:?}, no code line:\n{err}"
        );
        assert!(!err.contains("Error:"), "{args:?}, no second error:\n{err}");
        assert!(err.contains("help:"), "{args:?}: {err}");
    }
    let (_, err) = run(&cases[0].0);
    assert!(
        err.contains("broken.sql:2") && err.contains("create tabel b"),
        "{err}"
    );
}

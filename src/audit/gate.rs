//! Findings judged against waivers and the baseline, the score, and the CI gate
//! (SPEC §1, §3, §4). Pure data in, data out: reports render what this decides.

use crate::audit::outcome::{AuditRun, CheckResult};
use crate::config::{LoadedConfig, Waiver};
use crate::model::ObjectResult;
use crate::model::{Severity, Status};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// `--fail-on`: the lowest severity whose findings fail the gate, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    At(Severity),
    Never,
}

impl FailOn {
    pub fn parse(s: &str) -> Option<Self> {
        if s == "never" {
            Some(FailOn::Never)
        } else {
            Severity::parse(s).map(FailOn::At)
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            FailOn::At(s) => s.as_str(),
            FailOn::Never => "never",
        }
    }
    fn includes(self, s: Severity) -> bool {
        matches!(self, FailOn::At(min) if s >= min)
    }
}

/// One not-ok object with its disposition. Fields in alphabetical order: the JSON
/// report's key order.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub baseline: bool,
    pub evidence: String,
    pub object: String,
    /// The other objects this finding stands for (SPEC §3); a baseline entry or a
    /// waiver naming one of them matches the finding too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    pub waived: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiver_reason: Option<String>,
}

/// An object whose verdict the database cannot show, with the reason and what to
/// verify (SPEC §3). Never counted as failing.
#[derive(Debug, Clone, Serialize)]
pub struct Unknown {
    pub object: String,
    pub reason: String,
}

impl Finding {
    pub fn counts(&self) -> bool {
        !self.waived && !self.baseline
    }
}

#[derive(Debug, Clone)]
pub struct Assessed {
    pub result: CheckResult,
    pub findings: Vec<Finding>,
    pub unknown: Vec<Unknown>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GateOutcome {
    pub passed: bool,
    pub fail_on: String,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Assessment {
    pub run: AuditRun,
    pub checks: Vec<Assessed>,
    pub gate: GateOutcome,
    /// Waivers past their expiry date: void, and reported.
    pub expired_waivers: Vec<String>,
    pub service: Option<String>,
    /// The repository file that SARIF anchors findings to (code-scanning services
    /// need a physical location): the first `--schema` file, else the config
    /// file. Set by the caller; None means `pg-integrity.toml`.
    pub artifact: Option<String>,
    /// Findings per check the human formats list (`--findings N`; `None`: all).
    pub findings_limit: Option<usize>,
    /// The configuration file read (`None`: the built-in defaults).
    pub config_file: Option<String>,
    /// The tenancy model the checks judged by, and why (SPEC §4).
    pub tenancy: Option<(String, String)>,
    /// What the audit did to the database: what it read, wrote, locked and fired, one
    /// line each (`activity`). Empty: not said (a library caller).
    pub activity: Vec<String>,
    /// Statements of the `--schema` files the server refused (`--schema-errors continue`).
    pub load_warnings: Vec<String>,
    /// Earlier audits (`--history DIR`), oldest first; this one is not among them.
    pub history: Vec<TrendPoint>,
}

/// One audit of a trend (`--history`): when, on which database, its score, and its
/// findings (waived ones not counted) per severity and per section. Read from JSON
/// reports by `report::history`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendPoint {
    /// RFC 3339, as the JSON report's `started_at`.
    pub started_at: String,
    pub database: String,
    /// Percent; `None` when nothing counted.
    pub score: Option<f64>,
    /// Findings per severity, in [`Severity::ALL`] order.
    pub by_severity: [usize; 4],
    /// Findings per section id (`schema`, `tenancy`, ...).
    pub by_section: std::collections::BTreeMap<String, usize>,
}

/// What an audit in these modes does to the database (SPEC §2), as the reports say it.
pub fn activity(deep: bool, probe: bool, probe_write: bool) -> Vec<String> {
    let mut read = "read: the catalog, statistics views and tracked statements".to_string();
    if deep {
        read.push_str("; every row of the tables in scope (--deep)");
    }
    if probe {
        read.push_str(
            "; each tenant table's lowest tenant values and, under the membership model, a member from the membership table, then rows as each app role sees them, as that member under the membership model (its identity in transaction-local settings, or its own role where policies name the user by current_user) (--probe)",
        );
    }
    let written = if probe_write {
        "written: rows updated as an app role (or that member's role), always rolled back (--probe write)"
    } else {
        "written: nothing"
    };
    let mut locked = "locked: no table lock for the catalog checks".to_string();
    if deep {
        locked.push_str("; each table's ACCESS SHARE lock for its one read (--deep)");
    }
    if probe {
        locked.push_str(
            "; each tenant table's ACCESS SHARE lock until the audit ends, its lowest tenant values read in the audit's transaction (--probe)",
        );
    }
    if probe_write {
        locked.push_str("; row locks, SKIP LOCKED (--probe write)");
    }
    locked.push_str("; never waiting past lock_timeout");
    let fired = if probe_write {
        "fired: row triggers (--probe write): their effects outside the transaction, and the sequences they advance, survive the rollback"
    } else {
        "fired: nothing"
    };
    vec![read, written.into(), locked, fired.into()]
}

impl Assessment {
    /// Findings per check the human formats list before "and N more".
    pub fn findings_shown(&self) -> usize {
        self.findings_limit.unwrap_or(usize::MAX)
    }
}

/// The name a finding is matched by in baselines, waivers and SARIF fingerprints:
/// its object, except that `database <name>` (the subject of the settings checks when
/// no app role is configured) is `database`. An audit reads one database, so the name
/// adds nothing, and a baseline taken on staging must match a `--schema` run, whose
/// throwaway database has another name.
pub fn stable_key(object: &str) -> &str {
    match object.strip_prefix("database ") {
        Some(name) if !name.is_empty() => "database",
        _ => object,
    }
}

/// The stored baseline: failing (check, object) pairs, never the database name (an
/// object `database <name>` is stored as `database`, see [`stable_key`]; entries
/// written with the name by earlier versions still match).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    pub format_version: u32,
    pub findings: Vec<BaselineEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct BaselineEntry {
    pub check: String,
    pub object: String,
}

impl Baseline {
    pub const VERSION: u32 = 1;

    pub fn from_assessment(a: &Assessment) -> Self {
        let mut findings: Vec<BaselineEntry> = a
            .checks
            .iter()
            .flat_map(|c| {
                c.findings.iter().map(|f| BaselineEntry {
                    check: c.result.check.id.clone(),
                    object: stable_key(&f.object).to_string(),
                })
            })
            .collect();
        findings.sort();
        findings.dedup();
        Baseline {
            format_version: Self::VERSION,
            findings,
        }
    }

    pub fn parse(name: &str, text: &str) -> Result<Self, String> {
        let b: Baseline = serde_json::from_str(text)
            .map_err(|e| format!("{name} is not a pg-integrity baseline: {e}"))?;
        if b.format_version != Self::VERSION {
            return Err(format!(
                "{name} has baseline format_version {}; this pg-integrity reads version {}",
                b.format_version,
                Self::VERSION
            ));
        }
        Ok(b)
    }
}

#[derive(Debug, Clone)]
pub struct GateOptions {
    pub fail_on: FailOn,
    pub min_score: Option<f64>,
    pub today: chrono::NaiveDate,
}

/// Score as a percentage: pass / (pass + partial + fail + error). None when nothing counts.
pub fn score(results: &[CheckResult]) -> (usize, usize, Option<f64>) {
    let applicable = results.iter().filter(|r| r.status.is_applicable()).count();
    let passed = results.iter().filter(|r| r.status == Status::Pass).count();
    let pct = (applicable > 0).then(|| 100.0 * passed as f64 / applicable as f64);
    (passed, applicable, pct)
}

pub fn assess(
    run: AuditRun,
    config: &LoadedConfig,
    baseline: Option<&Baseline>,
    opts: &GateOptions,
) -> Assessment {
    let matcher = Matcher::new(config, baseline, opts.today);
    let checks: Vec<Assessed> = run.results.iter().map(|r| matcher.assess(r)).collect();
    let mut reasons = gate_reasons(&checks, opts.fail_on);
    let (_, _, pct) = score(&run.results);
    if let (Some(min), Some(pct)) = (opts.min_score, pct) {
        if pct + 1e-9 < min {
            reasons.push(format!("score {pct:.0}% is below --min-score {min:.0}%"));
        }
    }
    Assessment {
        gate: GateOutcome {
            passed: reasons.is_empty(),
            fail_on: opts.fail_on.as_str().to_string(),
            reasons,
        },
        checks,
        expired_waivers: expired_waivers(config, opts.today),
        service: config.service_name().map(str::to_string),
        artifact: None,
        findings_limit: Some(3),
        config_file: config.file_name().map(str::to_string),
        tenancy: None,
        activity: vec![],
        load_warnings: vec![],
        history: vec![],
        run,
    }
}

/// The configured waivers that have expired, each said in one line.
fn expired_waivers(config: &LoadedConfig, today: NaiveDate) -> Vec<String> {
    config
        .config
        .waiver
        .iter()
        .filter_map(|w| {
            let d = w.expiry().filter(|d| *d < today)?;
            Some(format!(
                "waiver for {} on {} expired on {d}: {}",
                w.check.get_ref(),
                w.object.get_ref(),
                w.reason
            ))
        })
        .collect()
}

/// Matches findings against the waivers in force and the baseline.
struct Matcher<'a> {
    waivers: &'a [Waiver],
    base: BTreeSet<(&'a str, &'a str)>,
    today: NaiveDate,
}

impl<'a> Matcher<'a> {
    fn new(config: &'a LoadedConfig, baseline: Option<&'a Baseline>, today: NaiveDate) -> Self {
        let base = baseline
            .map(|b| {
                b.findings
                    .iter()
                    .map(|e| (e.check.as_str(), stable_key(&e.object)))
                    .collect()
            })
            .unwrap_or_default();
        Matcher {
            waivers: &config.config.waiver,
            base,
            today,
        }
    }

    /// The waiver in force for a finding of `check` named by any of `names`. A finding
    /// is matched by its own name or by any of its related objects, so waivers and
    /// baselines written before a finding was folded still hold; and by its
    /// [`stable_key`], so `object = "database"` waives the database-level finding of
    /// whichever database is audited.
    fn waiver(&self, check: &str, names: &[&str]) -> Option<&'a Waiver> {
        self.waivers.iter().find(|w| {
            let pattern = w.object.get_ref();
            w.check.get_ref() == check
                && names.iter().any(|n| {
                    crate::config::glob::matches(pattern, n)
                        || crate::config::glob::matches(stable_key(pattern), stable_key(n))
                })
                && w.expiry().is_none_or(|d| d >= self.today)
        })
    }

    fn finding(&self, check: &str, o: &ObjectResult) -> Finding {
        let names: Vec<&str> = std::iter::once(o.object.as_str())
            .chain(o.related.iter().map(String::as_str))
            .collect();
        let w = self.waiver(check, &names);
        Finding {
            object: o.object.clone(),
            evidence: o.evidence.clone(),
            related: o.related.clone(),
            waived: w.is_some(),
            baseline: names
                .iter()
                .any(|n| self.base.contains(&(check, stable_key(n)))),
            waiver_reason: w.map(|w| w.reason.clone()),
        }
    }

    fn assess(&self, r: &CheckResult) -> Assessed {
        let mut findings: Vec<Finding> =
            r.findings().map(|o| self.finding(&r.check.id, o)).collect();
        // New findings first (they are what fails the gate), then baseline, then
        // waived ones; each group by object.
        findings.sort_by_key(|f| (!f.counts(), f.waived, f.object.clone()));
        let unknown = r
            .unknowns()
            .map(|o| Unknown {
                object: o.object.clone(),
                reason: o.evidence.clone(),
            })
            .collect();
        Assessed {
            result: r.clone(),
            findings,
            unknown,
        }
    }
}

/// Why the gate fails: errors first, then failing checks from the most severe; each
/// names the objects that failed it (new findings, the ones a baseline or waiver does
/// not cover).
fn gate_reasons(checks: &[Assessed], fail_on: FailOn) -> Vec<String> {
    let mut failing: Vec<(Severity, String)> = vec![];
    let mut reasons = vec![];
    for c in checks {
        let r = &c.result;
        if r.status == Status::Error {
            reasons.push(format!(
                "{} errored: {}",
                r.check.id,
                r.reason.as_deref().unwrap_or("")
            ));
        } else if r.status.is_failing() && fail_on.includes(r.severity) {
            let open: Vec<&str> = c
                .findings
                .iter()
                .filter(|f| f.counts())
                .map(|f| f.object.as_str())
                .collect();
            let n = open.len();
            if n > 0 {
                let mut named = open.iter().take(5).copied().collect::<Vec<_>>().join(", ");
                if n > 5 {
                    named.push_str(&format!(" and {} more", n - 5));
                }
                let s = if n == 1 { "" } else { "s" };
                failing.push((
                    r.severity,
                    format!(
                        "{} ({}) {}: {n} finding{s}: {named}",
                        r.check.id, r.severity, r.status
                    ),
                ));
            }
        }
    }
    failing.sort_by_key(|(sev, _)| std::cmp::Reverse(*sev));
    reasons.extend(failing.into_iter().map(|(_, r)| r));
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjectResult;
    use std::sync::Arc;

    fn run_with(objects: Vec<ObjectResult>) -> AuditRun {
        let catalog = crate::checks::catalog::Catalog::load(&[] as &[&str]).expect("catalog");
        let check = Arc::new(
            catalog
                .checks
                .get("schema.duplicate_indexes")
                .expect("check")
                .clone(),
        );
        let status = crate::model::derive_status(&objects, false);
        AuditRun {
            database: "d".into(),
            server_version: "15".into(),
            server_version_num: 150000,
            started_at: chrono::Utc::now(),
            duration_ms: 0,
            results: vec![CheckResult {
                severity: check.severity,
                check: Arc::clone(&check),
                status,
                reason: None,
                objects,
                duration_ms: 0,
            }],
        }
    }

    fn row(object: &str, ok: Option<bool>, related: &[&str]) -> ObjectResult {
        ObjectResult {
            object: object.into(),
            ok,
            evidence: format!("evidence of {object}"),
            related: related.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn opts() -> GateOptions {
        GateOptions {
            fail_on: FailOn::At(Severity::Low),
            min_score: None,
            today: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        }
    }

    #[test]
    fn a_baseline_entry_naming_a_related_object_matches_the_finding() {
        let run = run_with(vec![row(
            "public.t.a_idx",
            Some(false),
            &["public.t.b_idx"],
        )]);
        let baseline = Baseline {
            format_version: Baseline::VERSION,
            findings: vec![BaselineEntry {
                check: "schema.duplicate_indexes".into(),
                object: "public.t.b_idx".into(),
            }],
        };
        let config = LoadedConfig::parse("x.toml", "").expect("config");
        let a = assess(run.clone(), &config, Some(&baseline), &opts());
        assert!(a.checks[0].findings[0].baseline);
        assert!(a.gate.passed, "{:?}", a.gate.reasons);
        // without the baseline the same finding fails the gate
        let a = assess(run, &config, None, &opts());
        assert!(!a.gate.passed);
    }

    #[test]
    fn the_database_name_is_not_part_of_baseline_and_waiver_keys() {
        assert_eq!(stable_key("database staging"), "database");
        assert_eq!(stable_key("database "), "database ");
        assert_eq!(stable_key("public.database"), "public.database");
        let run = run_with(vec![row("database pgi_sandbox_1", Some(false), &[])]);
        let old = Baseline {
            format_version: Baseline::VERSION,
            findings: vec![BaselineEntry {
                check: "schema.duplicate_indexes".into(),
                object: "database staging".into(),
            }],
        };
        let config = LoadedConfig::parse("x.toml", "").expect("config");
        let a = assess(run.clone(), &config, Some(&old), &opts());
        assert!(a.checks[0].findings[0].baseline);
        assert_eq!(
            Baseline::from_assessment(&a).findings[0].object,
            "database",
            "written without the name"
        );
        let config = LoadedConfig::parse(
            "x.toml",
            "[[waiver]]\ncheck = \"schema.duplicate_indexes\"\nobject = \"database\"\nreason = \"r\"\n",
        )
        .expect("config");
        assert!(assess(run, &config, None, &opts()).checks[0].findings[0].waived);
    }

    #[test]
    fn a_waiver_naming_a_related_object_matches_the_finding() {
        let run = run_with(vec![row(
            "public.t.a_idx",
            Some(false),
            &["public.t.b_idx"],
        )]);
        let config = LoadedConfig::parse(
            "x.toml",
            "[[waiver]]\ncheck = \"schema.duplicate_indexes\"\nobject = \"public.t.b_*\"\nreason = \"kept\"\n",
        )
        .expect("config");
        let a = assess(run, &config, None, &opts());
        assert!(a.checks[0].findings[0].waived);
        assert!(a.gate.passed, "{:?}", a.gate.reasons);
    }

    #[test]
    fn unknown_objects_are_listed_and_never_fail_the_gate() {
        let run = run_with(vec![
            row("public.t.a_idx", None, &[]),
            row("public.t.c_idx", Some(true), &[]),
        ]);
        let config = LoadedConfig::parse("x.toml", "").expect("config");
        let a = assess(run, &config, None, &opts());
        assert_eq!(a.checks[0].result.status, Status::Pass);
        assert!(a.checks[0].findings.is_empty());
        assert_eq!(a.checks[0].unknown.len(), 1);
        assert_eq!(a.checks[0].unknown[0].reason, "evidence of public.t.a_idx");
        assert!(a.gate.passed);
    }
}

//! Findings judged against waivers and the baseline, the score, and the CI gate
//! (SPEC §1, §3, §4). Pure data in, data out: reports render what this decides.

use crate::config::LoadedConfig;
use crate::model::{Severity, Status};
use crate::runner::{AuditRun, CheckResult};
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
    pub waived: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiver_reason: Option<String>,
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
}

/// The stored baseline: failing (check, object) pairs, never the database name.
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
                    object: f.object.clone(),
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
    let base: BTreeSet<(&str, &str)> = baseline
        .map(|b| {
            b.findings
                .iter()
                .map(|e| (e.check.as_str(), e.object.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let waivers = &config.config.waiver;
    let mut expired_waivers = vec![];
    for w in waivers {
        if let Some(d) = w.expiry() {
            if d < opts.today {
                expired_waivers.push(format!(
                    "waiver for {} on {} expired on {d}: {}",
                    w.check.get_ref(),
                    w.object.get_ref(),
                    w.reason
                ));
            }
        }
    }
    let active = |check: &str, object: &str| {
        waivers.iter().find(|w| {
            w.check.get_ref() == check
                && crate::glob::matches(w.object.get_ref(), object)
                && w.expiry().is_none_or(|d| d >= opts.today)
        })
    };
    let checks: Vec<Assessed> = run
        .results
        .iter()
        .map(|r| {
            let findings = r
                .findings()
                .map(|o| {
                    let w = active(&r.check.id, &o.object);
                    Finding {
                        object: o.object.clone(),
                        evidence: o.evidence.clone(),
                        waived: w.is_some(),
                        baseline: base.contains(&(r.check.id.as_str(), o.object.as_str())),
                        waiver_reason: w.map(|w| w.reason.clone()),
                    }
                })
                .collect();
            Assessed {
                result: r.clone(),
                findings,
            }
        })
        .collect();
    let mut reasons = vec![];
    for c in &checks {
        let r = &c.result;
        if r.status == Status::Error {
            reasons.push(format!(
                "{} errored: {}",
                r.check.id,
                r.reason.as_deref().unwrap_or("")
            ));
        } else if r.status.is_failing() && opts.fail_on.includes(r.severity) {
            let n = c.findings.iter().filter(|f| f.counts()).count();
            if n > 0 {
                reasons.push(format!(
                    "{} ({}) {}: {n} finding{}",
                    r.check.id,
                    r.severity,
                    r.status,
                    if n == 1 { "" } else { "s" }
                ));
            }
        }
    }
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
        expired_waivers,
        service: config.service_name().map(str::to_string),
        artifact: None,
        run,
    }
}

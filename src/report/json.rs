//! The `json` format: the stable machine contract of SPEC §6, `format_version: 1`.

use crate::audit::gate::{score, Assessment, Finding, Unknown};
use crate::model::{Kind, Severity, Status};
use serde::Serialize;
use serde_json::{json, Map, Value};

// Written straight from borrowed fields, not through a serde_json::Value tree (which
// would copy every finding once more). Fields in alphabetical order: the order the
// document has always had (serde_json's Map sorts its keys).
#[derive(Serialize)]
struct Doc<'a> {
    checks: Vec<CheckOut<'a>>,
    duration_ms: u64,
    format_version: u32,
    started_at: String,
    summary: Value,
    target: Value,
    tool: Value,
}

#[derive(Serialize)]
struct CheckOut<'a> {
    duration_ms: u64,
    findings: &'a [Finding],
    fixed_by: &'a [String],
    id: &'a str,
    kind: Kind,
    objects_checked: usize,
    reason: Option<&'a str>,
    remediation: &'a str,
    section: &'a str,
    severity: Severity,
    status: Status,
    title: &'a str,
    #[serde(skip_serializing_if = "<[Unknown]>::is_empty")]
    unknown: &'a [Unknown],
}

pub fn render(a: &Assessment) -> String {
    let run = &a.run;
    let (passed, applicable, pct) = score(&run.results);
    let mut by_status = Map::new();
    for s in Status::ALL {
        let n = run.results.iter().filter(|r| r.status == s).count();
        by_status.insert(s.as_str().into(), json!(n));
    }
    let mut by_severity = Map::new();
    for sev in Severity::ALL {
        let n = a
            .checks
            .iter()
            .filter(|c| {
                c.result.severity == sev
                    && (c.result.status.is_failing() || c.result.status == Status::Error)
            })
            .count();
        by_severity.insert(sev.as_str().into(), json!(n));
    }
    let checks: Vec<CheckOut> = a
        .checks
        .iter()
        .map(|c| {
            let r = &c.result;
            CheckOut {
                duration_ms: r.duration_ms,
                findings: &c.findings,
                fixed_by: &r.check.fixed_by,
                id: &r.check.id,
                kind: r.check.kind,
                objects_checked: r.objects.len(),
                reason: r.reason.as_deref(),
                remediation: &r.check.remediation,
                section: &r.check.section,
                severity: r.severity,
                status: r.status,
                title: &r.check.title,
                unknown: &c.unknown,
            }
        })
        .collect();
    let doc = Doc {
        checks,
        duration_ms: run.duration_ms,
        format_version: 1,
        started_at: run
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        summary: json!({
            "score": pct.map(|p| (p * 10.0).round() / 10.0),
            "passed": passed,
            "applicable": applicable,
            "by_status": by_status,
            "by_severity": by_severity,
            "gate": a.gate,
            "expired_waivers": a.expired_waivers,
        }),
        target: json!({
            "database": run.database,
            "server_version": run.server_version,
            "config": a.config_file,
            "tenancy": a.tenancy.as_ref().map(|(model, reason)| json!({"model": model, "reason": reason})),
            "activity": a.activity,
            "load_warnings": a.load_warnings,
        }),
        tool: json!({"name": "pg-integrity", "version": env!("CARGO_PKG_VERSION")}),
    };
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

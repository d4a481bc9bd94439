//! The `json` format: the stable machine contract of SPEC §6, `format_version: 1`.

use crate::gate::{score, Assessment};
use crate::model::{Severity, Status};
use serde_json::{json, Map, Value};

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
    let checks: Vec<Value> = a
        .checks
        .iter()
        .map(|c| {
            let r = &c.result;
            json!({
                "id": r.check.id,
                "section": r.check.section,
                "title": r.check.title,
                "severity": r.severity,
                "kind": r.check.kind,
                "status": r.status,
                "reason": r.reason,
                "objects_checked": r.objects.len(),
                "duration_ms": r.duration_ms,
                "findings": c.findings,
                "remediation": r.check.remediation,
                "fixed_by": r.check.fixed_by,
            })
        })
        .collect();
    let doc = json!({
        "format_version": 1,
        "tool": {"name": "pg-integrity", "version": env!("CARGO_PKG_VERSION")},
        "target": {"database": run.database, "server_version": run.server_version},
        "started_at": run.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "duration_ms": run.duration_ms,
        "summary": {
            "score": pct.map(|p| (p * 10.0).round() / 10.0),
            "passed": passed,
            "applicable": applicable,
            "by_status": by_status,
            "by_severity": by_severity,
            "gate": a.gate,
            "expired_waivers": a.expired_waivers,
        },
        "checks": checks,
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

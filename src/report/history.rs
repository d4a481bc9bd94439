//! `--history DIR`: earlier audits, read back from the JSON reports kept in DIR, as
//! points of a trend (the HTML report draws it). Each point is one audit: when it
//! ran, on which database, its score, and its findings per severity and per section.
//! Waived findings are not counted (they are accepted); baseline ones are (they are
//! still there).

use crate::audit::gate::{score, Assessment, TrendPoint};
use crate::model::Severity;
use serde_json::Value;
use std::collections::BTreeMap;

impl TrendPoint {
    /// The point of this audit.
    pub fn of(a: &Assessment) -> TrendPoint {
        let mut p = TrendPoint {
            started_at: a.run.started_at.to_rfc3339(),
            database: a.run.database.clone(),
            score: score(&a.run.results).2,
            by_severity: [0; 4],
            by_section: BTreeMap::new(),
        };
        for c in &a.checks {
            let n = c.findings.iter().filter(|f| !f.waived).count();
            p.add(c.result.severity, &c.result.check.section, n);
        }
        p
    }

    /// The point of an earlier JSON report (`format_version` 1); `None` when `doc` is
    /// not one.
    pub fn from_json(doc: &Value) -> Option<TrendPoint> {
        if doc["format_version"] != 1 || !doc["checks"].is_array() {
            return None;
        }
        let mut p = TrendPoint {
            started_at: doc["started_at"].as_str()?.to_string(),
            database: doc["target"]["database"].as_str().unwrap_or("").to_string(),
            score: doc["summary"]["score"].as_f64(),
            by_severity: [0; 4],
            by_section: BTreeMap::new(),
        };
        for c in doc["checks"].as_array()? {
            let sev = Severity::parse(c["severity"].as_str()?)?;
            let n = c["findings"]
                .as_array()
                .map_or(0, |fs| fs.iter().filter(|f| f["waived"] != true).count());
            p.add(sev, c["section"].as_str()?, n);
        }
        Some(p)
    }

    fn add(&mut self, sev: Severity, section: &str, n: usize) {
        if let Some(i) = Severity::ALL.iter().position(|s| *s == sev) {
            self.by_severity[i] += n;
        }
        *self.by_section.entry(section.to_string()).or_default() += n;
    }

    pub fn findings(&self) -> usize {
        self.by_severity.iter().sum()
    }
}

/// The earlier audits of `dir`: every `*.json` file in it that is a pg-integrity
/// JSON report, oldest first; other files are left alone. A missing directory is no
/// history.
pub fn read_dir(dir: &std::path::Path) -> Result<Vec<TrendPoint>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(format!("cannot read --history {}: {e}", dir.display())),
    };
    let mut points = vec![];
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if let Some(p) = serde_json::from_str::<Value>(&text)
            .ok()
            .as_ref()
            .and_then(TrendPoint::from_json)
        {
            points.push(p);
        }
    }
    points.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    Ok(points)
}

/// The file name this audit's JSON report gets in the history directory.
pub fn file_name(a: &Assessment) -> String {
    format!(
        "pg-integrity-{}.json",
        a.run.started_at.format("%Y%m%dT%H%M%S%.3fZ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_report_is_a_point_and_other_json_is_not() {
        let doc = serde_json::json!({
            "format_version": 1,
            "started_at": "2026-01-02T03:04:05Z",
            "target": {"database": "tickets"},
            "summary": {"score": 50.0},
            "checks": [
                {"severity": "high", "section": "rls", "findings": [
                    {"object": "a", "waived": false}, {"object": "b", "waived": true}]},
                {"severity": "low", "section": "schema", "findings": [{"object": "c", "waived": false}]},
            ],
        });
        let p = TrendPoint::from_json(&doc).unwrap();
        assert_eq!(p.score, Some(50.0));
        assert_eq!(p.by_severity, [0, 1, 0, 1]);
        assert_eq!(p.by_section["rls"], 1);
        assert_eq!(p.findings(), 2);
        assert!(TrendPoint::from_json(&serde_json::json!({"findings": []})).is_none());
    }
}

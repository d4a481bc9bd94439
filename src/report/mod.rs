//! Rendering an assessed audit. Every renderer writes a `String`; only the CLI
//! decides where it goes (stdout or `--output FORMAT:PATH`).

pub mod json;
pub mod table;

use crate::gate::{Assessed, Assessment};
use crate::model::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Json,
    Sarif,
    Junit,
    Github,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        <Format as clap::ValueEnum>::from_str(s, true).ok()
    }
}

pub fn render(format: Format, a: &Assessment, width: Option<u16>) -> Result<String, String> {
    match format {
        Format::Table => Ok(table::render(a, width)),
        Format::Json => Ok(json::render(a)),
        other => Err(format!(
            "the {} format is not available yet",
            <Format as clap::ValueEnum>::to_possible_value(&other)
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
        )),
    }
}

/// One line for a check: what it found, shortened for long lists.
pub fn summary_evidence(c: &Assessed, max_items: usize) -> String {
    let r = &c.result;
    match r.status {
        Status::Skipped | Status::Error => r.reason.clone().unwrap_or_default(),
        Status::Manual => r
            .check
            .guidance
            .as_deref()
            .unwrap_or(&r.check.description)
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        Status::NotApplicable => "nothing to examine".into(),
        Status::Pass => {
            let n = r.objects.len();
            if n == 1 {
                r.objects[0].evidence.clone()
            } else {
                format!("{n} objects ok")
            }
        }
        Status::Partial | Status::Fail => {
            let mut parts: Vec<String> = c
                .findings
                .iter()
                .take(max_items)
                .map(|f| {
                    let mark = if f.waived {
                        " [waived]"
                    } else if f.baseline {
                        " [baseline]"
                    } else {
                        ""
                    };
                    if f.evidence.is_empty() {
                        format!("{}{mark}", f.object)
                    } else {
                        format!("{}{mark}", f.evidence)
                    }
                })
                .collect();
            let more = c.findings.len().saturating_sub(max_items);
            if more > 0 {
                parts.push(format!("and {more} more"));
            }
            let ok = r.objects.len() - c.findings.len();
            format!("{} ({}/{} ok)", parts.join("; "), ok, r.objects.len())
        }
    }
}

//! The `table` format: one comfy-table per section, statuses coloured, then the
//! score and, last, the gate verdict.

use super::summary_evidence;
use crate::audit::gate::{score, Assessment};
use crate::checks::catalog::section_title;
use crate::model::Status;
use colored::Colorize;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, ContentArrangement, Table};

/// A check as the tables name it: its title, with its id dimmed below.
pub fn check_cell(check: &crate::checks::catalog::Check) -> Cell {
    Cell::new(format!("{}\n{}", check.title, check.id.dimmed()))
}

pub fn status_label(s: Status) -> String {
    let text = s.as_str().to_uppercase();
    match s {
        Status::Pass => text.green().to_string(),
        Status::Partial => text.yellow().to_string(),
        Status::Fail | Status::Error => text.red().bold().to_string(),
        Status::Skipped | Status::NotApplicable | Status::Manual => text.dimmed().to_string(),
    }
}

pub fn render(a: &Assessment, width: Option<u16>) -> String {
    let mut out = String::new();
    let title = match &a.service {
        Some(s) => format!("pg-integrity audit of {s} ({})", a.run.database),
        None => format!("pg-integrity audit of {}", a.run.database),
    };
    out.push_str(&format!("{}\n", title.bold()));
    out.push_str(&format!(
        "configuration: {}\n",
        a.config_file.as_deref().unwrap_or("built-in defaults")
    ));
    if let Some((model, reason)) = &a.tenancy {
        out.push_str(&format!("tenancy model: {model} ({reason})\n"));
    }
    for line in &a.activity {
        out.push_str(&format!("{line}\n"));
    }
    for w in &a.load_warnings {
        out.push_str(&format!("{} {w}\n", "schema file warning:".yellow()));
    }
    let mut sections: Vec<&str> = vec![];
    for c in &a.checks {
        if !sections.contains(&c.result.check.section.as_str()) {
            sections.push(&c.result.check.section);
        }
    }
    for section in sections {
        let rows: Vec<_> = a
            .checks
            .iter()
            .filter(|c| c.result.check.section == section)
            .collect();
        let applicable = rows
            .iter()
            .filter(|c| c.result.status.is_applicable())
            .count();
        let passed = rows
            .iter()
            .filter(|c| c.result.status == Status::Pass)
            .count();
        out.push_str(&format!(
            "\n{} ({passed}/{applicable})\n",
            section_title(section).bold()
        ));
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(vec!["Check", "Status", "Severity", "Evidence"]);
        if let Some(w) = width {
            t.set_width(w);
        }
        for c in rows {
            let r = &c.result;
            t.add_row(vec![
                check_cell(&r.check),
                Cell::new(status_label(r.status)),
                Cell::new(r.severity.as_str()),
                Cell::new(summary_evidence(c, a.findings_shown())),
            ]);
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    for e in &a.expired_waivers {
        out.push_str(&format!("\n{} {e}\n", "warning:".yellow().bold()));
    }
    let (passed, applicable, pct) = score(&a.run.results);
    out.push_str(&format!(
        "\nScore: {} ({passed}/{applicable} applicable checks)\n",
        pct.map_or("n/a".to_string(), |p| format!("{p:.0}%")).bold()
    ));
    if a.gate.passed {
        out.push_str(&format!(
            "{} (fail-on {})\n",
            "Gate: PASS".green().bold(),
            a.gate.fail_on
        ));
    } else {
        out.push_str(&format!(
            "{} (fail-on {})\n",
            "Gate: FAIL".red().bold(),
            a.gate.fail_on
        ));
        for r in &a.gate.reasons {
            out.push_str(&format!("  - {r}\n"));
        }
    }
    out
}

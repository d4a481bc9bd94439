//! Two audits of one database compared (`demo`, and any before → after): the score
//! and gate of each, then only what changed — the checks whose status or number of
//! findings moved — and what still needs work, most severe first.

use super::{short, summary_evidence};
use crate::audit::gate::{score, Assessed, Assessment};
use crate::model::Status;
use colored::Colorize;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, ContentArrangement, Table};
use std::fmt::Write;

/// `width`: the table's width (None: the terminal's).
pub fn render(before: &Assessment, after: &Assessment, width: Option<u16>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nBefore: {}", verdict(before));
    let _ = writeln!(out, "After:  {}", verdict(after));
    let (pb, ab, b) = score(&before.run.results);
    let (pa, aa, a) = score(&after.run.results);
    if let (Some(b), Some(a)) = (b, a) {
        let _ = writeln!(
            out,
            "Score:  {b:.0}% ({pb}/{ab}) → {a:.0}% ({pa}/{aa}), {:+.0} points",
            a - b
        );
    }

    let mut changed: Vec<(&Assessed, Option<&Assessed>)> = after
        .checks
        .iter()
        .map(|c| {
            let was = before
                .checks
                .iter()
                .find(|b| b.result.check.id == c.result.check.id);
            (c, was)
        })
        .filter(|(c, was)| match was {
            Some(b) => label(b) != label(c),
            None => true,
        })
        .collect();
    changed.sort_by_key(|(c, _)| std::cmp::Reverse(c.result.severity));
    let fixed = changed
        .iter()
        .filter(|(c, was)| c.result.status == Status::Pass && was.is_some_and(needs_work))
        .count();
    let _ = writeln!(
        out,
        "\n{} ({} checks; {fixed} now pass)",
        "What changed".bold(),
        changed.len()
    );
    if changed.is_empty() {
        out.push_str("nothing: every check reads as before\n");
    } else {
        let mut t = table(width, &["Check", "Severity", "Before", "After"]);
        for (c, was) in &changed {
            t.add_row(vec![
                super::table::check_cell(&c.result.check),
                Cell::new(c.result.severity.as_str()),
                Cell::new(was.map_or("(not run)".to_string(), label)),
                Cell::new(label(c)),
            ]);
        }
        let _ = writeln!(out, "{t}");
    }

    let mut left: Vec<&Assessed> = after.checks.iter().filter(|c| needs_work(c)).collect();
    left.sort_by_key(|c| std::cmp::Reverse(c.result.severity));
    let _ = writeln!(out, "\n{} ({} checks)", "Still to do".bold(), left.len());
    if left.is_empty() {
        out.push_str("nothing: every applicable check passes\n");
    } else {
        let mut t = table(width, &["Check", "Severity", "Status", "Evidence"]);
        for c in left {
            t.add_row(vec![
                super::table::check_cell(&c.result.check),
                Cell::new(c.result.severity.as_str()),
                Cell::new(super::table::status_label(c.result.status)),
                Cell::new(short(&summary_evidence(c, 1))),
            ]);
        }
        let _ = writeln!(out, "{t}");
    }
    out
}

fn table(width: Option<u16>, header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    if let Some(w) = width {
        t.set_width(w);
    }
    t
}

/// "score 56% (22/39), gate FAIL (fail-on high)".
fn verdict(a: &Assessment) -> String {
    let (passed, applicable, pct) = score(&a.run.results);
    format!(
        "score {} ({passed}/{applicable} applicable checks), gate {} (fail-on {})",
        pct.map_or("n/a".to_string(), |p| format!("{p:.0}%")),
        if a.gate.passed { "PASS" } else { "FAIL" },
        a.gate.fail_on
    )
}

fn needs_work(c: &Assessed) -> bool {
    c.result.status.is_failing() || c.result.status == Status::Error
}

/// A check's state in one word or two: `pass`, `partial: 3 findings`, `skipped`.
fn label(c: &Assessed) -> String {
    let s = c.result.status.as_str();
    match c.findings.len() {
        0 => s.to_string(),
        1 => format!("{s}: 1 finding"),
        n => format!("{s}: {n} findings"),
    }
}

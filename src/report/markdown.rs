//! The `markdown` format: the layout of the hand-written reference audit
//! (`reference/06-database-integrity.md`) — title, service, date, pass rate, the
//! summary by severity, one table per section, strengths, and the remediation
//! priority by severity. Deterministic: no durations, nothing unordered.

use super::{by_section, disposition, tally};
use crate::audit::gate::{score, Assessed, Assessment};
use crate::checks::catalog::section_title;
use crate::model::{Kind, Severity, Status};
use std::fmt::Write;

// Objects named in one evidence cell before "and N more": `--findings` (default 3;
// `all`: every one), from `Assessment::findings_shown`.

pub fn render(a: &Assessment) -> String {
    let mut out = String::new();
    let service = a.service.as_deref().unwrap_or(&a.run.database);
    let (passed, applicable, pct) = score(&a.run.results);
    let _ = writeln!(out, "# {service} - Database Integrity Audit\n");
    let _ = writeln!(out, "**Service:** {service}  ");
    let _ = writeln!(
        out,
        "**Database:** {} (PostgreSQL {})  ",
        a.run.database, a.run.server_version
    );
    let _ = writeln!(out, "**Date:** {}  ", a.run.started_at.format("%Y-%m-%d"));
    let _ = writeln!(out, "**Auditor:** pg-integrity  ");
    let _ = writeln!(
        out,
        "**Configuration:** {}  ",
        a.config_file
            .as_deref()
            .map_or("built-in defaults".to_string(), |f| format!("`{f}`"))
    );
    if let Some((model, reason)) = &a.tenancy {
        let _ = writeln!(out, "**Tenancy model:** {model} ({})  ", inline(reason));
    }
    if !a.activity.is_empty() {
        let _ = writeln!(
            out,
            "**What the audit did:** {}  ",
            inline(&a.activity.join("; "))
        );
    }
    for w in &a.load_warnings {
        let _ = writeln!(out, "**Schema file warning:** {}  ", inline(w));
    }
    let _ = writeln!(
        out,
        "**Pass Rate:** {} ({passed}/{applicable} applicable checks)  ",
        pct.map_or("n/a".to_string(), |p| format!("{p:.0}%"))
    );
    let _ = writeln!(
        out,
        "**Gate:** {} (fail-on {})",
        if a.gate.passed { "PASS" } else { "FAIL" },
        a.gate.fail_on
    );
    for r in &a.gate.reasons {
        let _ = writeln!(out, "- {}", inline(r));
    }
    for e in &a.expired_waivers {
        let _ = writeln!(out, "\n> **Warning:** {}", inline(e));
    }

    out.push_str("\n---\n\n## Summary\n\n");
    out.push_str("| Severity | Count | Issues |\n|----------|-------|--------|\n");
    for sev in Severity::ALL {
        let issues: Vec<String> = a
            .checks
            .iter()
            .filter(|c| c.result.severity == sev && is_issue(c))
            .map(|c| {
                let mut t = cell(&c.result.check.title);
                if let Some(d) = settled(c) {
                    let _ = write!(t, " ({d})");
                }
                t
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            sev.as_str().to_uppercase(),
            issues.len(),
            if issues.is_empty() {
                "None".to_string()
            } else {
                issues.join(", ")
            }
        );
    }

    for (section, checks) in by_section(a) {
        let (passed, applicable) = tally(&checks);
        let _ = writeln!(
            out,
            "\n---\n\n## {} ({passed}/{applicable})\n",
            section_title(section)
        );
        let (manual, automated): (Vec<&Assessed>, Vec<&Assessed>) = checks
            .into_iter()
            .partition(|c| c.result.check.kind == Kind::Manual);
        if !automated.is_empty() {
            out.push_str("| Check | Status | Evidence |\n|-------|--------|----------|\n");
            for c in &automated {
                let _ = writeln!(
                    out,
                    "| {} (`{}`) | {} | {} |",
                    cell(&c.result.check.title),
                    cell(&c.result.check.id),
                    status_label(c.result.status),
                    cell(&evidence(c, a.findings_shown()))
                );
            }
        }
        if !manual.is_empty() {
            if !automated.is_empty() {
                out.push('\n');
            }
            out.push_str("Manual review (outside the database):\n\n");
            for c in manual {
                manual_item(&mut out, c);
            }
        }
    }

    out.push_str("\n---\n\n## Strengths\n\n");
    let strengths: Vec<&Assessed> = a
        .checks
        .iter()
        .filter(|c| c.result.status == Status::Pass)
        .collect();
    if strengths.is_empty() {
        out.push_str("- None yet\n");
    }
    for c in strengths {
        let r = &c.result;
        let short = match r.objects.as_slice() {
            [one] if !one.evidence.is_empty() => inline(&one.evidence),
            [one] => format!("`{}`", one.object),
            all => format!("all {} objects ok", all.len()),
        };
        let _ = writeln!(out, "- {} — {short}", inline(&r.check.title));
    }

    out.push_str("\n---\n\n## Remediation Priority\n");
    let groups: [(&str, &[Severity]); 3] = [
        (
            "CRITICAL / HIGH (This Week)",
            &[Severity::Critical, Severity::High],
        ),
        ("MEDIUM (This Month)", &[Severity::Medium]),
        ("LOW (Backlog)", &[Severity::Low]),
    ];
    for (heading, severities) in groups {
        let _ = writeln!(out, "\n### {heading}\n");
        // Within a group the more severe first, then report order.
        let items: Vec<&Assessed> = severities
            .iter()
            .flat_map(|sev| {
                a.checks
                    .iter()
                    .filter(move |c| c.result.severity == *sev && needs_remediation(c))
            })
            .collect();
        if items.is_empty() {
            out.push_str("None.\n");
        }
        for (i, c) in items.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            remediation_item(&mut out, i + 1, c, a.findings_shown());
        }
    }
    out
}

/// `- [ ] title — guidance`; guidance of several lines (usually numbered steps)
/// goes under the item, indented, after the check's one-line description.
fn manual_item(out: &mut String, c: &Assessed) {
    let check = &c.result.check;
    let guidance = check.guidance.as_deref().unwrap_or("").trim();
    let lines: Vec<&str> = guidance.lines().filter(|l| !l.trim().is_empty()).collect();
    let head = match lines.as_slice() {
        [] => check.description.as_str(),
        [one] => one,
        _ => check.description.as_str(),
    };
    let _ = writeln!(
        out,
        "- [ ] {} (`{}`) — {}",
        inline(&check.title),
        check.id,
        inline(head)
    );
    if lines.len() > 1 {
        for line in lines {
            let _ = writeln!(out, "  {}", inline(line));
        }
    }
}

fn remediation_item(out: &mut String, n: usize, c: &Assessed, max: usize) {
    let r = &c.result;
    let open: Vec<_> = c.findings.iter().filter(|f| !f.waived).collect();
    let mut objects: Vec<String> = open
        .iter()
        .take(max)
        .map(|f| match disposition(f) {
            Some(d) => format!("`{}` ({d})", f.object),
            None => format!("`{}`", f.object),
        })
        .collect();
    push_more(&mut objects, open.len(), max);
    let _ = writeln!(
        out,
        "{n}. **{}** (`{}`, {}): {}",
        inline(&r.check.title),
        r.check.id,
        r.severity,
        objects.join(", ")
    );
    // Paragraphs of the item are indented under it, so that a code block and the
    // "Fixed by" line render inside the list item.
    let indent = " ".repeat(format!("{n}. ").len());
    let text = r.check.remediation.trim();
    if looks_like_sql(text) {
        let _ = writeln!(out, "\n{indent}```sql");
        for line in text.lines() {
            if line.trim().is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "{indent}{line}");
            }
        }
        let _ = writeln!(out, "{indent}```");
    } else if !text.is_empty() {
        let _ = writeln!(out, "\n{indent}{}", inline(text));
    }
    if !r.check.fixed_by.is_empty() {
        let names: Vec<String> = r.check.fixed_by.iter().map(|m| format!("`{m}`")).collect();
        let _ = writeln!(out, "\n{indent}Fixed by: {}", names.join(", "));
    } else if r.check.fix.is_some() {
        // No shipped migration fixes it here: `fix` writes this database's migration.
        let _ = writeln!(
            out,
            "\n{indent}Fix: `pg-integrity fix --only {}`",
            r.check.id
        );
    }
}

/// A check the summary lists as an issue: it did not pass (partial, fail, error).
fn is_issue(c: &Assessed) -> bool {
    c.result.status.is_failing() || c.result.status == Status::Error
}

/// A failing check whose findings are all settled by waivers or the baseline.
fn settled(c: &Assessed) -> Option<&'static str> {
    if !c.result.status.is_failing() || c.findings.is_empty() {
        return None;
    }
    if c.findings.iter().all(|f| f.waived) {
        Some("waived")
    } else if c.findings.iter().all(|f| !f.counts()) {
        Some("baseline")
    } else {
        None
    }
}

/// Failing checks with at least one finding that is not waived. Baseline findings
/// are known debt: they still need fixing, so they stay in the list.
fn needs_remediation(c: &Assessed) -> bool {
    c.result.status.is_failing() && c.findings.iter().any(|f| !f.waived)
}

pub fn status_label(s: Status) -> &'static str {
    match s {
        Status::Pass => "PASS",
        Status::Partial => "PARTIAL",
        Status::Fail => "FAIL",
        Status::Error => "ERROR",
        Status::Skipped => "SKIPPED",
        Status::NotApplicable => "N/A",
        Status::Manual => "MANUAL",
    }
}

/// The evidence cell: the first few objects, then "and N more".
fn evidence(c: &Assessed, max: usize) -> String {
    let r = &c.result;
    match r.status {
        Status::Skipped | Status::Error => r.reason.clone().unwrap_or_default(),
        Status::NotApplicable => "nothing to examine".into(),
        Status::Manual => r.check.description.clone(),
        // One object: what it found; more: which (a passing row needs no detail).
        Status::Pass if !c.unknown.is_empty() => {
            let known = r.objects.len() - c.unknown.len();
            let unknown = super::unknown_note(c).unwrap_or_default();
            format!("{known}/{known} ok; {}", with_object("", &unknown))
        }
        Status::Pass => match r.objects.as_slice() {
            [one] => with_object(&one.object, &one.evidence),
            all => {
                let mut parts: Vec<String> = all
                    .iter()
                    .take(max)
                    .map(|o| format!("`{}`", o.object))
                    .collect();
                push_more(&mut parts, all.len(), max);
                format!("{}/{} ok: {}", all.len(), all.len(), parts.join(", "))
            }
        },
        Status::Partial | Status::Fail => {
            let mut parts: Vec<String> = c
                .findings
                .iter()
                .take(max)
                .map(|f| {
                    let mut s = with_object(&f.object, &f.evidence);
                    if let Some(d) = disposition(f) {
                        let _ = write!(s, " **[{d}]**");
                    }
                    s
                })
                .collect();
            push_more(&mut parts, c.findings.len(), max);
            if let Some(u) = super::unknown_note(c) {
                parts.push(u);
            }
            let known = r.objects.len() - c.unknown.len();
            let ok = known - c.findings.len();
            format!("{ok}/{known} ok; {}", parts.join("; "))
        }
    }
}

/// The evidence with its object in code style, named once.
fn with_object(object: &str, evidence: &str) -> String {
    let evidence = &super::short(evidence);
    if object.is_empty() {
        return evidence.to_string();
    }
    let code = format!("`{object}`");
    if evidence.is_empty() {
        code
    } else if evidence.contains(object) {
        evidence.replacen(object, &code, 1)
    } else {
        format!("{code}: {evidence}")
    }
}

fn push_more(parts: &mut Vec<String>, total: usize, max: usize) {
    let more = total.saturating_sub(max);
    if more > 0 {
        parts.push(format!("and {more} more"));
    }
}

/// Text for one table cell: one line, `|` escaped (GitHub-flavoured Markdown
/// splits cells on it even inside code spans).
fn cell(s: &str) -> String {
    inline(s).replace('|', "\\|")
}

/// Text for one line: line breaks folded into spaces.
fn inline(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Remediation text that is SQL goes into a fenced `sql` block: it starts with a
/// statement and is either several lines or ends like a statement. One line of
/// SQL followed by prose ("...; then VALIDATE ...") stays prose.
pub(crate) fn looks_like_sql(text: &str) -> bool {
    let text = text.trim();
    starts_like_sql(text) && (text.contains('\n') || text.ends_with(';'))
}

fn starts_like_sql(text: &str) -> bool {
    const STARTS: [&str; 16] = [
        "ALTER ", "CREATE ", "DROP ", "UPDATE ", "INSERT ", "DELETE ", "SELECT ", "GRANT ",
        "REVOKE ", "SET ", "BEGIN", "WITH ", "COMMENT ", "REINDEX ", "VACUUM", "ANALYZE",
    ];
    let first = text.trim_start().to_ascii_uppercase();
    STARTS.iter().any(|s| first.starts_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_one_line_with_pipes_escaped() {
        assert_eq!(cell("a | b\nc"), "a \\| b c");
    }

    #[test]
    fn sql_is_recognised_case_insensitively() {
        assert!(looks_like_sql("alter role x set statement_timeout = '5s';"));
        assert!(looks_like_sql("  CREATE INDEX CONCURRENTLY i\n  ON t (c);"));
        assert!(!looks_like_sql(
            "ALTER TABLE t ADD ... NOT VALID; then VALIDATE it."
        ));
        assert!(!looks_like_sql("Add a foreign key"));
        assert!(!looks_like_sql("Settle it in the application"));
    }
}

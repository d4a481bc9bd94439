//! The `github` format: GitHub Actions workflow commands, which the runner turns
//! into annotations on the run and the pull request. GitHub shows only about ten
//! annotations of each kind per step, so findings are rolled up: one summary
//! annotation (the gate, the score, how many findings), then one per check with
//! findings that count against the gate (waived and baseline ones are left out),
//! listing its first findings, and one per errored check: `::error` for critical and
//! high, `::warning` for medium, `::notice` for low.

use super::{finding_text, short};
use crate::audit::gate::{score, Assessment};
use crate::model::{Severity, Status};
use std::fmt::Write;

/// Findings listed in one check's annotation before "and N more".
const LISTED: usize = 10;

pub fn render(a: &Assessment) -> String {
    let mut out = String::new();
    let (passed, applicable, pct) = score(&a.run.results);
    let counted: Vec<usize> = a
        .checks
        .iter()
        .map(|c| c.findings.iter().filter(|f| f.counts()).count())
        .collect();
    let total: usize = counted.iter().sum();
    let with = counted.iter().filter(|n| **n > 0).count();
    let _ = writeln!(
        out,
        "::{} title={}::{}",
        if a.gate.passed { "notice" } else { "error" },
        escape_property(&format!(
            "pg-integrity: gate {} (fail-on {})",
            if a.gate.passed { "passed" } else { "failed" },
            a.gate.fail_on
        )),
        escape_data(&format!(
            "{} on {}: score {} ({passed}/{applicable} checks pass); {total} new finding{} in {with} check{}{}",
            a.service.as_deref().unwrap_or("audit"),
            a.run.database,
            pct.map_or("n/a".into(), |p| format!("{p:.0}%")),
            if total == 1 { "" } else { "s" },
            if with == 1 { "" } else { "s" },
            if a.gate.reasons.is_empty() {
                String::new()
            } else {
                format!("\n{}", a.gate.reasons.join("\n"))
            }
        ))
    );
    for (c, n) in a.checks.iter().zip(counted) {
        let r = &c.result;
        let title = format!("{} {}", r.check.id, r.check.title);
        if r.status == Status::Error {
            let _ = writeln!(
                out,
                "::error title={}::{}",
                escape_property(&format!("{title} (errored)")),
                escape_data(&format!(
                    "{} errored: {}",
                    r.check.id,
                    r.reason.as_deref().unwrap_or("")
                ))
            );
            continue;
        }
        if n == 0 {
            continue;
        }
        let mut lines: Vec<String> = c
            .findings
            .iter()
            .filter(|f| f.counts())
            .take(LISTED)
            .map(|f| format!("- {}", short(&finding_text(&f.object, &f.evidence))))
            .collect();
        if n > LISTED {
            lines.push(format!(
                "and {} more (see the JSON or markdown report)",
                n - LISTED
            ));
        }
        let _ = writeln!(
            out,
            "::{} title={}::{}",
            command(r.severity),
            escape_property(&format!(
                "{title}: {n} finding{}",
                if n == 1 { "" } else { "s" }
            )),
            escape_data(&lines.join("\n"))
        );
    }
    out
}

fn command(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "notice",
    }
}

/// A command's message, as `escapeData` in GitHub's actions/toolkit escapes it.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A command's property value (`title=`), as `escapeProperty` in actions/toolkit
/// escapes it: the message escapes plus `:` and `,`, which end a property.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_the_actions_toolkit_does() {
        assert_eq!(escape_data("50% a:b,c\r\nd"), "50%25 a:b,c%0D%0Ad");
        assert_eq!(escape_property("50% a:b,c\nd"), "50%25 a%3Ab%2Cc%0Ad");
    }
}

//! The `github` format: GitHub Actions workflow commands, which the runner turns
//! into annotations on the run and the pull request. One line per finding that
//! counts against the gate (waived and baseline findings are left out) and one per
//! errored check: `::error` for critical and high, `::warning` for medium,
//! `::notice` for low.

use super::finding_text;
use crate::gate::Assessment;
use crate::model::{Severity, Status};
use std::fmt::Write;

pub fn render(a: &Assessment) -> String {
    let mut out = String::new();
    for c in &a.checks {
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
        for f in c.findings.iter().filter(|f| f.counts()) {
            let message = finding_text(&f.object, &f.evidence);
            let _ = writeln!(
                out,
                "::{} title={}::{}",
                command(r.severity),
                escape_property(&title),
                escape_data(&message)
            );
        }
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

//! The `junit` format: JUnit XML as GitLab (`artifacts:reports:junit`), Jenkins and
//! most CI dashboards read it. One `<testsuite>` per section, one `<testcase>` per
//! check: a partial or failed check is a `<failure>` (type = its severity) listing
//! its findings, an errored check an `<error>`, and skipped, not-applicable and
//! manual checks are `<skipped>`. A failing check whose findings are all waived or
//! in the baseline is `<skipped>` too: it does not fail the gate, so it should not
//! turn a dashboard red.

use super::{by_section, disposition, finding_text};
use crate::audit::gate::{Assessed, Assessment};
use crate::model::Status;
use std::fmt::Write;

pub fn render(a: &Assessment) -> String {
    let sections = by_section(a);
    let mut body = String::new();
    let mut total = Counts::default();
    for (section, checks) in &sections {
        let mut counts = Counts::default();
        let mut cases = String::new();
        for c in checks {
            testcase(&mut cases, section, c, &mut counts);
        }
        let _ = writeln!(
            body,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
            escape(section),
            counts.tests,
            counts.failures,
            counts.errors,
            counts.skipped,
            seconds(counts.ms)
        );
        body.push_str(&cases);
        body.push_str("  </testsuite>\n");
        total.add(&counts);
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"pg-integrity\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\" timestamp=\"{}\">",
        total.tests,
        total.failures,
        total.errors,
        total.skipped,
        // The sum of its suites, as consumers add them up: checks run concurrently
        // and batched ones share a statement's time, so the wall clock is less.
        seconds(total.ms),
        a.run.started_at.format("%Y-%m-%dT%H:%M:%S")
    );
    out.push_str(&body);
    out.push_str("</testsuites>\n");
    out
}

#[derive(Default)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
    ms: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.tests += o.tests;
        self.failures += o.failures;
        self.errors += o.errors;
        self.skipped += o.skipped;
        self.ms += o.ms;
    }
}

fn testcase(out: &mut String, section: &str, c: &Assessed, counts: &mut Counts) {
    let r = &c.result;
    counts.tests += 1;
    counts.ms += r.duration_ms;
    let _ = write!(
        out,
        "    <testcase classname=\"pg-integrity.{}\" name=\"{}\" time=\"{}\"",
        escape(section),
        escape(&format!("{}: {}", r.check.id, r.check.title)),
        seconds(r.duration_ms)
    );
    let open = c.findings.iter().filter(|f| f.counts()).count();
    let skipped = |out: &mut String, counts: &mut Counts, message: &str| {
        counts.skipped += 1;
        let _ = writeln!(
            out,
            ">\n      <skipped message=\"{}\"/>\n    </testcase>",
            escape(message)
        );
    };
    match r.status {
        Status::Pass => out.push_str("/>\n"),
        Status::Partial | Status::Fail if open == 0 => {
            let n = c.findings.len();
            skipped(
                out,
                counts,
                &format!(
                    "{} {n} finding{} waived or in the baseline",
                    if n == 1 { "its" } else { "all" },
                    if n == 1 { "" } else { "s" }
                ),
            )
        }
        Status::Partial | Status::Fail => {
            counts.failures += 1;
            let known = r.objects.len() - c.unknown.len();
            let ok = known - c.findings.len();
            let message = format!(
                "{} {}: {open} finding{} ({ok}/{known} ok)",
                r.severity,
                r.status,
                if open == 1 { "" } else { "s" },
            );
            let mut text = String::new();
            for f in &c.findings {
                text.push_str(&finding_text(&f.object, &f.evidence));
                if let Some(d) = disposition(f) {
                    let _ = write!(text, " [{d}]");
                }
                text.push('\n');
            }
            let remediation = r.check.remediation.trim();
            if !remediation.is_empty() {
                let _ = writeln!(text, "\nRemediation: {remediation}");
            }
            if !r.check.fixed_by.is_empty() {
                let _ = writeln!(text, "Fixed by: {}", r.check.fixed_by.join(", "));
            } else if r.check.fix.is_some() {
                let _ = writeln!(text, "Fix: pg-integrity fix --only {}", r.check.id);
            }
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                escape(&message),
                r.severity,
                escape_text(&text)
            );
        }
        Status::Error => {
            counts.errors += 1;
            let reason = r.reason.as_deref().unwrap_or("");
            let _ = writeln!(
                out,
                ">\n      <error message=\"{}\" type=\"error\">{}</error>\n    </testcase>",
                escape(reason),
                escape_text(reason)
            );
        }
        Status::Skipped => skipped(out, counts, r.reason.as_deref().unwrap_or("skipped")),
        Status::NotApplicable => skipped(out, counts, "not applicable: nothing to examine"),
        Status::Manual => {
            let guidance = r.check.guidance.as_deref().unwrap_or(&r.check.description);
            skipped(out, counts, &format!("manual review: {}", guidance.trim()))
        }
    }
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// XML text and attribute escaping. Five characters and the control characters
/// XML 1.0 cannot carry at all do not justify an XML-writer dependency; in an
/// attribute, line breaks and tabs are written as character references so that
/// attribute-value normalisation does not fold them into spaces.
pub fn escape(s: &str) -> String {
    escape_xml(s, true)
}

/// Escaping for element text, where line breaks and tabs stay as they are.
pub fn escape_text(s: &str) -> String {
    escape_xml(s, false)
}

fn escape_xml(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\n' | '\t' if !attribute => out.push(ch),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            // Not allowed anywhere in XML 1.0, not even as a reference.
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_control_characters() {
        assert_eq!(
            escape("a<b & \"c\" 'd'\u{1}\n"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;\u{FFFD}&#10;"
        );
        assert_eq!(escape_text("x\n\ty\r"), "x\n\ty&#13;");
    }

    #[test]
    fn seconds_have_three_decimals() {
        assert_eq!(seconds(0), "0.000");
        assert_eq!(seconds(12345), "12.345");
    }
}

//! Rendering an assessed audit. Every renderer writes a `String`; only the CLI
//! decides where it goes (stdout or `--output FORMAT:PATH`).

pub mod catalog;
pub mod compare;
pub mod github;
pub mod history;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod names;
pub mod sarif;
pub mod table;

use crate::audit::gate::{Assessed, Assessment, Finding};
pub use crate::model::finding_text;
use crate::model::Status;
pub(crate) use markdown::looks_like_sql;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Json,
    Sarif,
    Junit,
    Github,
    Html,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        <Format as clap::ValueEnum>::from_str(s, true).ok()
    }
}

/// Render `a` in `format`. `width` only matters to `table` (None: the terminal's).
pub fn render(format: Format, a: &Assessment, width: Option<u16>) -> Result<String, String> {
    Ok(match format {
        Format::Table => table::render(a, width),
        Format::Markdown => markdown::render(a),
        Format::Json => json::render(a),
        Format::Sarif => sarif::render(a),
        Format::Junit => junit::render(a),
        Format::Github => github::render(a),
        Format::Html => html::render(a),
    })
}

/// The checks of `a` grouped by section, sections in report order (the order the
/// runner returned the checks in, which is the catalog's).
pub fn by_section(a: &Assessment) -> Vec<(&str, Vec<&Assessed>)> {
    let mut out: Vec<(&str, Vec<&Assessed>)> = vec![];
    for c in &a.checks {
        let section = c.result.check.section.as_str();
        match out.iter_mut().find(|(s, _)| *s == section) {
            Some((_, v)) => v.push(c),
            None => out.push((section, vec![c])),
        }
    }
    out
}

/// (passed, applicable) among `checks`, as the score counts them.
pub fn tally(checks: &[&Assessed]) -> (usize, usize) {
    let applicable = checks
        .iter()
        .filter(|c| c.result.status.is_applicable())
        .count();
    let passed = checks
        .iter()
        .filter(|c| c.result.status == Status::Pass)
        .count();
    (passed, applicable)
}

/// How a finding is marked when it does not count against the gate.
pub fn disposition(f: &Finding) -> Option<&'static str> {
    if f.waived {
        Some("waived")
    } else if f.baseline {
        Some("baseline")
    } else {
        None
    }
}

/// Evidence in the human formats stays under this many characters (SPEC §3); the
/// JSON report keeps it whole.
pub const EVIDENCE_CHARS: usize = 300;

/// `evidence` cut to [`EVIDENCE_CHARS`] at a word boundary, with "…" where cut.
pub fn short(evidence: &str) -> std::borrow::Cow<'_, str> {
    if evidence.chars().count() < EVIDENCE_CHARS {
        return evidence.into();
    }
    let cut: String = evidence.chars().take(EVIDENCE_CHARS - 1).collect();
    // At the last separator; failing one in the second half, at the last space
    // anywhere; a word is cut only when the text has no space at all.
    let whole_word = evidence[cut.len()..].starts_with([' ', ',', ';']);
    let at = if whole_word {
        cut.len()
    } else {
        cut.rfind([' ', ',', ';'])
            .filter(|&i| i > EVIDENCE_CHARS / 2)
            .or_else(|| cut.rfind(' '))
            .unwrap_or(cut.len())
    };
    format!("{}…", cut[..at].trim_end_matches([' ', ',', ';'])).into()
}

/// The objects of a check nobody could judge, in one clause: "2 unknown (e.g. x:
/// why)"; `None` when there are none.
pub fn unknown_note(c: &Assessed) -> Option<String> {
    let first = c.unknown.first()?;
    Some(format!(
        "{} unknown (e.g. {})",
        c.unknown.len(),
        short(&finding_text(&first.object, &first.reason))
    ))
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
            let n = r.objects.len() - c.unknown.len();
            let text = if n == 1 && c.unknown.is_empty() {
                short(&r.objects[0].evidence).into_owned()
            } else {
                format!("{n} objects ok")
            };
            match unknown_note(c) {
                Some(u) => format!("{text}; {u}"),
                None => text,
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
                        format!("{}{mark}", short(&f.evidence))
                    }
                })
                .collect();
            let more = c.findings.len().saturating_sub(max_items);
            if more > 0 {
                parts.push(format!("and {more} more"));
            }
            let known = r.objects.len() - c.unknown.len();
            let ok = known - c.findings.len();
            match unknown_note(c) {
                Some(u) => format!("{} ({ok}/{known} ok; {u})", parts.join("; ")),
                None => format!("{} ({ok}/{known} ok)", parts.join("; ")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_evidence_ends_at_a_whole_word() {
        let long = format!("{} {}", "a".repeat(200), "word ".repeat(60));
        for text in [
            long.clone(),
            format!("{}{}", "x".repeat(100), " ".to_string() + &"y".repeat(400)),
            "word, ".repeat(80),
        ] {
            let s = short(&text);
            assert!(s.chars().count() <= EVIDENCE_CHARS, "{s}");
            let kept = s.trim_end_matches('…');
            assert!(text.starts_with(kept), "{s}");
            let next = text[kept.len()..].chars().next();
            assert!(
                matches!(next, Some(' ' | ',' | ';')),
                "cut mid-word: {s:?} then {next:?}"
            );
        }
        // No space at all: cut where it must be.
        assert_eq!(short(&"z".repeat(400)).chars().count(), EVIDENCE_CHARS);
        assert_eq!(short("short one"), "short one");
    }
}

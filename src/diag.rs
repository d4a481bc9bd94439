//! Diagnostics that point into a file: a list of problems, each with a span, rendered
//! together by miette so a user sees every mistake of a load at once.

use miette::{Diagnostic, NamedSource, SourceSpan};
use std::sync::Arc;

/// One problem in one file, with the place it was found.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct Problem {
    pub message: String,
    #[source_code]
    pub src: NamedSource<Arc<str>>,
    #[label("{label}")]
    pub span: Option<SourceSpan>,
    pub label: String,
    #[help]
    pub help: Option<String>,
}

/// Every problem found while loading a set of files.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{summary}")]
#[diagnostic(code(pg_integrity::invalid_input))]
pub struct Problems {
    pub summary: String,
    #[related]
    pub problems: Vec<Problem>,
}

/// A file's name and text, shared by the problems found in it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }

    pub fn problem(
        &self,
        message: impl Into<String>,
        span: Option<std::ops::Range<usize>>,
        label: impl Into<String>,
        help: Option<String>,
    ) -> Problem {
        Problem {
            message: message.into(),
            src: NamedSource::new(self.name.clone(), self.text.clone()),
            span: span.map(|r| SourceSpan::from(r.start..r.end.max(r.start))),
            label: label.into(),
            help,
        }
    }

    /// 1-based line and column of a byte offset, for one-line messages.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

impl Problems {
    pub fn new(problems: Vec<Problem>) -> Self {
        let summary = match problems.len() {
            1 => problems[0].message.clone(),
            n => format!("{n} problems found"),
        };
        Problems { summary, problems }
    }
}

/// "did you mean" for an unknown name.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// A diagnostic rendered as miette prints it, without colour (for tests and logs).
pub fn render_plain(diagnostic: &dyn miette::Diagnostic) -> String {
    let mut out = String::new();
    let _ = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .render_report(&mut out, diagnostic);
    out
}

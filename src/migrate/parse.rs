//! SQL read with a PostgreSQL parser: statement boundaries and the syntax tree that
//! `locks` (what a statement locks), `preflight` (what a migration adds), `lint` (unsafe
//! forms) and `checks validate` read. A statement the parser cannot read is kept whole,
//! with the parser's error, and is never guessed at.
//!
//! Parser: squawk's crates (`squawk-syntax` over `squawk-parser`, with `squawk-linter`'s
//! migration-safety rules in `lint`), chosen in issue 16's spike over `pg_query`:
//! - `pg_query` is libpg_query, the server's own grammar: every statement PostgreSQL
//!   accepts parses. Its build compiles the vendored C sources and runs bindgen, which
//!   needs libclang: README's prerequisites and `.ci/run` would have to install
//!   `libclang-dev` and `clang`, and every clean CI run compiles the C parser.
//! - squawk's crates are pure Rust (cargo alone builds them), error-tolerant (a lossless
//!   rowan tree, so a file with one bad statement still gives the others and the exact
//!   place of the error), parse PL/pgSQL bodies too (what a `DO` block runs), and
//!   `squawk-linter` carries the migration-safety rules (require-concurrent-index-creation,
//!   constraint-missing-not-valid, adding-not-nullable-field, changing-column-type, …)
//!   that `--from` flagging reuses instead of rewriting them.
//!
//! The cost of squawk: its grammar is a re-implementation, so a statement it does not know
//! yet is a parse error where PostgreSQL would accept it. That statement is reported as a
//! parse error ("lock unknown" in `plan`), never guessed; a transactional migration still
//! applies (the server parses it), a no-transaction one is refused (its statements could
//! not be told apart safely). squawk 2.68 needs rustc 1.94, hence this crate's
//! rust-version; 2.69 and later need 1.99, hence the exact pin in Cargo.toml.

use miette::{Diagnostic, NamedSource, SourceSpan};
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SourceFile, SyntaxKind, SyntaxNode};

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Its text: leading comments and whitespace, and the closing `;`, left out.
    pub sql: String,
    /// Byte offset of `sql` in the script.
    pub start: usize,
    /// The parser's first error inside it, when it could not be read.
    pub error: Option<SyntaxError>,
}

/// A parse error: the parser's message and where (byte offsets in the parsed text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub start: usize,
    pub len: usize,
}

impl SyntaxError {
    /// `line:column` (1-based) of the error in `text`.
    pub fn position(&self, text: &str) -> (usize, usize) {
        let before = &text[..self.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// A syntax error as a miette diagnostic, pointing into the source it was found in.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{what}: syntax error: {message}")]
#[diagnostic(code(pg_integrity::sql::syntax))]
pub struct SyntaxDiagnostic {
    pub what: String,
    pub message: String,
    #[source_code]
    pub src: NamedSource<String>,
    #[label("{message}")]
    pub at: SourceSpan,
    #[help]
    pub help: Option<String>,
}

impl SyntaxDiagnostic {
    pub fn new(what: &str, name: &str, text: &str, e: &SyntaxError, help: Option<String>) -> Self {
        SyntaxDiagnostic {
            what: what.to_string(),
            message: e.message.clone(),
            src: NamedSource::new(name, text.to_string()),
            at: (e.start.min(text.len()), e.len).into(),
            help,
        }
    }
}

fn error_of(e: &squawk_syntax::syntax_error::SyntaxError) -> SyntaxError {
    let r = e.range();
    SyntaxError {
        message: e.message().to_string(),
        start: usize::from(r.start()),
        len: usize::from(r.len()),
    }
}

/// Every syntax error of `sql` (empty: it parses).
pub fn errors(sql: &str) -> Vec<SyntaxError> {
    SourceFile::parse(sql)
        .errors()
        .iter()
        .map(error_of)
        .collect()
}

fn is_trivia(kind: SyntaxKind) -> bool {
    matches!(
        kind,
        SyntaxKind::WHITESPACE | SyntaxKind::COMMENT | SyntaxKind::SEMICOLON
    )
}

/// The statements of a script, in order, as the parser delimits them. Text the parser
/// could not make a statement of is kept (as a statement with its error), so that
/// nothing of the script is dropped.
pub fn statements(sql: &str) -> Vec<Statement> {
    let parse = SourceFile::parse(sql);
    let errors: Vec<SyntaxError> = parse.errors().iter().map(error_of).collect();
    let root = parse.syntax_node();
    // Ranges of top-level pieces: statements, and runs of anything else that is not
    // whitespace, a comment or a semicolon.
    let mut pieces: Vec<(usize, usize)> = vec![];
    let mut loose: Option<(usize, usize)> = None;
    for child in root.children_with_tokens() {
        let r = child.text_range();
        let (s, e) = (usize::from(r.start()), usize::from(r.end()));
        let is_stmt = child
            .as_node()
            .is_some_and(|n| ast::Stmt::can_cast(n.kind()));
        if is_stmt {
            if let Some(l) = loose.take() {
                pieces.push(l);
            }
            pieces.push((s, e));
        } else if !is_trivia(child.kind()) {
            loose = Some(match loose {
                Some((ls, _)) => (ls, e),
                None => (s, e),
            });
        } else if child.kind() == SyntaxKind::SEMICOLON {
            if let Some(l) = loose.take() {
                pieces.push(l);
            }
        }
    }
    if let Some(l) = loose.take() {
        pieces.push(l);
    }
    pieces
        .into_iter()
        .filter_map(|(s, e)| {
            let (start, text) = trim(sql, s, e)?;
            let end = start + text.len();
            let error = errors
                .iter()
                .find(|x| x.start >= s && x.start <= e.max(end))
                .cloned();
            Some(Statement {
                sql: text.to_string(),
                start,
                error,
            })
        })
        .collect()
}

/// `sql[s..e]` without leading whitespace and comments and the trailing `;`, with its
/// new start; None when nothing is left.
fn trim(sql: &str, s: usize, e: usize) -> Option<(usize, &str)> {
    let mut start = s;
    loop {
        let rest = &sql[start..e];
        let t = rest.trim_start();
        start += rest.len() - t.len();
        if t.starts_with("--") {
            start += t.find('\n').map_or(t.len(), |i| i + 1);
        } else if t.starts_with("/*") {
            start += t.find("*/").map_or(t.len(), |i| i + 2);
        } else {
            break;
        }
    }
    let text = sql[start..e].trim_end();
    let text = text.strip_suffix(';').unwrap_or(text).trim_end();
    (!text.is_empty()).then_some((start, text))
}

/// The statements' texts (see [`statements`]).
pub fn split(sql: &str) -> Vec<String> {
    statements(sql).into_iter().map(|s| s.sql).collect()
}

/// The syntax trees of the statements the parser could read, in order (see
/// [`statements`]); text it could not read is left out.
pub fn trees(sql: &str) -> Vec<ast::Stmt> {
    statements(sql)
        .into_iter()
        .filter(|s| s.error.is_none())
        .filter_map(|s| parse_one(&s.sql).ok())
        .collect()
}

/// One statement's syntax tree, or the parser's error. More than one statement in `sql`
/// is an error too.
pub fn parse_one(sql: &str) -> Result<ast::Stmt, SyntaxError> {
    let parse = SourceFile::parse(sql);
    if let Some(e) = parse.errors().first() {
        return Err(error_of(e));
    }
    let mut stmts = parse.tree().stmts();
    match (stmts.next(), stmts.next()) {
        (Some(s), None) => Ok(s),
        (None, _) => Err(SyntaxError {
            message: "no statement".into(),
            start: 0,
            len: 0,
        }),
        (Some(_), Some(second)) => Err(SyntaxError {
            message: "more than one statement".into(),
            start: usize::from(second.syntax().text_range().start()),
            len: 0,
        }),
    }
}

/// A node's text as written, whitespace between its tokens removed (`public . t` →
/// `public.t`) and comments dropped.
pub fn name_text(node: &SyntaxNode) -> String {
    node.descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !matches!(t.kind(), SyntaxKind::WHITESPACE | SyntaxKind::COMMENT))
        .map(|t| t.text().to_string())
        .collect()
}

/// A node's text, trimmed.
pub fn text(node: &SyntaxNode) -> String {
    node.text().to_string().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_statement_boundaries_only() {
        let sql = "-- a; comment\ncreate index concurrently if not exists i on t(a);\n\
                   do $$ begin perform 1; end $$;\n\
                   select 'x;y', \"a;b\" from t; /* c; */ select $1::int;\n-- trailing";
        let s = split(sql);
        assert_eq!(s.len(), 4, "{s:?}");
        assert_eq!(s[0], "create index concurrently if not exists i on t(a)");
        assert_eq!(s[1], "do $$ begin perform 1; end $$");
        assert_eq!(s[2], "select 'x;y', \"a;b\" from t");
        assert_eq!(s[3], "select $1::int");
        assert!(statements(sql).iter().all(|s| s.error.is_none()));
    }

    #[test]
    fn tagged_dollar_quotes_and_rules() {
        let s = split("create function f() returns int language plpgsql as $fn$ begin return 1; end $fn$; select 2");
        assert_eq!(s.len(), 2, "{s:?}");
        let s = split("create rule r as on insert to t do also (insert into u values (1); insert into u values (2)); select 3");
        assert_eq!(s.len(), 2, "{s:?}");
    }

    #[test]
    fn text_it_cannot_read_is_kept_with_the_error() {
        let sql = "select 1;\ncreate tabel t (a int);\nselect 2;";
        let s = statements(sql);
        let texts: Vec<&str> = s.iter().map(|s| s.sql.as_str()).collect();
        assert!(texts.concat().contains("create tabel t (a int)"), "{s:?}");
        let bad: Vec<&Statement> = s.iter().filter(|s| s.error.is_some()).collect();
        assert!(!bad.is_empty(), "{s:?}");
        assert_eq!(bad[0].error.as_ref().unwrap().position(sql).0, 2);
        assert_eq!(s.last().unwrap().sql, "select 2");
        assert!(s.last().unwrap().error.is_none());
    }

    #[test]
    fn one_statement() {
        assert!(matches!(
            parse_one("alter table t add column a int"),
            Ok(ast::Stmt::AlterTable(_))
        ));
        assert!(parse_one("select 1; select 2").is_err());
        assert!(parse_one("alter tabel t").is_err());
    }
}

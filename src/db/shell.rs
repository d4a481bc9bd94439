//! What in a `--schema` or `--migrations` file would run a program on this machine.
//!
//! Those files are loaded by psql, as the invoking user, into a server started as
//! that user (or as the `postgres` OS user when run as root). psql runs shell commands
//! for some meta-commands, and a superuser's `COPY ... PROGRAM` runs one on the
//! server's side. A schema file is data to audit, not a script to trust: unless
//! `--allow-shell` is given, a file (or a file it includes with `\i`, `\ir`) that
//! holds any of these is refused before the server starts:
//! - `\!` (a shell command), `\e`, `\edit`, `\ef`, `\ev` (an editor);
//! - `\o |`, `\out |`, `\g |`, `\gx |`, `\w |`, `\write |` (output piped to a command);
//! - `\copy ... program` (psql runs the program);
//! - a backquote in a meta-command's arguments (psql runs the quoted command);
//! - `COPY ... PROGRAM` in SQL (the server runs the program).
//!
//! A heuristic over the text, like psql's own reading of it: strings, quoted
//! identifiers, dollar quotes and comments are skipped; a backslash outside them
//! starts a meta-command that runs to the end of the line. SQL that builds such a
//! statement at run time (`EXECUTE format(...)` in a DO block) is not seen.

use crate::db::sqltext::skip_quoted;
use crate::diag::{Problem, SourceFile};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One use of the shell: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellUse {
    pub start: usize,
    pub end: usize,
    pub what: String,
}

/// Every use of the shell in `files` and the files they include, as problems that
/// point at the line (files that cannot be read are left to psql, which says so).
pub fn refuse(files: &[PathBuf]) -> Vec<Problem> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    for file in files {
        // psql runs with the file's directory as its working directory (`\i` is
        // relative to it, as `\ir` is to the including file).
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        visit(file, &dir, &mut seen, &mut out);
    }
    out
}

fn visit(file: &Path, cwd: &Path, seen: &mut HashSet<PathBuf>, out: &mut Vec<Problem>) {
    let Ok(abs) = std::fs::canonicalize(file) else {
        return;
    };
    if !seen.insert(abs.clone()) {
        return;
    }
    let Ok(text) = std::fs::read_to_string(&abs) else {
        return;
    };
    let src = SourceFile::new(file.display().to_string(), text.clone());
    for u in scan(&text) {
        out.push(src.problem(
            format!("{}: {} runs a program on this machine", file.display(), u.what),
            Some(u.start..u.end),
            "runs a program",
            Some(
                "schema files are loaded by psql as you, into a server started as you: remove it, \
                 or pass --allow-shell if you trust the file"
                    .into(),
            ),
        ));
    }
    for (relative, name) in includes(&text) {
        let base = if relative {
            abs.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            cwd.to_path_buf()
        };
        let path = base.join(&name);
        visit(&path, cwd, seen, out);
    }
}

/// The meta-commands of `text`: (byte offset of the backslash, end of its line, the
/// command name, its arguments).
fn meta_commands(text: &str) -> Vec<(usize, usize, String, String)> {
    let b = text.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        if let Some(end) = skip_quoted(text, i) {
            i = end;
            continue;
        }
        let c = b[i];
        if c == b'\\' {
            let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
            let line = &text[i + 1..end];
            let name_len = line
                .find(|ch: char| ch.is_whitespace() || ch == '|')
                .unwrap_or(line.len());
            // `\!` and `\\` are names of one character
            let name_len = if line.starts_with('!') { 1 } else { name_len };
            let (name, args) = line.split_at(name_len);
            out.push((i, end, name.to_string(), args.to_string()));
            i = end;
            continue;
        }
        i += 1;
    }
    out
}

/// Files `text` includes: (relative to the including file, name).
fn includes(text: &str) -> Vec<(bool, String)> {
    meta_commands(text)
        .into_iter()
        .filter_map(|(_, _, name, args)| {
            let relative = match name.as_str() {
                "i" | "include" => false,
                "ir" | "include_relative" => true,
                _ => return None,
            };
            let arg = args.trim().trim_matches('\'').to_string();
            (!arg.is_empty()).then_some((relative, arg))
        })
        .collect()
}

/// Every use of the shell in one file's text.
pub fn scan(text: &str) -> Vec<ShellUse> {
    let mut out = vec![];
    for (start, end, name, args) in meta_commands(text) {
        let piped = args.trim_start().starts_with('|');
        let what = match name.as_str() {
            "!" => Some("\\! (a shell command)".to_string()),
            "e" | "edit" | "ef" | "ev" => Some(format!("\\{name} (an editor)")),
            "o" | "out" | "g" | "gx" | "w" | "write" if piped => {
                Some(format!("\\{name} | (output piped to a command)"))
            }
            "copy" if has_word(&args, "program") => Some("\\copy ... program".to_string()),
            _ if args.contains('`') => Some(format!("a backquoted command in \\{name}")),
            _ => None,
        };
        if let Some(what) = what {
            out.push(ShellUse { start, end, what });
        }
    }
    out.extend(copy_program(text));
    out.sort_by_key(|u| u.start);
    out
}

fn has_word(text: &str, word: &str) -> bool {
    text.to_ascii_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|w| w == word)
}

/// SQL statements `COPY ... PROGRAM`, outside strings and comments (the text is
/// blanked where quoted, so a string that mentions it does not count).
fn copy_program(text: &str) -> Vec<ShellUse> {
    let blank = blanked(text);
    let mut out = vec![];
    let mut start = 0;
    for stmt in blank.split_inclusive(';') {
        let trimmed = stmt.trim_start();
        let lead = stmt.len() - trimmed.len();
        if trimmed.len() >= 4
            && trimmed[..4].eq_ignore_ascii_case("copy")
            && trimmed[4..].starts_with(|c: char| c.is_whitespace() || c == '(')
            && has_word(trimmed, "program")
        {
            out.push(ShellUse {
                start: start + lead,
                end: start + stmt.trim_end().len(),
                what: "COPY ... PROGRAM (the server runs the program)".into(),
            });
        }
        start += stmt.len();
    }
    out
}

/// `text` with strings, quoted identifiers, dollar quotes, comments and meta-command
/// lines replaced by spaces (same byte offsets).
fn blanked(text: &str) -> String {
    let mut keep = vec![true; text.len()];
    let b = text.as_bytes();
    let mut i = 0;
    let blank = |from: usize, to: usize, keep: &mut Vec<bool>| {
        for k in keep.iter_mut().take(to.min(b.len())).skip(from) {
            *k = false;
        }
    };
    while i < b.len() {
        let c = b[i];
        let skip_to = if let Some(end) = skip_quoted(text, i) {
            end
        } else if c == b'\\' {
            text[i..].find('\n').map_or(b.len(), |n| i + n)
        } else {
            i + 1
        };
        if skip_to > i + 1 || c == b'\\' {
            blank(i, skip_to, &mut keep);
        }
        i = skip_to.max(i + 1);
    }
    // A blanked region runs between ASCII delimiters, so it holds whole characters:
    // spacing out its bytes keeps the text valid UTF-8 and every offset in place.
    let bytes: Vec<u8> = b
        .iter()
        .zip(&keep)
        .map(|(&c, &k)| if k { c } else { b' ' })
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whats(text: &str) -> Vec<String> {
        scan(text).into_iter().map(|u| u.what).collect()
    }

    #[test]
    fn shell_meta_commands_are_found() {
        assert_eq!(whats("create table t(id int);\n\\! rm -rf ~\n").len(), 1);
        assert_eq!(whats("\\o | mail me\nselect 1;\n").len(), 1);
        assert_eq!(whats("select 1 \\g |cat\n").len(), 1);
        assert_eq!(whats("\\copy t from program 'curl x'\n").len(), 1);
        assert_eq!(whats("\\set x `id`\n").len(), 1);
        assert_eq!(whats("copy t from program 'id';\n").len(), 1);
        assert_eq!(whats("COPY (select 1) TO PROGRAM 'cat';\n").len(), 1);
    }

    #[test]
    fn harmless_text_is_not() {
        assert!(whats("\\set ON_ERROR_STOP 1\n\\o out.txt\n\\copy t from 'x.csv'\n").is_empty());
        assert!(whats("insert into t values ('\\! not a command', 'copy program');\n").is_empty());
        assert!(
            whats("create function f() returns text language sql as $$ select '\\!' $$;\n")
                .is_empty()
        );
        assert!(whats("-- \\! in a comment\n/* copy t from program 'x'; */\n").is_empty());
        assert!(whats("copy t from stdin;\n").is_empty());
        assert!(whats("select 'é' as program;\n").is_empty());
    }
}

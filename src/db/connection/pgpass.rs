//! The libpq password file (`~/.pgpass`, `PGPASSFILE`).
//!
//! Hand-written rather than taken from a crate: the format is one line of
//! `hostname:port:database:username:password` per entry, with `*` wildcards
//! and `\` escapes, and what matters is reproducing libpq's exact matching
//! rules (`passwordFromFile`/`pwdfMatchesString`); that is a few dozen lines,
//! and no maintained crate implements them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub(super) struct Entry {
    /// hostname, port, database, username; `None` is the `*` wildcard.
    keys: [Option<String>; 4],
    password: String,
}

/// Read the file, ignoring it (with a warning, as libpq) when it is not
/// a plain file or is group/world accessible. A missing file is no error.
pub(super) fn read(path: &Path, warnings: &mut Vec<String>) -> Vec<Entry> {
    let Ok(meta) = fs::metadata(path) else {
        return Vec::new();
    };
    if !meta.is_file() {
        warnings.push(format!(
            "WARNING: password file \"{}\" is not a plain file",
            path.display()
        ));
        return Vec::new();
    }
    if meta.permissions().mode() & 0o077 != 0 {
        warnings.push(format!(
            "WARNING: password file \"{}\" has group or world access; permissions \
             should be u=rw (0600) or less",
            path.display()
        ));
        return Vec::new();
    }
    fs::read_to_string(path)
        .map(|text| parse(&text))
        .unwrap_or_default()
}

pub(super) fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = split_fields(line).into_iter();
            let mut key = || {
                fields
                    .next()
                    .map(|(raw, value)| (raw != "*").then_some(value))
            };
            let keys = [key()?, key()?, key()?, key()?];
            let password = fields.next()?.1;
            Some(Entry { keys, password })
        })
        .collect()
}

/// Split on unescaped ':' into (raw text, unescaped value) pairs; the raw
/// text tells an unescaped `*` (wildcard) from `\*` (a literal star).
fn split_fields(line: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let (mut raw, mut value) = (String::new(), String::new());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                raw.push(c);
                if let Some(next) = chars.next() {
                    raw.push(next);
                    value.push(next);
                }
            }
            ':' => fields.push((std::mem::take(&mut raw), std::mem::take(&mut value))),
            c => {
                raw.push(c);
                value.push(c);
            }
        }
    }
    fields.push((raw, value));
    fields
}

/// The first entry whose four keys match wins.
pub(super) fn lookup(
    entries: &[Entry],
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let wanted = [host, port, dbname, user];
    entries
        .iter()
        .find(|e| {
            e.keys
                .iter()
                .zip(wanted)
                .all(|(k, w)| k.as_deref().is_none_or(|k| k == w))
        })
        .map(|e| e.password.clone())
}

//! Split a SQL script into statements, for migrations that must run outside a
//! transaction (one statement at a time, as psql in autocommit would).
//!
//! Written by hand: the SQL parser crates either do not know PostgreSQL's dollar
//! quoting and psql-free scripts well (sqlparser) or need a C toolchain and the
//! PostgreSQL sources (pg_query). This only has to find top-level semicolons
//! outside quotes, dollar quotes and comments.
//!
//! Parser decision (issue 16, spike of session 8; not yet acted on):
//! - `pg_query` (libpg_query: the server's own grammar, so every statement PostgreSQL
//!   accepts parses, and the tree names the relations and the AlterTableCmd subtypes a
//!   lock table needs). Its build compiles the vendored C sources and runs bindgen,
//!   which needs libclang: this machine has only libclang-cpp.so.14, so README's
//!   prerequisites and `.ci/run` would have to `apt-get install libclang-dev clang`.
//!   Not built here: the 2 shared cores had every debug build waiting minutes on the
//!   target lock, and adding a C build to every clean CI run was not worth blocking
//!   `fix` for.
//! - squawk's crates (`squawk-syntax` over `squawk-parser`): pure Rust, no toolchain
//!   beyond cargo, error-tolerant (a lossless rowan tree), and `squawk-linter` carries
//!   the migration-safety rules (require-concurrent-index-creation, adding-not-nullable-
//!   field, constraint-missing-not-valid, changing-column-type, …) that `--from`
//!   flagging wants. Its grammar is a re-implementation, so a statement it does not
//!   know yet is a parse error where PostgreSQL would accept it. Licence Apache-2.0 OR
//!   MIT; recent releases are edition 2024 with rust-version 1.90+ (2.40) to 1.94
//!   (2.53), above this crate's rust-version 1.85: adopting it raises the MSRV.
//!
//! Choice: squawk's crates for lint rules and `plan` (no C toolchain for users
//! or CI; the rules are reused rather than rewritten), with a statement it cannot parse
//! reported as "lock unknown" rather than guessed; `pg_query` only if fidelity on
//! function bodies (`checks validate`, body analysis) proves worth libclang in CI.
//! Until then `migrate::locks` classifies statements by their leading keywords.

use crate::db::sqltext::skip_quoted;

pub fn split(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = vec![];
    let mut start = 0;
    let mut i = 0;
    let mut depth = 0usize; // parentheses, so `create rule ... (a; b)` stays whole
    while i < b.len() {
        if let Some(end) = skip_quoted(sql, i) {
            i = end;
            continue;
        }
        let c = b[i];
        match c {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b';' if depth == 0 => {
                push(&mut out, &sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push(&mut out, &sql[start.min(sql.len())..]);
    out
}

fn push(out: &mut Vec<String>, stmt: &str) {
    // Keep statements that have something besides comments and whitespace.
    let meaningful = stmt
        .lines()
        .map(|l| l.split("--").next().unwrap_or("").trim())
        .any(|l| !l.is_empty());
    if meaningful {
        // Leading comment lines belong to no statement; drop them so a statement
        // starts with its keyword.
        let body: Vec<&str> = stmt
            .trim()
            .lines()
            .skip_while(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
            .collect();
        out.push(body.join("\n").trim().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_on_top_level_semicolons_only() {
        let sql = "-- a; comment\ncreate index concurrently if not exists i on t(a);\n\
                   do $$ begin perform 1; end $$;\n\
                   select 'x;y', \"a;b\" from t; /* c; */ select $1::int;\n-- trailing";
        let s = split(sql);
        assert_eq!(s.len(), 4, "{s:?}");
        assert!(s[0].starts_with("create index concurrently"));
        assert!(s[1].starts_with("do $$ begin perform 1; end $$"));
        assert_eq!(s[2], "select 'x;y', \"a;b\" from t");
        assert!(s[3].ends_with("select $1::int"));
    }

    #[test]
    fn tagged_dollar_quotes() {
        let s = split("create function f() returns int language plpgsql as $fn$ begin return 1; end $fn$; select 2");
        assert_eq!(s.len(), 2);
    }
}

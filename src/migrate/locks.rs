//! What a migration statement locks, and whether it scans or rewrites its table, for
//! `plan` and `apply --dry-run` (SPEC §7). Read from the statement's leading keywords
//! (the forms `fix` writes and the common DDL); a statement it does not know is
//! `unknown`, never guessed. To be replaced by a kept parser (see `sqlsplit`).

use regex::Regex;
use serde::Serialize;

/// One statement: its kind, the table it locks and how, and what it does to the table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatementLock {
    /// e.g. `create_index_concurrently`, `add_foreign_key_not_valid`, `unknown`.
    pub kind: &'static str,
    /// The table (or view, or index's table) it locks, as written.
    pub table: Option<String>,
    /// The lock mode taken on `table`, e.g. `SHARE UPDATE EXCLUSIVE`.
    pub lock: Option<&'static str>,
    /// A second table it locks (a foreign key's parent) and how.
    pub also: Option<(String, &'static str)>,
    /// Reads the whole table (under `lock`).
    pub scans: bool,
    /// Rewrites the whole table (under `lock`).
    pub rewrites: bool,
}

/// What a lock mode keeps waiting: "reads and writes", "writes", or "neither".
pub fn blocks(lock: &str) -> &'static str {
    match lock {
        "ACCESS EXCLUSIVE" => "reads and writes",
        "EXCLUSIVE" | "SHARE ROW EXCLUSIVE" | "SHARE" => "writes",
        _ => "neither reads nor writes",
    }
}

const NAME: &str =
    r#"((?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)(?:\s*\.\s*(?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*))?)"#;

fn re(pattern: &str) -> Regex {
    Regex::new(&format!("(?is){}", pattern.replace("NAME", NAME))).expect("a valid pattern")
}

/// Classify one statement (leading comments already removed, as `sqlsplit` gives it).
pub fn classify(stmt: &str) -> StatementLock {
    let s = stmt.trim();
    let lock = |kind, table: Option<String>, lock, scans, rewrites| StatementLock {
        kind,
        table,
        lock: Some(lock),
        also: None,
        scans,
        rewrites,
    };
    let cap = |p: &str| re(p).captures(s).map(|c| c[1].to_string());
    if let Some(c) = re(r"^create\s+(unique\s+)?index\s+concurrently\s+(?:if\s+not\s+exists\s+)?(?:NAME\s+)?on\s+(?:only\s+)?NAME").captures(s) {
        let t = c.get(3).or(c.get(2)).map(|m| m.as_str().to_string());
        return lock("create_index_concurrently", t, "SHARE UPDATE EXCLUSIVE", true, false);
    }
    if let Some(c) = re(
        r"^create\s+(unique\s+)?index\s+(?:if\s+not\s+exists\s+)?(?:NAME\s+)?on\s+(?:only\s+)?NAME",
    )
    .captures(s)
    {
        let t = c.get(3).or(c.get(2)).map(|m| m.as_str().to_string());
        return lock("create_index", t, "SHARE", true, false);
    }
    if let Some(t) = cap(r"^drop\s+index\s+concurrently\s+(?:if\s+exists\s+)?NAME") {
        return lock(
            "drop_index_concurrently",
            Some(t),
            "SHARE UPDATE EXCLUSIVE",
            false,
            false,
        );
    }
    if let Some(t) = cap(r"^drop\s+index\s+(?:if\s+exists\s+)?NAME") {
        return lock("drop_index", Some(t), "ACCESS EXCLUSIVE", false, false);
    }
    if let Some(t) = cap(r"^create\s+policy\s+\S+\s+on\s+NAME") {
        return lock("create_policy", Some(t), "ACCESS EXCLUSIVE", false, false);
    }
    if let Some(t) = cap(r"^(?:drop|alter)\s+policy\s+(?:if\s+exists\s+)?\S+\s+on\s+NAME") {
        return lock("alter_policy", Some(t), "ACCESS EXCLUSIVE", false, false);
    }
    if let Some(t) = cap(r"^alter\s+view\s+(?:if\s+exists\s+)?NAME") {
        return lock("alter_view", Some(t), "ACCESS EXCLUSIVE", false, false);
    }
    if let Some(t) = cap(r"^create\s+(?:unlogged\s+)?table\s+(?:if\s+not\s+exists\s+)?NAME") {
        return StatementLock {
            kind: "create_table",
            table: Some(t),
            lock: None,
            also: None,
            scans: false,
            rewrites: false,
        };
    }
    let Some(c) = re(r"^alter\s+table\s+(?:if\s+exists\s+)?(?:only\s+)?NAME\s+(.*)$").captures(s)
    else {
        return StatementLock {
            kind: "unknown",
            table: None,
            lock: None,
            also: None,
            scans: false,
            rewrites: false,
        };
    };
    let table = Some(c[1].to_string());
    let rest = c[2].to_string();
    let has = |p: &str| re(p).is_match(&rest);
    let not_valid = has(r"\bnot\s+valid\b");
    if let Some(parent) = re(r"foreign\s+key\s*\([^)]*\)\s*references\s+NAME")
        .captures(&rest)
        .map(|p| p[1].to_string())
    {
        let kind = if not_valid {
            "add_foreign_key_not_valid"
        } else {
            "add_foreign_key"
        };
        return StatementLock {
            kind,
            table,
            lock: Some("SHARE ROW EXCLUSIVE"),
            also: Some((parent, "SHARE ROW EXCLUSIVE")),
            scans: !not_valid,
            rewrites: false,
        };
    }
    if has(r"^validate\s+constraint\b") {
        return lock(
            "validate_constraint",
            table,
            "SHARE UPDATE EXCLUSIVE",
            true,
            false,
        );
    }
    if has(r"\bunique\s+using\s+index\b") || has(r"\bprimary\s+key\s+using\s+index\b") {
        return lock(
            "add_constraint_using_index",
            table,
            "ACCESS EXCLUSIVE",
            false,
            false,
        );
    }
    if has(r"\badd\s+constraint\s+\S+\s+check\b") || has(r"^add\s+check\b") {
        let kind = if not_valid {
            "add_check_not_valid"
        } else {
            "add_check"
        };
        return lock(kind, table, "ACCESS EXCLUSIVE", !not_valid, false);
    }
    if has(r"\b(?:unique|primary\s+key)\s*\(") {
        return lock("add_unique", table, "ACCESS EXCLUSIVE", true, false);
    }
    if has(r"\bset\s+not\s+null\b") {
        // PostgreSQL 12+ skips the scan when a validated CHECK (col IS NOT NULL) proves it.
        return lock("set_not_null", table, "ACCESS EXCLUSIVE", true, false);
    }
    if has(r"\b(?:alter\s+column\s+\S+\s+)?(?:set\s+data\s+)?type\b") && has(r"\balter\s+column\b")
    {
        return lock("alter_column_type", table, "ACCESS EXCLUSIVE", true, true);
    }
    if has(r"^(?:enable|disable|force|no\s+force)\s+row\s+level\s+security") {
        return lock(
            "row_level_security",
            table,
            "ACCESS EXCLUSIVE",
            false,
            false,
        );
    }
    if has(r"^add\s+(?:column\s+)?") {
        let volatile = has(
            r"\bdefault\b.*\b(?:random|gen_random_uuid|clock_timestamp|uuid_generate_v4|nextval)\s*\(",
        );
        return lock("add_column", table, "ACCESS EXCLUSIVE", volatile, volatile);
    }
    if has(r"^drop\s+constraint\b") {
        return lock("drop_constraint", table, "ACCESS EXCLUSIVE", false, false);
    }
    lock("alter_table", table, "ACCESS EXCLUSIVE", false, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_fix_writes_are_classified() {
        let c = classify("create index concurrently if not exists t_a_idx on public.t (a)");
        assert_eq!(
            (c.kind, c.table.as_deref(), c.lock),
            (
                "create_index_concurrently",
                Some("public.t"),
                Some("SHARE UPDATE EXCLUSIVE")
            )
        );
        let c = classify("alter table public.c add constraint c_p_fkey foreign key (p_id) references public.p (id) not valid");
        assert_eq!(c.kind, "add_foreign_key_not_valid");
        assert_eq!(c.also, Some(("public.p".into(), "SHARE ROW EXCLUSIVE")));
        assert!(!c.scans);
        let c = classify("alter table public.c validate constraint c_p_fkey");
        assert_eq!(
            (c.kind, c.lock, c.scans),
            ("validate_constraint", Some("SHARE UPDATE EXCLUSIVE"), true)
        );
        let c =
            classify("alter table \"Odd\".\"T\" add constraint x check (a is not null) not valid");
        assert_eq!(
            (c.kind, c.table.as_deref()),
            ("add_check_not_valid", Some("\"Odd\".\"T\""))
        );
        assert_eq!(
            classify("alter table t alter column a set not null").kind,
            "set_not_null"
        );
        assert_eq!(
            classify("alter table t enable row level security").kind,
            "row_level_security"
        );
        assert_eq!(
            classify("alter table t drop constraint k, add constraint k2 unique using index k2")
                .kind,
            "add_constraint_using_index"
        );
        assert_eq!(
            classify("create policy p on public.t as permissive for all to app using (true)")
                .table
                .as_deref(),
            Some("public.t")
        );
        assert_eq!(
            classify("drop index concurrently if exists public.i").lock,
            Some("SHARE UPDATE EXCLUSIVE")
        );
        assert_eq!(classify("select 1").kind, "unknown");
        assert!(classify("alter table t alter column a type bigint").rewrites);
        assert_eq!(blocks("SHARE ROW EXCLUSIVE"), "writes");
    }
}

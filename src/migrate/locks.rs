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
    if is_begin(s) || is_commit(s) {
        return StatementLock {
            kind: "transaction_control",
            table: None,
            lock: None,
            also: None,
            scans: false,
            rewrites: false,
        };
    }
    if re(r"^(?:alter\s+(?:role|user|database|function|routine|procedure)|create\s+(?:or\s+replace\s+)?(?:function|procedure)|comment\s+on\s+(?:function|routine|procedure|role|database|schema)|grant|revoke|set|reset|select\s+set_config)\b").is_match(s) {
        // Catalog rows of roles, databases, routines and privileges: no table lock held
        // past the statement that a reader or writer of a table would queue behind.
        return StatementLock {
            kind: "catalog_only",
            table: None,
            lock: None,
            also: None,
            scans: false,
            rewrites: false,
        };
    }
    if let Some(t) = cap(r"^comment\s+on\s+(?:table|view|materialized\s+view)\s+NAME") {
        return lock("comment", Some(t), "SHARE UPDATE EXCLUSIVE", false, false);
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

/// Every lock one statement takes: its `classify` entry, one more per further foreign key
/// parent it names (`CREATE TABLE … REFERENCES a, … REFERENCES b`, an ALTER adding
/// several keys), and for a `DO` block the statements its body runs (directly or as
/// `EXECUTE` of a literal or `format()` string); a body that executes a computed string is
/// `unknown`.
pub fn statement_locks(stmt: &str) -> Vec<StatementLock> {
    let s = stmt.trim();
    if re(r"^do\b").is_match(s) {
        return do_block_locks(s);
    }
    let first = classify(s);
    // ALTER TABLE t a, b, c: each action takes its own lock (the table's is the strongest),
    // and each foreign key added locks its own parent.
    if let Some(c) = re(r"^alter\s+table\s+(?:if\s+exists\s+)?(?:only\s+)?NAME\s+(.*)$").captures(s)
    {
        let clauses = top_level_commas(&c[2]);
        if clauses.len() > 1 {
            return clauses
                .iter()
                .map(|cl| classify(&format!("alter table {} {}", &c[1], cl.trim())))
                .collect();
        }
        return vec![first];
    }
    let mut out = vec![first.clone()];
    if first.kind == "create_table" {
        let references = re(r"\breferences\s+NAME");
        let mut parents = references.captures_iter(s).map(|c| c[1].to_string());
        if let Some(p) = parents.next() {
            out[0].also = Some((p, "SHARE ROW EXCLUSIVE"));
        }
        for p in parents {
            out.push(StatementLock {
                also: Some((p, "SHARE ROW EXCLUSIVE")),
                ..first.clone()
            });
        }
    }
    out
}

/// Split at commas outside parentheses and quotes.
fn top_level_commas(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let (mut out, mut start, mut depth, mut i) = (vec![], 0, 0usize, 0);
    while i < b.len() {
        if let Some(end) = crate::db::sqltext::skip_quoted(s, i) {
            i = end;
            continue;
        }
        match b[i] {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                out.push(s[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(s[start..].to_string());
    out
}

fn do_block_locks(s: &str) -> Vec<StatementLock> {
    let unknown = || {
        vec![StatementLock {
            kind: "unknown",
            table: None,
            lock: None,
            also: None,
            scans: false,
            rewrites: false,
        }]
    };
    // The body between the first dollar quote and its closing twin.
    let Some(open) = re(r"\$([a-z_]*)\$").captures(s) else {
        return unknown();
    };
    let tag = open[0].to_string();
    let start = open.get(0).map_or(0, |m| m.end());
    let Some(len) = s[start..].find(&tag) else {
        return unknown();
    };
    let body = &s[start..start + len];
    // EXECUTE of anything but a literal or a format() of a literal cannot be read.
    if re(r"\bexecute\s+(?:[^'f\s]|f(?:[^o]|o[^r]))").is_match(body) {
        return unknown();
    }
    let verbs = re(
        r"\b(?:alter|create|drop|comment\s+on|grant|revoke|lock|truncate|insert\s+into|update\s+\S+\s+set|delete\s+from|refresh|reindex|vacuum|cluster)\b",
    );
    let mut out = vec![];
    for m in verbs.find_iter(body) {
        let rest = &body[m.start()..];
        let end = rest.find([';', '\'']).unwrap_or(rest.len());
        let inner = rest[..end].trim();
        let c = classify(inner);
        if c.kind == "unknown" || c.table.as_deref().is_some_and(|t| t.contains('%')) {
            return unknown();
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push(StatementLock {
            kind: "do_block",
            table: None,
            lock: None,
            also: None,
            scans: false,
            rewrites: false,
        });
    }
    out
}

/// Lock modes from weakest to strongest.
pub const MODES: [&str; 8] = [
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
];

/// The strength of a lock mode (0: ACCESS SHARE).
pub fn strength(mode: &str) -> usize {
    MODES.iter().position(|m| *m == mode).unwrap_or(MODES.len())
}

/// `public.users`, `"users"` and `users` name one table.
pub fn table_key(name: &str) -> String {
    let parts: Vec<String> = name
        .split('.')
        .map(|p| {
            let p = p.trim();
            match p.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                Some(q) => q.replace("\"\"", "\""),
                None => p.to_lowercase(),
            }
        })
        .collect();
    match parts.as_slice() {
        [schema, table] if schema == "public" => table.clone(),
        _ => parts.join("."),
    }
}

/// One transaction of a migration: the statements it runs together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub statements: Vec<String>,
    /// An explicit `BEGIN; … COMMIT;` block of a no-transaction migration (applied once,
    /// recorded as a step).
    pub block: bool,
}

/// Is this statement the `BEGIN` (or `START TRANSACTION`) of a block?
pub fn is_begin(stmt: &str) -> bool {
    re(r"^(?:begin(?:\s+(?:work|transaction))?|start\s+transaction)\s*$").is_match(stmt.trim())
}

/// Is this statement the `COMMIT` (or `END`) of a block?
pub fn is_commit(stmt: &str) -> bool {
    re(r"^(?:commit|end)(?:\s+(?:work|transaction))?\s*$").is_match(stmt.trim())
}

/// The transactions a migration runs: the whole file in one, or, outside a transaction,
/// each statement on its own except the `BEGIN; … COMMIT;` blocks, one transaction each.
/// An unclosed `BEGIN` is an error (the runner would leave a transaction open).
pub fn transactions(
    statements: &[String],
    no_transaction: bool,
) -> Result<Vec<Transaction>, String> {
    if !no_transaction {
        return Ok(vec![Transaction {
            statements: statements.to_vec(),
            block: false,
        }]);
    }
    let mut out = vec![];
    let mut open: Option<Vec<String>> = None;
    for s in statements {
        match open.as_mut() {
            None if is_begin(s) => open = Some(vec![]),
            None if is_commit(s) => return Err("COMMIT without BEGIN".into()),
            None => out.push(Transaction {
                statements: vec![s.clone()],
                block: false,
            }),
            Some(_) if is_begin(s) => return Err("BEGIN inside a BEGIN … COMMIT block".into()),
            Some(block) if !is_commit(s) => block.push(s.clone()),
            Some(_) => out.push(Transaction {
                statements: open.take().unwrap_or_default(),
                block: true,
            }),
        }
    }
    if open.is_some() {
        return Err("BEGIN without COMMIT".into());
    }
    Ok(out)
}

/// What SPEC §7's "one table locked per transaction" says of one transaction.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableRule {
    /// true: holds; false: broken; null: a statement's lock is unknown.
    pub one_table: Option<bool>,
    /// The tables locked beyond ACCESS SHARE, each with its strongest mode.
    pub tables: Vec<(String, &'static str)>,
    pub reason: Option<String>,
}

/// Check one transaction: it may lock one table beyond ACCESS SHARE; the parent of a foreign
/// key it adds or validates may be locked too, at SHARE ROW EXCLUSIVE or weaker (one parent,
/// or several when the child is created in this very transaction, where nobody can be
/// waiting for it). Dropping a foreign key locks the parent ACCESS EXCLUSIVE as well
/// (PostgreSQL drops the key's triggers there): allowed only in a transaction that does
/// nothing else. `fk_parent(table, constraint)` names a dropped constraint's parent when it
/// is a foreign key (read from the catalog; None when it is not, or not known).
pub fn one_table_rule(
    statements: &[String],
    fk_parent: &dyn Fn(&str, &str) -> Option<String>,
) -> TableRule {
    let mut own: Vec<(String, &'static str)> = vec![];
    let mut parents: Vec<(String, &'static str)> = vec![];
    let mut created: Vec<String> = vec![];
    let mut dropped_fk_parents: Vec<String> = vec![];
    let mut only_fk_drops = true;
    let mut unknown = vec![];
    let put = |v: &mut Vec<(String, &'static str)>, t: &str, mode: &'static str| {
        let k = table_key(t);
        match v.iter_mut().find(|(n, _)| *n == k) {
            Some(e) if strength(mode) > strength(e.1) => e.1 = mode,
            Some(_) => {}
            None => v.push((k, mode)),
        }
    };
    for stmt in statements {
        for c in statement_locks(stmt) {
            if c.kind == "unknown" {
                unknown.push(stmt.lines().next().unwrap_or("").to_string());
                continue;
            }
            if c.kind == "create_table" {
                if let Some(t) = &c.table {
                    created.push(table_key(t));
                }
            }
            if let (Some(t), Some(mode)) = (&c.table, c.lock) {
                if strength(mode) > 0 && !(c.kind.contains("index") && c.kind.starts_with("drop")) {
                    put(&mut own, t, mode);
                }
            }
            if let Some((p, mode)) = &c.also {
                put(&mut parents, p, mode);
            }
            // Every constraint an ALTER TABLE drops: a foreign key's parent is locked too.
            let mut all_fks = true;
            if let Some(t) = c
                .table
                .as_deref()
                .filter(|_| re(r"^alter\s+table").is_match(stmt.trim()))
            {
                for d in re(r"\bdrop\s+constraint\s+(?:if\s+exists\s+)?NAME").captures_iter(stmt) {
                    match fk_parent(t, &d[1]) {
                        Some(p) => dropped_fk_parents.push(table_key(&p)),
                        None => all_fks = false,
                    }
                }
            }
            if c.lock.is_some() && !(c.kind == "drop_constraint" && all_fks) {
                only_fk_drops = false;
            }
        }
    }
    // A dropped index: the index's own table is what it locks; its name says nothing of
    // which table that is, so a DROP INDEX (not CONCURRENTLY) counts as a table of its own.
    for stmt in statements {
        if let Some(i) = re(r"^drop\s+index\s+(?:if\s+exists\s+)?NAME").captures(stmt.trim()) {
            if !re(r"^drop\s+index\s+concurrently").is_match(stmt.trim()) {
                put(&mut own, &format!("index {}", &i[1]), "ACCESS EXCLUSIVE");
            }
        }
    }
    for p in &dropped_fk_parents {
        put(&mut parents, p, "ACCESS EXCLUSIVE");
    }
    // A table both locked as a child and named as a parent (a self reference) is one table.
    parents.retain(|(p, _)| !own.iter().any(|(o, _)| o == p));
    let mut tables = own.clone();
    tables.extend(parents.iter().cloned());
    let broken = |reason: String| TableRule {
        one_table: Some(false),
        tables: tables.clone(),
        reason: Some(reason),
    };
    if own.len() > 1 {
        let names: Vec<&str> = own.iter().map(|(t, _)| t.as_str()).collect();
        return broken(format!(
            "locks {} tables: {}",
            names.len(),
            names.join(", ")
        ));
    }
    let new_child = match own.first() {
        Some((t, _)) => created.contains(t),
        None => !created.is_empty(),
    };
    for (p, mode) in &parents {
        if strength(mode) > strength("SHARE ROW EXCLUSIVE")
            && !(only_fk_drops && dropped_fk_parents.contains(p))
        {
            return broken(format!(
                "locks the parent {p} {mode} (a foreign key's parent: at most SHARE ROW EXCLUSIVE, or a lone DROP of the key)"
            ));
        }
    }
    if parents.len() > 1 && !new_child {
        let names: Vec<&str> = parents.iter().map(|(t, _)| t.as_str()).collect();
        return broken(format!(
            "locks {} foreign key parents besides its table: {} (one per transaction)",
            names.len(),
            names.join(", ")
        ));
    }
    if !unknown.is_empty() {
        return TableRule {
            one_table: None,
            tables,
            reason: Some(format!("lock unknown: {}", unknown.join("; "))),
        };
    }
    TableRule {
        one_table: Some(true),
        tables,
        reason: None,
    }
}

/// Each transaction of a migration with what the one-table rule says of it.
pub fn migration_rules(
    sql: &str,
    no_transaction: bool,
    fk_parent: &dyn Fn(&str, &str) -> Option<String>,
) -> Result<Vec<(Transaction, TableRule)>, String> {
    let statements = crate::migrate::sqlsplit::split(sql);
    Ok(transactions(&statements, no_transaction)?
        .into_iter()
        .map(|t| {
            let rule = one_table_rule(&t.statements, fk_parent);
            (t, rule)
        })
        .collect())
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

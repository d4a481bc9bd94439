//! What a migration statement locks, and whether it scans or rewrites its table, for
//! `plan` and `apply --dry-run` (SPEC §7), read from the statement's syntax tree
//! (`parse`, squawk's parser): each ALTER TABLE action, each foreign key's parent, and
//! for a `DO` block the statements its PL/pgSQL body runs. A statement the parser cannot
//! read, or whose locks cannot be known from its text (a `CALL`, a function called by a
//! `SELECT`, an `EXECUTE` of a computed string), is `unknown`, never guessed. The modes
//! are those of PostgreSQL's documentation (ALTER TABLE, CREATE INDEX, "Explicit
//! Locking"); tests/migration_safety.rs compares them with pg_locks.

use crate::migrate::parse::{self, name_text};
use serde::Serialize;
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::SyntaxNode;

/// One statement (or one action of an ALTER TABLE): its kind, the table it locks and how,
/// and what it does to the table.
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
    /// The constraint a `drop_constraint` drops (what it locks depends on whether it is
    /// a foreign key: see [`one_table_rule`]).
    #[serde(skip)]
    pub constraint: Option<String>,
    /// Why the lock is unknown: the parser's error, or what cannot be read.
    pub unknown_because: Option<String>,
}

impl StatementLock {
    fn new(kind: &'static str, table: Option<String>, lock: Option<&'static str>) -> Self {
        StatementLock {
            kind,
            table,
            lock,
            also: None,
            scans: false,
            rewrites: false,
            constraint: None,
            unknown_because: None,
        }
    }

    fn unknown(why: impl Into<String>) -> Self {
        StatementLock {
            unknown_because: Some(why.into()),
            ..StatementLock::new("unknown", None, None)
        }
    }

    fn scan(mut self, scans: bool) -> Self {
        self.scans = scans;
        self
    }

    fn rewrite(mut self, rewrites: bool) -> Self {
        self.rewrites = rewrites;
        self.scans |= rewrites;
        self
    }

    fn parent(mut self, parent: Option<String>, mode: &'static str) -> Self {
        self.also = parent.map(|p| (p, mode));
        self
    }
}

/// What a lock mode keeps waiting: "reads and writes", "writes", or "neither".
pub fn blocks(lock: &str) -> &'static str {
    match lock {
        "ACCESS EXCLUSIVE" => "reads and writes",
        "EXCLUSIVE" | "SHARE ROW EXCLUSIVE" | "SHARE" => "writes",
        _ => "neither reads nor writes",
    }
}

const AE: &str = "ACCESS EXCLUSIVE";
const SRE: &str = "SHARE ROW EXCLUSIVE";
const SUE: &str = "SHARE UPDATE EXCLUSIVE";

fn name<N: AstNode>(n: Option<N>) -> Option<String> {
    n.map(|n| name_text(n.syntax()))
}

fn table_ref(n: Option<ast::TableNameRef>) -> Option<String> {
    name(n)
}

/// The statement's strongest lock (the first of equals), with `scans`/`rewrites` of any
/// of its actions: one line of `plan`.
pub fn classify(stmt: &str) -> StatementLock {
    summary(&statement_locks(stmt))
}

/// One entry for a statement from all its locks.
pub fn summary(locks: &[StatementLock]) -> StatementLock {
    if let Some(u) = locks.iter().find(|c| c.kind == "unknown") {
        return u.clone();
    }
    let mut best = locks
        .iter()
        .max_by_key(|c| {
            (
                c.lock.map_or(0, |l| strength(l) + 1),
                std::cmp::Reverse(locks.iter().position(|x| x == *c)),
            )
        })
        .cloned()
        .unwrap_or_else(|| StatementLock::unknown("no statement"));
    best.scans = locks.iter().any(|c| c.scans && c.table == best.table);
    best.rewrites = locks.iter().any(|c| c.rewrites && c.table == best.table);
    if best.also.is_none() {
        best.also = locks.iter().find_map(|c| c.also.clone());
    }
    best
}

/// Every lock one statement takes: one entry per ALTER TABLE action, one more per further
/// foreign key parent it names (`CREATE TABLE … REFERENCES a, … REFERENCES b`), and for a
/// `DO` block the statements its body runs (directly or as `EXECUTE` of a string literal);
/// a body that executes a computed string is `unknown`.
pub fn statement_locks(stmt: &str) -> Vec<StatementLock> {
    match parse::parse_one(stmt) {
        Ok(s) => locks_of(&s),
        Err(e) => vec![StatementLock::unknown(format!(
            "the parser could not read it: {}",
            e.message
        ))],
    }
}

/// Every lock of a parsed statement (see [`statement_locks`]).
pub fn locks_of(stmt: &ast::Stmt) -> Vec<StatementLock> {
    use ast::Stmt as S;
    let none = |kind| vec![StatementLock::new(kind, None, None)];
    match stmt {
        S::Begin(_) | S::Commit(_) | S::Rollback(_) => none("transaction_control"),
        S::AlterRole(_)
        | S::AlterUser(_)
        | S::AlterGroup(_)
        | S::CreateRole(_)
        | S::CreateUser(_)
        | S::DropRole(_)
        | S::DropUser(_)
        | S::AlterDatabase(_)
        | S::AlterFunction(_)
        | S::AlterRoutine(_)
        | S::AlterProcedure(_)
        | S::CreateFunction(_)
        | S::CreateProcedure(_)
        | S::Grant(_)
        | S::Revoke(_)
        | S::Set(_)
        | S::Reset(_)
        | S::CreateSchema(_)
        | S::AlterSchema(_)
        | S::CreateExtension(_)
        | S::CreateType(_)
        | S::CreateDomain(_)
        | S::CreateSequence(_)
        | S::AlterSequence(_)
        | S::AlterDefaultPrivileges(_)
        | S::SetRole(_)
        | S::SetSessionAuth(_) => none("catalog_only"),
        S::CommentOn(c) => comment_on(c),
        S::CreateIndex(ci) => {
            let table = ci
                .table_relation_name()
                .and_then(|t| t.table_name_ref())
                .map(|t| name_text(t.syntax()));
            let c = if ci.concurrently_token().is_some() {
                StatementLock::new("create_index_concurrently", table, Some(SUE))
            } else {
                StatementLock::new("create_index", table, Some("SHARE"))
            };
            vec![c.scan(true)]
        }
        S::DropIndex(d) => d
            .index_refs()
            .map(|i| {
                let n = Some(name_text(i.syntax()));
                if d.concurrently_token().is_some() {
                    StatementLock::new("drop_index_concurrently", n, Some(SUE))
                } else {
                    StatementLock::new("drop_index", n, Some(AE))
                }
            })
            .collect(),
        S::CreatePolicy(p) => vec![StatementLock::new(
            "create_policy",
            p.on_table().and_then(|t| table_ref(t.table_name_ref())),
            Some(AE),
        )],
        S::AlterPolicy(p) => vec![StatementLock::new(
            "alter_policy",
            p.on_table().and_then(|t| table_ref(t.table_name_ref())),
            Some(AE),
        )],
        S::DropPolicy(p) => vec![StatementLock::new(
            "alter_policy",
            p.on_table().and_then(|t| table_ref(t.table_name_ref())),
            Some(AE),
        )],
        S::AlterView(v) => vec![StatementLock::new(
            "alter_view",
            name(v.view_ref()),
            Some(AE),
        )],
        S::CreateTable(t) => create_table(t),
        S::AlterTable(a) => alter_table(a),
        S::CreateTrigger(t) => vec![StatementLock::new(
            "create_trigger",
            t.on_relation().map(|r| on_name(r.syntax())),
            Some(SRE),
        )],
        S::DropTrigger(t) => vec![StatementLock::new(
            "drop_trigger",
            t.on_relation().map(|r| on_name(r.syntax())),
            Some(AE),
        )],
        S::Truncate(t) => t
            .table_list()
            .map(|l| {
                l.syntax()
                    .children()
                    .filter_map(ast::RelationName::cast)
                    .map(|r| StatementLock::new("truncate", Some(text(&r)), Some(AE)))
                    .collect()
            })
            .unwrap_or_else(|| vec![StatementLock::unknown("TRUNCATE of no table read")]),
        S::DropTable(d) => d
            .table_name_refs()
            .map(|t| StatementLock::new("drop_table", Some(name_text(t.syntax())), Some(AE)))
            .collect(),
        S::Do(d) => do_block(d),
        S::Insert(i) => vec![StatementLock::new(
            "insert",
            i.relation_name_ref().map(|r| on_name(r.syntax())),
            Some("ROW EXCLUSIVE"),
        )],
        S::Update(u) => vec![StatementLock::new(
            "update",
            u.relation_name().map(|r| on_name(r.syntax())),
            Some("ROW EXCLUSIVE"),
        )],
        S::Delete(d) => vec![StatementLock::new(
            "delete",
            d.relation_name().map(|r| on_name(r.syntax())),
            Some("ROW EXCLUSIVE"),
        )],
        S::Select(s) => select(s.syntax()),
        _ => vec![StatementLock::unknown(format!(
            "{} is not one of the statements whose locks are known",
            first_words(stmt.syntax())
        ))],
    }
}

/// The name path under a node (`ONLY t *` → `t`).
fn on_name(n: &SyntaxNode) -> String {
    n.descendants()
        .find_map(ast::PathRef::cast)
        .map(|p| name_text(p.syntax()))
        .or_else(|| {
            n.descendants()
                .find_map(ast::Path::cast)
                .map(|p| name_text(p.syntax()))
        })
        .unwrap_or_else(|| name_text(n))
}

fn text(r: &ast::RelationName) -> String {
    on_name(r.syntax())
}

fn first_words(n: &SyntaxNode) -> String {
    let words: Vec<String> = n
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !t.kind().is_trivia())
        .take(2)
        .map(|t| t.text().to_uppercase())
        .collect();
    words.join(" ")
}

/// COMMENT ON TABLE/COLUMN/VIEW: SHARE UPDATE EXCLUSIVE on the relation; on other objects
/// no table lock.
fn comment_on(c: &ast::CommentOn) -> Vec<StatementLock> {
    let Some(obj) = c.comment_object() else {
        return vec![StatementLock::unknown("COMMENT ON of no object read")];
    };
    let words: Vec<String> = obj
        .syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !t.kind().is_trivia())
        .map(|t| t.text().to_lowercase())
        .collect();
    let on_relation = matches!(
        words.first().map(String::as_str),
        Some("table" | "view" | "column" | "materialized")
    );
    if !on_relation {
        return vec![StatementLock::new("catalog_only", None, None)];
    }
    let mut path = on_name(obj.syntax());
    if words.first().map(String::as_str) == Some("column") {
        // table.column: the relation is all but the last part.
        if let Some(i) = path.rfind('.') {
            path.truncate(i);
        }
    }
    vec![StatementLock::new("comment", Some(path), Some(SUE))]
}

/// SELECT: ACCESS SHARE on what it reads, which is no table lock beyond it; a function it
/// calls could lock anything, so any call but `set_config` makes it `unknown`.
fn select(s: &SyntaxNode) -> Vec<StatementLock> {
    for call in s.descendants().filter_map(ast::CallExpr::cast) {
        let f = call
            .expr()
            .map(|e| name_text(e.syntax()).to_lowercase())
            .unwrap_or_default();
        let known = matches!(
            f.trim_start_matches("pg_catalog."),
            "set_config" | "current_setting" | "now" | "count" | "format" | "quote_ident"
        );
        if !known {
            return vec![StatementLock::unknown(format!(
                "it calls {f}(), whose locks are not known from the migration"
            ))];
        }
    }
    if s.descendants().any(|n| ast::FromClause::can_cast(n.kind())) {
        vec![StatementLock::new("select", None, None)]
    } else {
        vec![StatementLock::new("catalog_only", None, None)]
    }
}

/// The parents a constraint's REFERENCES names.
fn references(c: &ast::Constraint) -> Option<String> {
    match c {
        ast::Constraint::ForeignKeyConstraint(f) => table_ref(f.table_name_ref()),
        ast::Constraint::ReferencesConstraint(r) => table_ref(r.table()),
        _ => None,
    }
}

/// CREATE TABLE: no existing table of its own; each foreign key's parent at SHARE ROW
/// EXCLUSIVE; a partition's or child's parent ACCESS EXCLUSIVE.
fn create_table(t: &ast::CreateTable) -> Vec<StatementLock> {
    let table = name(t.table_name().and_then(|n| n.path()));
    let base = StatementLock::new("create_table", table, None);
    let mut parents: Vec<String> = t
        .syntax()
        .descendants()
        .filter_map(ast::Constraint::cast)
        .filter_map(|c| references(&c))
        .collect();
    parents.dedup();
    let mut out: Vec<StatementLock> = if parents.is_empty() {
        vec![base.clone()]
    } else {
        parents
            .into_iter()
            .map(|p| base.clone().parent(Some(p), SRE))
            .collect()
    };
    if let Some(p) = t.partition_of() {
        out.push(StatementLock::new(
            "create_partition",
            Some(on_name(p.syntax())),
            Some(AE),
        ));
    }
    if let Some(i) = t.inherits() {
        for p in i.syntax().descendants().filter_map(ast::PathRef::cast) {
            if p.syntax()
                .parent()
                .is_some_and(|x| ast::PathRef::can_cast(x.kind()))
            {
                continue;
            }
            out.push(StatementLock::new(
                "create_partition",
                Some(name_text(p.syntax())),
                Some(AE),
            ));
        }
    }
    out
}

/// Storage parameters settable under SHARE UPDATE EXCLUSIVE (ALTER TABLE … SET (…)).
fn light_parameter(p: &str) -> bool {
    let p = p.trim().to_lowercase();
    p.starts_with("autovacuum_")
        || p.starts_with("toast.")
        || p.starts_with("vacuum_")
        || matches!(
            p.as_str(),
            "fillfactor"
                | "parallel_workers"
                | "log_autovacuum_min_duration"
                | "toast_tuple_target"
                | "user_catalog_table"
        )
}

fn alter_table(a: &ast::AlterTable) -> Vec<StatementLock> {
    let table = a
        .table_relation_name()
        .and_then(|t| t.table_name_ref())
        .map(|t| name_text(t.syntax()));
    let t = || table.clone();
    let mut out = vec![];
    for action in a.actions() {
        use ast::AlterTableAction as A;
        let c = match &action {
            A::AddColumn(c) => add_column(t(), c),
            A::AddConstraint(c) => match c.constraint() {
                Some(con) => add_constraint(t(), &con),
                None => StatementLock::unknown("ADD CONSTRAINT of no constraint read"),
            },
            A::ValidateConstraint(_) => {
                StatementLock::new("validate_constraint", t(), Some(SUE)).scan(true)
            }
            A::DropConstraint(d) => StatementLock {
                constraint: d.constraint_name_ref().map(|n| name_text(n.syntax())),
                ..StatementLock::new("drop_constraint", t(), Some(AE))
            },
            A::AlterColumn(c) => alter_column(t(), c),
            A::EnableRls(_) | A::DisableRls(_) | A::ForceRls(_) | A::NoForceRls(_) => {
                StatementLock::new("row_level_security", t(), Some(AE))
            }
            A::EnableTrigger(_)
            | A::DisableTrigger(_)
            | A::EnableAlwaysTrigger(_)
            | A::EnableReplicaTrigger(_) => StatementLock::new("alter_trigger", t(), Some(SRE)),
            A::ClusterOn(_) | A::SetWithoutCluster(_) => {
                StatementLock::new("alter_table", t(), Some(SUE))
            }
            A::SetOptions(o) => {
                let params: Vec<String> = o
                    .syntax()
                    .descendants()
                    .filter_map(ast::AttributeOption::cast)
                    .map(|p| {
                        name_text(p.syntax())
                            .split('=')
                            .next()
                            .unwrap_or("")
                            .to_string()
                    })
                    .collect();
                let light = !params.is_empty() && params.iter().all(|p| light_parameter(p));
                StatementLock::new("alter_table", t(), Some(if light { SUE } else { AE }))
            }
            A::SetTablespace(_) | A::SetLogged(_) | A::SetUnlogged(_) | A::SetAccessMethod(_) => {
                StatementLock::new("alter_table_rewrite", t(), Some(AE)).rewrite(true)
            }
            A::AttachPartition(p) => {
                // The parent at SHARE UPDATE EXCLUSIVE, the partition ACCESS EXCLUSIVE,
                // scanned unless a constraint proves the bound.
                out.push(
                    StatementLock::new("attach_partition", Some(on_name(p.syntax())), Some(AE))
                        .scan(true),
                );
                StatementLock::new("attach_partition", t(), Some(SUE))
            }
            A::DetachPartition(p) => {
                let concurrently = p
                    .syntax()
                    .descendants_with_tokens()
                    .any(|e| e.kind() == squawk_syntax::SyntaxKind::CONCURRENTLY_KW);
                let mode = if concurrently { SUE } else { AE };
                out.push(StatementLock::new(
                    "detach_partition",
                    Some(on_name(p.syntax())),
                    Some(AE),
                ));
                StatementLock::new("detach_partition", t(), Some(mode))
            }
            _ => StatementLock::new("alter_table", t(), Some(AE)),
        };
        out.push(c);
    }
    if out.is_empty() {
        out.push(StatementLock::unknown("ALTER TABLE with no action read"));
    }
    out
}

/// ADD COLUMN: ACCESS EXCLUSIVE; a volatile default, a stored generated column, an
/// identity or serial column fills every row (a rewrite); an inline CHECK or REFERENCES
/// is checked against every row.
fn add_column(table: Option<String>, c: &ast::AddColumn) -> StatementLock {
    let mut rewrites = false;
    let mut scans = false;
    let mut parent = None;
    for con in c.constraints() {
        match &con {
            ast::Constraint::DefaultConstraint(d)
                if d.expr().is_some_and(|e| !constant(e.syntax())) =>
            {
                rewrites = true;
            }
            ast::Constraint::GeneratedConstraint(_) => rewrites = true,
            ast::Constraint::CheckConstraint(_) => scans = true,
            ast::Constraint::ReferencesConstraint(_) | ast::Constraint::ForeignKeyConstraint(_) => {
                parent = references(&con);
            }
            _ => {}
        }
    }
    let ty = c
        .ty()
        .map(|t| name_text(t.syntax()).to_lowercase())
        .unwrap_or_default();
    if matches!(
        ty.as_str(),
        "serial" | "bigserial" | "smallserial" | "serial4" | "serial8" | "serial2"
    ) {
        rewrites = true;
    }
    StatementLock::new("add_column", table, Some(AE))
        .scan(scans)
        .rewrite(rewrites)
        .parent(parent, SRE)
}

/// An expression PostgreSQL 11+ stores as the default without touching rows: literals,
/// casts and operators over them, and calls of functions that are not volatile. Only a
/// few well-known stable ones are recognised; anything else counts as volatile.
fn constant(e: &SyntaxNode) -> bool {
    e.descendants().filter_map(ast::CallExpr::cast).all(|call| {
        let f = call
            .expr()
            .map(|x| name_text(x.syntax()).to_lowercase())
            .unwrap_or_default();
        matches!(
            f.trim_start_matches("pg_catalog."),
            "now"
                | "current_timestamp"
                | "current_date"
                | "transaction_timestamp"
                | "statement_timestamp_"
                | "current_setting"
                | "lower"
                | "upper"
                | "jsonb_build_object"
                | "json_build_object"
                | "array"
        )
    })
}

fn add_constraint(table: Option<String>, con: &ast::Constraint) -> StatementLock {
    let not_valid = con.is_not_valid();
    let using_index = con
        .syntax()
        .children()
        .any(|n| ast::UsingIndexName::can_cast(n.kind()));
    match con {
        ast::Constraint::ForeignKeyConstraint(_) | ast::Constraint::ReferencesConstraint(_) => {
            let kind = if not_valid {
                "add_foreign_key_not_valid"
            } else {
                "add_foreign_key"
            };
            StatementLock::new(kind, table, Some(SRE))
                .scan(!not_valid)
                .parent(references(con), SRE)
        }
        ast::Constraint::CheckConstraint(_) => {
            let kind = if not_valid {
                "add_check_not_valid"
            } else {
                "add_check"
            };
            StatementLock::new(kind, table, Some(AE)).scan(!not_valid)
        }
        ast::Constraint::UniqueConstraint(_) | ast::Constraint::PrimaryKeyConstraint(_)
            if using_index =>
        {
            StatementLock::new("add_constraint_using_index", table, Some(AE))
        }
        ast::Constraint::UniqueConstraint(_) | ast::Constraint::PrimaryKeyConstraint(_) => {
            StatementLock::new("add_unique", table, Some(AE)).scan(true)
        }
        _ => StatementLock::new("alter_table", table, Some(AE)).scan(!not_valid),
    }
}

fn alter_column(table: Option<String>, c: &ast::AlterColumn) -> StatementLock {
    use ast::AlterColumnOption as O;
    match c.option() {
        // PostgreSQL 12+ skips the scan when a validated CHECK (col IS NOT NULL) proves it.
        Some(O::SetNotNull(_)) => StatementLock::new("set_not_null", table, Some(AE)).scan(true),
        Some(O::SetType(_)) => {
            StatementLock::new("alter_column_type", table, Some(AE)).rewrite(true)
        }
        Some(O::SetStatistics(_)) | Some(O::SetOptions(_)) | Some(O::ResetOptions(_)) => {
            StatementLock::new("alter_table", table, Some(SUE))
        }
        Some(O::SetExpression(_)) => {
            StatementLock::new("alter_table_rewrite", table, Some(AE)).rewrite(true)
        }
        _ => StatementLock::new("alter_table", table, Some(AE)),
    }
}

/// What stands for a `format()` argument in the text of an `EXECUTE format('…', …)`.
const FORMAT_ARG: &str = "pgi_format_arg";

/// The SQL an `EXECUTE` runs when it can be read from the text: a string literal, or
/// `format()` of one, its `%I`/`%s` placeholders read as a name ([`FORMAT_ARG`]) and `%L`
/// as a literal.
fn executed_text(q: &SyntaxNode) -> Option<String> {
    // A node that is nothing but a string literal (an ARG wraps one).
    let lit = |n: &SyntaxNode| {
        n.descendants()
            .find_map(ast::Literal::cast)
            .filter(|l| name_text(l.syntax()) == name_text(n))
            .and_then(|l| l.decoded_value())
            .map(|v| v.text().to_string())
    };
    // The expression itself: a literal, or a call.
    let expr = q
        .descendants()
        .find(|n| ast::Literal::can_cast(n.kind()) || ast::CallExpr::can_cast(n.kind()))?;
    if name_text(&expr) != name_text(q) {
        return None;
    }
    if let Some(t) = lit(&expr) {
        return Some(t);
    }
    let call = ast::CallExpr::cast(expr)?;
    let f = name_text(call.expr()?.syntax()).to_lowercase();
    if f.trim_start_matches("pg_catalog.") != "format" {
        return None;
    }
    let first = call.arg_list()?.syntax().children().next()?;
    let template = lit(&first)?;
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // %[position$][flags][width]type
        let mut spec = String::new();
        while let Some(&d) = chars.peek() {
            chars.next();
            if d.is_ascii_alphabetic() || d == '%' {
                spec.push(d);
                break;
            }
        }
        match spec.as_str() {
            "%" => out.push('%'),
            "L" => out.push_str("'x'"),
            "I" | "s" => out.push_str(FORMAT_ARG),
            _ => return None,
        }
    }
    Some(out)
}

/// A `DO` block: the statements its PL/pgSQL body runs, directly or as `EXECUTE` of a
/// string literal; `unknown` when it executes a computed string or is in another language.
fn do_block(d: &ast::Do) -> Vec<StatementLock> {
    let Some(body) = d.plpgsql() else {
        return vec![StatementLock::unknown(
            "a DO block whose body is not PL/pgSQL",
        )];
    };
    if let Some(e) = body.errors().first() {
        return vec![StatementLock::unknown(format!(
            "the parser could not read the DO block's body: {}",
            e.message()
        ))];
    }
    let mut out = vec![];
    for n in body.syntax().descendants() {
        if let Some(s) = ast::PlpgsqlExecSqlStmt::cast(n.clone()) {
            if let Some(stmt) = s.stmt() {
                out.extend(
                    locks_of(&stmt)
                        .into_iter()
                        .filter(|c| c.kind != "select" && c.kind != "catalog_only"),
                );
            }
        } else if let Some(x) = ast::PlpgsqlDynExecuteStmt::cast(n.clone()) {
            match x.query().and_then(|q| executed_text(q.syntax())) {
                Some(sql) => {
                    let locks = statement_locks(&sql);
                    if locks
                        .iter()
                        .any(|c| c.table.as_deref().is_some_and(|t| t.contains(FORMAT_ARG)))
                    {
                        return vec![StatementLock::unknown(
                            "the DO block EXECUTEs a format() whose table is an argument",
                        )];
                    }
                    out.extend(locks);
                }
                None => {
                    return vec![StatementLock::unknown(
                        "the DO block EXECUTEs a string computed at run time",
                    )]
                }
            }
        }
    }
    if let Some(u) = out.iter().find(|c| c.kind == "unknown") {
        return vec![u.clone()];
    }
    if out.is_empty() {
        out.push(StatementLock::new("do_block", None, None));
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
    matches!(parse::parse_one(stmt), Ok(ast::Stmt::Begin(_)))
}

/// Is this statement the `COMMIT` (or `END`) of a block?
pub fn is_commit(stmt: &str) -> bool {
    matches!(parse::parse_one(stmt), Ok(ast::Stmt::Commit(_)))
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
                unknown.push(format!(
                    "{} ({})",
                    stmt.lines().next().unwrap_or(""),
                    c.unknown_because.as_deref().unwrap_or("not recognised")
                ));
                continue;
            }
            if c.kind == "create_table" {
                if let Some(t) = &c.table {
                    created.push(table_key(t));
                }
            }
            // A dropped index: the index's own table is what it locks; its name says
            // nothing of which table that is, so a DROP INDEX (not CONCURRENTLY) counts as
            // a table of its own.
            if c.kind == "drop_index" {
                if let Some(i) = &c.table {
                    put(&mut own, &format!("index {i}"), "ACCESS EXCLUSIVE");
                }
            } else if let (Some(t), Some(mode)) = (&c.table, c.lock) {
                if strength(mode) > 0 && c.kind != "drop_index_concurrently" {
                    put(&mut own, t, mode);
                }
            }
            if let Some((p, mode)) = &c.also {
                put(&mut parents, p, mode);
            }
            // A dropped foreign key locks its parent too.
            let mut fk_drop = false;
            if let (Some(t), Some(k)) = (&c.table, &c.constraint) {
                if let Some(p) = fk_parent(t, k) {
                    dropped_fk_parents.push(table_key(&p));
                    fk_drop = true;
                }
            }
            if c.lock.is_some() && !fk_drop {
                only_fk_drops = false;
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
    let statements = parse::split(sql);
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
        let kinds: Vec<&str> = statement_locks(
            "alter table t drop constraint k, add constraint k2 unique using index k2",
        )
        .iter()
        .map(|c| c.kind)
        .collect();
        assert_eq!(kinds, ["drop_constraint", "add_constraint_using_index"]);
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
        assert_eq!(classify("select 1").kind, "catalog_only");
        assert_eq!(classify("select f()").kind, "unknown");
        assert_eq!(classify("call p()").kind, "unknown");
        let bad = classify("alter tabel t add column a int");
        assert_eq!(bad.kind, "unknown");
        assert!(bad.unknown_because.unwrap().contains("parser"));
        assert!(classify("alter table t alter column a type bigint").rewrites);
        assert_eq!(blocks("SHARE ROW EXCLUSIVE"), "writes");
    }

    #[test]
    fn do_blocks_are_read_for_the_statements_they_run() {
        let l = statement_locks(
            "do $$ begin if true then alter table public.t add constraint k check (a > 0) not valid; end if; end $$",
        );
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(
            (l[0].kind, l[0].table.as_deref()),
            ("add_check_not_valid", Some("public.t"))
        );
        let l = statement_locks(
            "do $$ begin execute 'alter table u enable row level security'; end $$",
        );
        assert_eq!(
            (l[0].kind, l[0].table.as_deref()),
            ("row_level_security", Some("u"))
        );
        let l = statement_locks(
            "do $$ begin execute format('alter table %I add column a int', 't'); end $$",
        );
        assert_eq!(l[0].kind, "unknown", "{l:?}");
        assert_eq!(
            statement_locks("do $$ begin perform 1; end $$")[0].kind,
            "do_block"
        );
    }

    #[test]
    fn each_action_and_each_parent() {
        let l = statement_locks(
            "alter table only c add column x int default random(), add constraint f foreign key (p) references p (id), alter column y type bigint",
        );
        let got: Vec<(&str, bool, bool)> =
            l.iter().map(|c| (c.kind, c.scans, c.rewrites)).collect();
        assert_eq!(
            got,
            [
                ("add_column", true, true),
                ("add_foreign_key", true, false),
                ("alter_column_type", true, true)
            ]
        );
        assert_eq!(l[1].also, Some(("p".into(), "SHARE ROW EXCLUSIVE")));
        assert!(!statement_locks("alter table c add column x int default 0")[0].rewrites);
        let l = statement_locks("create table c (id int primary key, a int references a, b int references public.b (id))");
        let parents: Vec<&str> = l
            .iter()
            .filter_map(|c| c.also.as_ref().map(|a| a.0.as_str()))
            .collect();
        assert_eq!(parents, ["a", "public.b"]);
        let l = statement_locks("alter table t set (autovacuum_vacuum_scale_factor = 0.01)");
        assert_eq!(l[0].lock, Some("SHARE UPDATE EXCLUSIVE"));
        assert_eq!(
            classify("comment on column public.t.a is 'x'")
                .table
                .as_deref(),
            Some("public.t")
        );
        assert_eq!(classify("update t set a = 1").lock, Some("ROW EXCLUSIVE"));
        assert!(
            is_begin("BEGIN")
                && is_begin("start transaction")
                && is_commit("commit")
                && is_commit("end")
        );
        assert!(!is_begin("do $$ begin perform 1; end $$"));
    }
}

//! The check catalog: one TOML file per check under `checks/` (compiled in), plus
//! `--checks DIR` directories that add or override checks by id, plus SQL building
//! blocks under `checks/lib/` that checks name in `uses` and the engine prepends as CTEs.

use crate::checks::params;
use crate::checks::partition;
use crate::diag::{did_you_mean, Problem, Problems, SourceFile};
use crate::model::{Kind, Severity, Status};
use include_dir::{include_dir, Dir};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use toml::Spanned;

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/checks");

/// Sections of SPEC §5, in report order, with their display names.
pub const SECTIONS: &[(&str, &str)] = &[
    ("schema", "Migration/Schema"),
    ("tenancy", "Multi-Tenant"),
    ("transactions", "Transaction Usage"),
    ("locking", "Locking"),
    ("queries", "Query Patterns"),
    ("races", "Race Conditions"),
    ("pool", "Connection Pool"),
    ("rls", "Row Level Security"),
    ("functions", "Data Integrity Functions"),
    ("isolation", "Tenant Isolation Probes"),
    ("data", "Data Integrity"),
];

pub fn section_title(section: &str) -> &str {
    SECTIONS
        .iter()
        .find(|(s, _)| *s == section)
        .map_or(section, |(_, t)| t)
}

pub fn section_rank(section: &str) -> usize {
    SECTIONS
        .iter()
        .position(|(s, _)| *s == section)
        .unwrap_or(SECTIONS.len())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    id: Spanned<String>,
    section: Spanned<String>,
    title: String,
    severity: Spanned<String>,
    kind: Spanned<String>,
    description: String,
    #[serde(default)]
    remediation: String,
    #[serde(default)]
    guidance: Option<String>,
    #[serde(default)]
    fixed_by: Vec<String>,
    #[serde(default)]
    params: Vec<Spanned<String>>,
    #[serde(default)]
    uses: Vec<Spanned<String>>,
    #[serde(default)]
    requires: Requires,
    #[serde(default)]
    strict: bool,
    /// A probe that writes (always rolled back): runs only with `--probe write`.
    #[serde(default)]
    writes: bool,
    #[serde(default)]
    cost: Option<u32>,
    #[serde(default)]
    sql: Option<Spanned<String>>,
    #[serde(default, rename = "test")]
    tests: Vec<RawTest>,
    /// How a finding is fixed (`pg-integrity fix`): see [`FixTemplate`].
    #[serde(default)]
    fix: Option<FixTemplate>,
}

/// `[fix]`: how `pg-integrity fix` turns a finding into migration statements (SPEC §3,
/// §7; docs/fix.md). `{name}` placeholders are filled from the finding's extra columns
/// `fix_<name>` (returned by the check's query, identifiers already quoted there with
/// quote_ident/format('%I')); `{name:ident}` and `{name:literal}` quote the value
/// when filling. `{object}` is the finding's object (for comments).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixTemplate {
    /// Migration name stem, e.g. `fk_indexes` (letters, digits, underscores).
    pub name: String,
    /// One line said in each migration's header: what the fix does.
    pub summary: String,
    /// Run in this order; each step becomes its own migration(s), later than the
    /// step before it for every finding.
    #[serde(default, rename = "step")]
    pub steps: Vec<FixStep>,
    /// A data question a person must answer first (NULL rows, orphans, duplicates).
    #[serde(default)]
    pub decision: Option<FixDecision>,
    /// Written only when the check is named in `fix --only` (a new table is a design
    /// decision); otherwise its findings are left to a person, saying so.
    #[serde(default)]
    pub only_when_asked: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixStep {
    /// false: a no-transaction migration, statement by statement (CREATE INDEX
    /// CONCURRENTLY, VALIDATE); its statements must be safe to re-run.
    #[serde(default = "yes")]
    pub transaction: bool,
    /// Only for findings whose field `fix_<when>` is true (with `each`: judged per
    /// element, so `when` may name one of the `fix_<each>_*` lists).
    #[serde(default)]
    pub when: Option<String>,
    /// Once per element of the text[] field `fix_<each>` (`{<each>}` is the element);
    /// the text[] fields `fix_<each>_*` are taken element by element alongside. In a
    /// transaction, each element is a migration of its own.
    #[serde(default)]
    pub each: Option<String>,
    pub sql: String,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixDecision {
    /// A read-only query returning one number: the rows a person must decide about.
    pub count: String,
    /// What the person must decide, written as the migration's `-- TODO(pg-integrity):`.
    pub todo: String,
}

/// What a check needs before it can run; a missing one makes it `skipped`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// Minimum `server_version_num`.
    pub server_version: Option<i32>,
    /// An extension that must be installed in the database.
    pub extension: Option<String>,
    /// Parameters that must not be empty (e.g. `app_roles`).
    #[serde(default)]
    pub config: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: String,
    #[serde(default)]
    setup: String,
    expect: Spanned<String>,
    #[serde(default)]
    failing: Option<Vec<String>>,
    #[serde(default)]
    unknown: Option<Vec<String>>,
    #[serde(default)]
    related: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    evidence: Vec<String>,
    #[serde(default)]
    config: Option<toml::Table>,
    #[serde(default)]
    min_server_version: Option<i32>,
    #[serde(default)]
    max_server_version: Option<i32>,
    #[serde(default)]
    preloaded: Vec<String>,
    #[serde(default)]
    not_preloaded: Vec<String>,
    #[serde(default)]
    evidence_absent: Vec<String>,
    #[serde(default)]
    reconnect: bool,
}

/// One `[[test]]` case of a check.
#[derive(Debug, Clone)]
pub struct TestCase {
    pub name: String,
    pub setup: String,
    pub expect: Status,
    /// When given, exactly these objects must be reported not ok.
    pub failing: Option<Vec<String>>,
    /// When given, exactly these objects must be unknown (ok NULL).
    pub unknown: Option<Vec<String>>,
    /// Object -> exactly the related objects its row must carry.
    pub related: std::collections::BTreeMap<String, Vec<String>>,
    /// Each of these must appear in the evidence of some row (ok or not).
    pub evidence: Vec<String>,
    /// Configuration for this case, written as in `pg-integrity.toml`.
    pub config: Option<String>,
    pub min_server_version: Option<i32>,
    /// Run only on servers up to this version (a case about an older server's gap).
    pub max_server_version: Option<i32>,
    /// Libraries that must be in shared_preload_libraries (else the case is skipped).
    pub preloaded: Vec<String>,
    /// Libraries that must not be preloaded (for "installed but not loaded" cases).
    pub not_preloaded: Vec<String>,
    /// None of these may appear in any row's evidence (nor a skipped check's reason).
    pub evidence_absent: Vec<String>,
    /// The check runs on a new connection opened after the setup (whose session
    /// stays open), so that login-time settings the setup made apply to it.
    pub reconnect: bool,
}

/// A check, validated.
#[derive(Debug, Clone)]
pub struct Check {
    pub id: String,
    pub section: String,
    pub title: String,
    pub severity: Severity,
    pub kind: Kind,
    pub description: String,
    pub remediation: String,
    pub guidance: Option<String>,
    pub fixed_by: Vec<String>,
    pub params: Vec<String>,
    pub uses: Vec<String>,
    pub requires: Requires,
    pub strict: bool,
    /// A probe that writes inside rolled-back transactions (`--probe write` only).
    pub writes: bool,
    /// Relative cost of the check's own SQL beyond its building blocks (`cost = N`,
    /// default 1, same units as a fragment's `-- cost:`), used to share batches out.
    pub cost: u32,
    pub sql: Option<String>,
    pub tests: Vec<TestCase>,
    /// `[fix]`: how `pg-integrity fix` fixes a finding, if it can.
    pub fix: Option<FixTemplate>,
    pub file: SourceFile,
    /// Byte offset of the SQL text inside `file`, when it can be mapped exactly.
    pub sql_offset: Option<usize>,
}

/// A SQL building block from `checks/lib/NAME.sql`, prepended as `NAME AS (...)`.
/// Header comments declare what it needs: `-- params: a, b` and `-- requires: x, y`.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub name: String,
    pub params: Vec<String>,
    pub requires: Vec<String>,
    /// Relative cost (`-- cost: N`, default 1; roughly 10 ms at 5,000 tables), used
    /// to share batched checks out between connections.
    pub cost: u32,
    /// `-- opens: tables`: it deparses expressions (`pg_get_expr` and the like), which
    /// opens each table concerned: a cost paid once per connection, whichever
    /// building blocks share it ([`OPEN_TABLES`]).
    pub opens_tables: bool,
    pub body: String,
    pub file: SourceFile,
}

impl AsRef<Check> for Check {
    fn as_ref(&self) -> &Check {
        self
    }
}

/// What opening one more batch (connection) costs, in `-- cost:` units.
const NEW_BATCH: u32 = 3;

/// What opening the tables to deparse their expressions costs a connection the
/// first time (their relation cache entries are built), in `-- cost:` units.
const OPEN_TABLES: u32 = 10;

/// The pseudo building block standing for [`OPEN_TABLES`] in a batch's blocks.
const OPENED_TABLES: &str = "(tables opened to deparse)";

/// The SQL sent to the server for one check.
#[derive(Debug, Clone)]
pub struct Composed {
    pub sql: String,
    /// Parameter names in `$n` order.
    pub params: Vec<String>,
    /// Character offset of the check's own SQL inside `sql`.
    pub check_char_offset: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub checks: BTreeMap<String, Check>,
    pub fragments: BTreeMap<String, Fragment>,
}

struct FileText {
    name: String,
    stem: String,
    text: String,
}

impl Catalog {
    /// The built-in checks plus every directory given, later ones overriding by id.
    pub fn load(dirs: &[impl AsRef<Path>]) -> Result<Self, Problems> {
        let mut checks = vec![];
        let mut libs = vec![];
        collect_embedded(&EMBEDDED, &mut checks, &mut libs);
        for dir in dirs {
            collect_dir(dir.as_ref(), &mut checks, &mut libs)?;
        }
        Self::build(checks, libs)
    }

    /// Only the checks in `dirs` (for `checks validate DIR`), with the built-in
    /// fragments available.
    pub fn load_only(dirs: &[impl AsRef<Path>]) -> Result<Self, Problems> {
        let mut checks = vec![];
        let mut libs = vec![];
        let mut ignored = vec![];
        collect_embedded(&EMBEDDED, &mut ignored, &mut libs);
        for dir in dirs {
            collect_dir(dir.as_ref(), &mut checks, &mut libs)?;
        }
        Self::build(checks, libs)
    }

    fn build(checks: Vec<FileText>, libs: Vec<FileText>) -> Result<Self, Problems> {
        let mut problems = vec![];
        let mut catalog = Catalog::default();
        for lib in libs {
            let frag = parse_fragment(lib);
            catalog.fragments.insert(frag.name.clone(), frag);
        }
        for frag in catalog.fragments.values() {
            for p in &frag.params {
                if !params::is_known(p) {
                    problems.push(frag.file.problem(
                        format!("fragment {} names unknown parameter `{p}`", frag.name),
                        None,
                        "",
                        params::suggest(p),
                    ));
                }
            }
            for r in &frag.requires {
                if !catalog.fragments.contains_key(r) {
                    problems.push(frag.file.problem(
                        format!("fragment {} requires unknown fragment `{r}`", frag.name),
                        None,
                        "",
                        None,
                    ));
                }
            }
        }
        for file in checks {
            match parse_check(&file, &catalog.fragments) {
                Ok(check) => {
                    catalog.checks.insert(check.id.clone(), check);
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(Problems::new(problems))
        }
    }

    pub fn ids(&self) -> Vec<&str> {
        self.checks.keys().map(String::as_str).collect()
    }

    /// Checks in report order: by section, then id.
    pub fn ordered(&self) -> Vec<&Check> {
        let mut v: Vec<&Check> = self.checks.values().collect();
        v.sort_by(|a, b| (section_rank(&a.section), &a.id).cmp(&(section_rank(&b.section), &b.id)));
        v
    }

    /// Split checks into at most `n` batches for `n` connections, so that the costliest
    /// batch is as cheap as it can be made (see [`crate::checks::partition`]): a batch costs
    /// its building blocks' `-- cost:`, each counted once, its checks' own `cost`,
    /// [`NEW_BATCH`] for the connection, and [`OPEN_TABLES`] once if a block opens
    /// tables to deparse.
    pub fn partition_batch<T: AsRef<Check>>(
        &self,
        items: Vec<(usize, T)>,
        n: usize,
    ) -> Vec<Vec<(usize, T)>> {
        let needs: Vec<partition::Item> = items
            .iter()
            .map(|(_, c)| {
                let frags = self.fragment_order(&c.as_ref().uses);
                let opens = frags.iter().any(|f| f.opens_tables);
                partition::Item {
                    blocks: frags
                        .into_iter()
                        .map(|f| f.name.clone())
                        .chain(opens.then(|| OPENED_TABLES.to_string()))
                        .collect(),
                    own: c.as_ref().cost,
                }
            })
            .collect();
        let block = |name: &str| match self.fragments.get(name) {
            Some(f) => f.cost,
            None if name == OPENED_TABLES => OPEN_TABLES,
            None => 0,
        };
        let costs = partition::Costs {
            block: &block,
            new_batch: NEW_BATCH,
        };
        let at = partition::assign(&needs, n, &costs);
        let mut out: Vec<Vec<(usize, T)>> = (0..n.max(1)).map(|_| vec![]).collect();
        for (item, b) in items.into_iter().zip(at) {
            out[b].push(item);
        }
        out.retain(|b| !b.is_empty());
        for b in &mut out {
            b.sort_by_key(|(i, _)| *i);
        }
        out
    }

    /// The fragments `uses` needs, dependencies first.
    fn fragment_order(&self, uses: &[String]) -> Vec<&Fragment> {
        fn visit<'a>(
            cat: &'a Catalog,
            name: &str,
            seen: &mut BTreeSet<String>,
            out: &mut Vec<&'a Fragment>,
        ) {
            if !seen.insert(name.to_string()) {
                return;
            }
            if let Some(f) = cat.fragments.get(name) {
                for r in &f.requires {
                    visit(cat, r, seen, out);
                }
                out.push(f);
            }
        }
        let mut seen = BTreeSet::new();
        let mut out = vec![];
        for u in uses {
            visit(self, u, &mut seen, &mut out);
        }
        out
    }

    /// The `with recursive params as (...), fragment as (...)...` head shared by
    /// `checks`, and the parameter names in `$n` order.
    fn compose_head(&self, checks: &[&Check]) -> (String, Vec<String>) {
        let uses: Vec<String> = checks.iter().flat_map(|c| c.uses.iter().cloned()).collect();
        let frags = self.fragment_order(&uses);
        let mut names: Vec<String> = vec![];
        let own = checks.iter().flat_map(|c| c.params.iter());
        for p in own.chain(frags.iter().flat_map(|f| f.params.iter())) {
            if !names.contains(p) {
                names.push(p.clone());
            }
        }
        let config = crate::config::Config::default();
        let cols: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let ty = params::value(&config, n).map_or("text", |v| v.sql_type());
                format!("${}::{ty} as {n}", i + 1)
            })
            .collect();
        let mut out = String::from("with recursive params as (select ");
        if cols.is_empty() {
            out.push_str("true as _none");
        } else {
            out.push_str(&cols.join(", "));
        }
        out.push(')');
        for f in &frags {
            // Not forced MATERIALIZED: PostgreSQL inlines a block used once (so filters
            // reach the catalog indexes) and materializes one used several times.
            out.push_str(&format!(",\n{} as (\n{}\n)", f.name, f.body.trim_end()));
        }
        (out, names)
    }

    /// One statement for several checks: the fragments they use are computed once
    /// (PostgreSQL materializes a CTE referenced more than once) and each check's
    /// rows come back tagged with its position in `checks` (first column, int4),
    /// followed by object, ok, evidence. Nothing is cast: a check whose columns have
    /// the wrong types fails the statement, and the runner then runs each check on
    /// its own, where that check gets the error.
    pub fn compose_batch(&self, checks: &[&Check]) -> Composed {
        let (mut out, names) = self.compose_head(checks);
        let mut arms = vec![];
        for (k, c) in checks.iter().enumerate() {
            let sql = c
                .sql
                .as_deref()
                .unwrap_or("select null::text, null::bool, null::text where false");
            let sql = sql.trim_end().trim_end_matches(';');
            // A check's own WITH may rely on the RECURSIVE of the composed statement.
            let (sql, with) = blank_leading_with(sql);
            let with = if with { "with recursive" } else { "" };
            out.push_str(&format!(
                ",\n-- {}\npgi_check_{k}(object, ok, evidence) as (\n{with}{sql}\n)",
                c.id
            ));
            // A passing row's evidence is shown only when it is a check's one row:
            // past the first row, it is not sent (a 5,000-table audit passes
            // ~110,000 rows, ~5 MB of text).
            // A finding's `related` objects, when the check returns that column (read
            // by name from the row, so checks without it need no placeholder).
            arms.push(format!(
                "select {k} as pgi_check, object, ok, \
                 case when ok and row_number() over () > 1 then null else evidence end, \
                 case when ok is not true then \
                 array(select jsonb_array_elements_text(to_jsonb(c) -> 'related')) end \
                 from pgi_check_{k} c"
            ));
        }
        if arms.is_empty() {
            arms.push(
                "select 0, null::text, null::boolean, null::text, null::text[] where false".into(),
            );
        }
        out.push('\n');
        out.push_str(&arms.join("\nunion all\n"));
        Composed {
            sql: out,
            params: names,
            check_char_offset: 0,
        }
    }

    /// A statement over the building blocks `uses` (and what they require), for the
    /// engine's own questions (what is in scope), composed as a check's would be.
    pub fn compose_query(&self, uses: &[&str], sql: &str) -> Composed {
        let probe = Check {
            uses: uses.iter().map(|u| u.to_string()).collect(),
            params: vec![],
            sql: Some(sql.to_string()),
            ..self
                .checks
                .values()
                .next()
                .cloned()
                .expect("the catalog has checks")
        };
        self.compose(&probe)
    }

    /// Build the statement for `check`: a `params` CTE binding every parameter, the
    /// fragments it uses, then its own SQL (whose leading `WITH` is merged in).
    pub fn compose(&self, check: &Check) -> Composed {
        let sql = check
            .sql
            .as_deref()
            .unwrap_or("select null::text, null::bool, null::text where false");
        let (mut out, names) = self.compose_head(&[check]);
        let own = blank_leading_with(sql);
        out.push_str(if own.1 { ",\n" } else { "\n" });
        let check_char_offset = out.chars().count();
        out.push_str(&own.0);
        Composed {
            sql: out,
            params: names,
            check_char_offset,
        }
    }

    /// Map a server error position (1-based characters in the composed SQL) to a byte
    /// range in the check's file, when it falls inside the check's own SQL.
    pub fn error_span(
        &self,
        check: &Check,
        composed: &Composed,
        position: usize,
    ) -> Option<std::ops::Range<usize>> {
        let base = check.sql_offset?;
        let sql = check.sql.as_deref()?;
        let idx = position
            .checked_sub(1)?
            .checked_sub(composed.check_char_offset)?;
        let byte = sql.char_indices().nth(idx).map(|(b, _)| b)?;
        Some(base + byte..base + byte + 1)
    }
}

/// Replace a leading `with [recursive]` by spaces (keeping offsets) and say whether it was there.
fn blank_leading_with(sql: &str) -> (String, bool) {
    let mut i = 0;
    let bytes = sql.as_bytes();
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if sql[i..].starts_with("--") {
            i = sql[i..].find('\n').map_or(sql.len(), |n| i + n);
        } else {
            break;
        }
    }
    let word = |at: usize, w: &str| {
        sql.len() >= at + w.len()
            && sql[at..at + w.len()].eq_ignore_ascii_case(w)
            && sql[at + w.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_whitespace())
    };
    if !word(i, "with") {
        return (sql.to_string(), false);
    }
    let mut end = i + 4;
    let mut j = end;
    while j < bytes.len() && bytes[j].is_ascii_whitespace() {
        j += 1;
    }
    if word(j, "recursive") {
        end = j + "recursive".len();
    }
    let mut s = String::with_capacity(sql.len());
    s.push_str(&sql[..i]);
    s.push_str(&" ".repeat(end - i));
    s.push_str(&sql[end..]);
    (s, true)
}

fn parse_fragment(file: FileText) -> Fragment {
    let mut params = vec![];
    let mut requires = vec![];
    let mut cost = 1;
    let mut opens_tables = false;
    for line in file.text.lines() {
        let l = line.trim();
        let list = |rest: &str| -> Vec<String> {
            rest.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        if let Some(rest) = l.strip_prefix("-- params:") {
            params.extend(list(rest));
        } else if let Some(rest) = l.strip_prefix("-- requires:") {
            requires.extend(list(rest));
        } else if let Some(rest) = l.strip_prefix("-- cost:") {
            cost = rest.trim().parse().unwrap_or(1);
        } else if let Some(rest) = l.strip_prefix("-- opens:") {
            opens_tables = rest.trim() == "tables";
        }
    }
    Fragment {
        name: file.stem.clone(),
        params,
        requires,
        cost,
        opens_tables,
        body: file.text.clone(),
        file: SourceFile::new(file.name, file.text),
    }
}

fn collect_embedded(dir: &Dir<'_>, checks: &mut Vec<FileText>, libs: &mut Vec<FileText>) {
    for file in dir.files() {
        let path = file.path();
        let Some(text) = file.contents_utf8() else {
            continue;
        };
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let ft = FileText {
            name: format!("checks/{}", path.display()),
            stem,
            text: text.to_string(),
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => checks.push(ft),
            Some("sql") if path.starts_with("lib") => libs.push(ft),
            _ => {}
        }
    }
    for sub in dir.dirs() {
        collect_embedded(sub, checks, libs);
    }
}

fn collect_dir(
    dir: &Path,
    checks: &mut Vec<FileText>,
    libs: &mut Vec<FileText>,
) -> Result<(), Problems> {
    let unreadable = |p: &Path, e: std::io::Error| {
        Problems::new(vec![SourceFile::new(p.display().to_string(), "").problem(
            format!("cannot read {}: {e}", p.display()),
            None,
            "",
            Some("--checks takes a directory of check files (*.toml)".into()),
        )])
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| unreadable(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "lib") {
                let mut sqls: Vec<_> = std::fs::read_dir(&path)
                    .map_err(|e| unreadable(&path, e))?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "sql"))
                    .collect();
                sqls.sort();
                for sql in sqls {
                    libs.push(read(&sql).map_err(|e| unreadable(&sql, e))?);
                }
            } else {
                collect_dir(&path, checks, libs)?;
            }
        } else if path.extension().is_some_and(|e| e == "toml") {
            checks.push(read(&path).map_err(|e| unreadable(&path, e))?);
        }
    }
    Ok(())
}

fn read(path: &Path) -> std::io::Result<FileText> {
    Ok(FileText {
        name: path.display().to_string(),
        stem: path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string(),
        text: std::fs::read_to_string(path)?,
    })
}

/// Byte offset where a TOML string's content starts, given the span of the literal.
fn string_content_offset(text: &str, span: std::ops::Range<usize>) -> Option<usize> {
    let lit = text.get(span.clone())?;
    let (delim, escapes) = if lit.starts_with("\"\"\"") {
        (3, true)
    } else if lit.starts_with("'''") {
        (3, false)
    } else if lit.starts_with('"') {
        (1, true)
    } else {
        (1, false)
    };
    // With escapes in a basic string, offsets would drift: don't pretend.
    if escapes && lit.contains('\\') {
        return None;
    }
    let mut start = span.start + delim;
    if delim == 3 {
        if text[start..].starts_with("\r\n") {
            start += 2;
        } else if text[start..].starts_with('\n') {
            start += 1;
        }
    }
    Some(start)
}

fn parse_check(
    file: &FileText,
    fragments: &BTreeMap<String, Fragment>,
) -> Result<Check, Vec<Problem>> {
    let src = SourceFile::new(file.name.clone(), file.text.clone());
    let raw: RawCheck = toml::from_str(&file.text).map_err(|e| {
        vec![src.problem(
            format!("invalid check file: {}", e.message()),
            e.span(),
            "here",
            Some(
                "a check has id, section, title, severity, kind, description and sql (docs/writing-checks.md)"
                    .into(),
            ),
        )]
    })?;
    let mut problems = vec![];
    let id = raw.id.get_ref().clone();
    if id != file.stem {
        problems.push(src.problem(
            format!(
                "check id `{id}` does not match its file name `{}.toml`",
                file.stem
            ),
            Some(raw.id.span()),
            "id",
            Some(format!("rename the file to {id}.toml or change the id")),
        ));
    }
    match id.split_once('.') {
        Some((section, name)) if !name.is_empty() => {
            if section != raw.section.get_ref() {
                problems.push(src.problem(
                    format!(
                        "section `{}` does not match the id's prefix `{section}`",
                        raw.section.get_ref()
                    ),
                    Some(raw.section.span()),
                    "section",
                    None,
                ));
            }
        }
        _ => problems.push(src.problem(
            format!("check id `{id}` is not of the form section.name"),
            Some(raw.id.span()),
            "id",
            None,
        )),
    }
    let severity = Severity::parse(raw.severity.get_ref());
    if severity.is_none() {
        problems.push(src.problem(
            format!("unknown severity `{}`", raw.severity.get_ref()),
            Some(raw.severity.span()),
            "severity",
            Some("use one of critical, high, medium, low".into()),
        ));
    }
    let kind = match raw.kind.get_ref().as_str() {
        "catalog" => Some(Kind::Catalog),
        "runtime" => Some(Kind::Runtime),
        "data" => Some(Kind::Data),
        "probe" => Some(Kind::Probe),
        "manual" => Some(Kind::Manual),
        _ => None,
    };
    if kind.is_none() {
        problems.push(src.problem(
            format!("unknown kind `{}`", raw.kind.get_ref()),
            Some(raw.kind.span()),
            "kind",
            Some("use one of catalog, runtime, data, probe, manual".into()),
        ));
    }
    let manual = kind == Some(Kind::Manual);
    match (&raw.sql, manual) {
        (None, false) => problems.push(src.problem(
            format!("check {id} has no sql"),
            Some(raw.kind.span()),
            "an automated check",
            Some("add sql = \"\"\"select object, ok, evidence ...\"\"\", or make it kind = \"manual\"".into()),
        )),
        (Some(sql), true) => problems.push(src.problem(
            "a manual check carries guidance, not sql",
            Some(sql.span()),
            "remove this",
            None,
        )),
        (None, true) if raw.guidance.is_none() => problems.push(src.problem(
            format!("manual check {id} has no guidance"),
            Some(raw.kind.span()),
            "manual",
            Some("add guidance = \"what to look for and how to verify it\"".into()),
        )),
        _ => {}
    }
    for p in &raw.params {
        if !params::is_known(p.get_ref()) {
            problems.push(src.problem(
                format!("unknown parameter `{}`", p.get_ref()),
                Some(p.span()),
                "parameter",
                params::suggest(p.get_ref()),
            ));
        }
    }
    for u in &raw.uses {
        if !fragments.contains_key(u.get_ref()) {
            problems.push(src.problem(
                format!("unknown fragment `{}`", u.get_ref()),
                Some(u.span()),
                "not in checks/lib",
                did_you_mean(u.get_ref(), fragments.keys().map(String::as_str)),
            ));
        }
    }
    for c in &raw.requires.config {
        if !params::is_known(c) {
            problems.push(src.problem(
                format!("requires.config names unknown parameter `{c}`"),
                None,
                "",
                None,
            ));
        }
    }
    let mut tests = vec![];
    for t in raw.tests {
        let Some(expect) = Status::parse(t.expect.get_ref()).filter(|s| {
            matches!(
                s,
                Status::Pass
                    | Status::Partial
                    | Status::Fail
                    | Status::NotApplicable
                    | Status::Skipped
            )
        }) else {
            problems.push(src.problem(
                format!(
                    "test `{}` expects unknown status `{}`",
                    t.name,
                    t.expect.get_ref()
                ),
                Some(t.expect.span()),
                "expect",
                Some("use pass, fail, partial, not_applicable or skipped".into()),
            ));
            continue;
        };
        let config = match t.config {
            Some(table) => match toml::to_string(&table) {
                Ok(s) => {
                    if let Err(e) = crate::config::LoadedConfig::parse("test config", &s) {
                        problems.push(src.problem(
                            format!("test `{}` has an invalid config: {}", t.name, e.summary),
                            Some(t.expect.span()),
                            "in this test",
                            None,
                        ));
                    }
                    Some(s)
                }
                Err(e) => {
                    problems.push(src.problem(format!("test `{}`: {e}", t.name), None, "", None));
                    None
                }
            },
            None => None,
        };
        tests.push(TestCase {
            name: t.name,
            setup: t.setup,
            expect,
            failing: t.failing,
            unknown: t.unknown,
            related: t.related,
            evidence: t.evidence,
            config,
            min_server_version: t.min_server_version,
            max_server_version: t.max_server_version,
            preloaded: t.preloaded,
            not_preloaded: t.not_preloaded,
            evidence_absent: t.evidence_absent,
            reconnect: t.reconnect,
        });
    }
    if !manual && kind.is_some() {
        let has = |f: fn(Status) -> bool| tests.iter().any(|t| f(t.expect));
        if !has(|s| s == Status::Pass) || !has(|s| s == Status::Fail || s == Status::Partial) {
            problems.push(src.problem(
                format!("check {id} needs a [[test]] that passes and one that fails"),
                Some(raw.id.span()),
                "this check",
                Some("add [[test]] cases with expect = \"pass\" and expect = \"fail\"".into()),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let sql_offset = raw
        .sql
        .as_ref()
        .and_then(|s| string_content_offset(&file.text, s.span()));
    Ok(Check {
        id,
        section: raw.section.into_inner(),
        title: raw.title,
        severity: severity.unwrap_or(Severity::Low),
        kind: kind.unwrap_or(Kind::Manual),
        description: raw.description,
        remediation: raw.remediation,
        guidance: raw.guidance,
        fixed_by: raw.fixed_by,
        params: raw.params.into_iter().map(Spanned::into_inner).collect(),
        uses: raw.uses.into_iter().map(Spanned::into_inner).collect(),
        requires: raw.requires,
        strict: raw.strict,
        writes: raw.writes,
        cost: raw.cost.unwrap_or(1),
        sql: raw.sql.map(Spanned::into_inner),
        tests,
        fix: raw.fix,
        file: src,
        sql_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(stem: &str, text: &str) -> FileText {
        FileText {
            name: format!("{stem}.toml"),
            stem: stem.into(),
            text: text.into(),
        }
    }

    const GOOD: &str = r#"
id = "demo.x"
section = "demo"
title = "Demo"
severity = "low"
kind = "catalog"
description = "d"
params = ["schemas"]
sql = """
with t as (select 1)
select 'o'::text as object, true as ok, ''::text as evidence from t
"""
[[test]]
name = "p"
expect = "pass"
[[test]]
name = "f"
expect = "fail"
"#;

    #[test]
    fn composes_params_and_merges_with() {
        let cat = Catalog::build(vec![file("demo.x", GOOD)], vec![]).unwrap();
        let check = &cat.checks["demo.x"];
        let c = cat.compose(check);
        assert!(c
            .sql
            .starts_with("with recursive params as (select $1::text[] as schemas)"));
        assert!(
            c.sql
                .contains("(select $1::text[] as schemas),\n     t as (select 1)"),
            "{}",
            c.sql
        );
        assert_eq!(c.params, vec!["schemas"]);
        // error positions map back into the file
        let pos = c.check_char_offset + 5 + 1; // the `t` of `t as`
        let span = cat.error_span(check, &c, pos).unwrap();
        assert_eq!(&GOOD[span.start..span.start + 4], "t as");
    }

    #[test]
    fn reports_every_problem_of_a_file() {
        let bad = GOOD
            .replace("\"low\"", "\"urgent\"")
            .replace("[\"schemas\"]", "[\"schema\"]");
        let err = Catalog::build(vec![file("demo.y", &bad)], vec![]).unwrap_err();
        let msgs: Vec<_> = err.problems.iter().map(|p| p.message.clone()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
    }

    #[test]
    fn fragments_come_first_with_their_params() {
        let lib = FileText {
            name: "lib/base.sql".into(),
            stem: "base".into(),
            text: "-- params: tenant_columns\nselect 1 as x".into(),
        };
        let text = GOOD.replace(
            "params = [\"schemas\"]",
            "params = [\"schemas\"]\nuses = [\"base\"]",
        );
        let cat = Catalog::build(vec![file("demo.x", &text)], vec![lib]).unwrap();
        let c = cat.compose(&cat.checks["demo.x"]);
        assert_eq!(c.params, vec!["schemas", "tenant_columns"]);
        assert!(c.sql.contains("base as (\n-- params"));
    }

    fn lib(stem: &str, text: &str) -> FileText {
        FileText {
            name: format!("lib/{stem}.sql"),
            stem: stem.into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_batch_tags_each_check_and_keeps_its_recursive_with() {
        let text = GOOD.replace(
            "with t as (select 1)",
            "with t(n) as (select 1 union all select n + 1 from t where n < 2)",
        );
        let cat = Catalog::build(
            vec![
                file("demo.x", &text),
                file("demo.y", &GOOD.replace("demo.x", "demo.y")),
            ],
            vec![],
        )
        .unwrap();
        let checks: Vec<&Check> = cat.checks.values().collect();
        let c = cat.compose_batch(&checks);
        assert_eq!(c.params, vec!["schemas"]);
        assert!(
            c.sql
                .contains("pgi_check_0(object, ok, evidence) as (\nwith recursive"),
            "{}",
            c.sql
        );
        assert!(c
            .sql
            .contains("select 1 as pgi_check, object, ok, case when ok"));
    }

    #[test]
    fn batches_keep_checks_on_one_heavy_building_block_together_and_balance_cost() {
        let libs = vec![
            lib("base", "select 1 as x"),
            lib("heavy_a", "-- requires: base\n-- cost: 5\nselect 1 as x"),
            lib("heavy_b", "-- requires: base\n-- cost: 5\nselect 1 as x"),
        ];
        let mut files = vec![];
        for (id, uses) in [
            ("demo.a1", "heavy_a"),
            ("demo.a2", "heavy_a"),
            ("demo.b1", "heavy_b"),
            ("demo.b2", "heavy_b"),
            ("demo.c", "base"),
        ] {
            let text = GOOD.replace("demo.x", id).replace(
                "params = [\"schemas\"]",
                &format!("params = [\"schemas\"]\nuses = [\"{uses}\"]"),
            );
            files.push(file(id, &text));
        }
        let cat = Catalog::build(files, libs).unwrap();
        let items: Vec<(usize, &Check)> = cat.checks.values().enumerate().collect();
        let batches = cat.partition_batch(items, 2);
        let ids: Vec<Vec<&str>> = batches
            .iter()
            .map(|b| b.iter().map(|(_, c)| c.id.as_str()).collect())
            .collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        for b in &ids {
            let a = b.iter().filter(|id| id.starts_with("demo.a")).count();
            let bb = b.iter().filter(|id| id.starts_with("demo.b")).count();
            assert!(
                a == 0 || bb == 0,
                "heavy_a and heavy_b checks were mixed: {ids:?}"
            );
        }
        // one connection: everything in one batch
        let items: Vec<(usize, &Check)> = cat.checks.values().enumerate().collect();
        assert_eq!(cat.partition_batch(items, 1).len(), 1);
    }

    #[test]
    fn costly_checks_on_one_cheap_block_are_split_between_connections() {
        let libs = vec![lib("base", "select 1 as x")];
        let mut files = vec![];
        for id in ["demo.heavy1", "demo.heavy2"] {
            let text = GOOD.replace("demo.x", id).replace(
                "params = [\"schemas\"]",
                "params = [\"schemas\"]\nuses = [\"base\"]\ncost = 10",
            );
            files.push(file(id, &text));
        }
        let cat = Catalog::build(files, libs).unwrap();
        assert_eq!(cat.checks["demo.heavy1"].cost, 10);
        let items: Vec<(usize, &Check)> = cat.checks.values().enumerate().collect();
        // grouped by their building block they would share one connection (cost 24);
        // apart, each batch costs 14
        let batches = cat.partition_batch(items, 2);
        assert_eq!(batches.len(), 2, "{batches:?}");
        assert!(batches.iter().all(|b| b.len() == 1));
    }

    #[test]
    fn embedded_catalog_is_valid() {
        let empty: [&str; 0] = [];
        Catalog::load(&empty).unwrap();
    }
}

//! Architecture test: the modules of `src/` depend on each other one way only.
//!
//! The rule: draw an arrow from module A to module B when a file of A names a path
//! of B (`use crate::b::…`, `crate::b::x(…)`, `super::b`). Among the top-level
//! modules (`cli`, `audit`, `checks`, `config`, `db`, `migrate`, `report`, …), and
//! among the sibling modules inside any directory (`audit::execute`, `audit::scan`,
//! …), those arrows must never close a circle. A circle means that neither module
//! can be read, tested or changed without the other: they are one module spread over
//! two files, and every new feature lands in both. (A parent's own `mod.rs` is a
//! namespace: its children may name items it declares without making a circle.)
//!
//! The intended flow, top to bottom, is in docs/architecture.md: `cli` → {`audit`,
//! `migrate`, `report`} → `checks` → {`config`, `db`} → {`model`, `diag`}. This test
//! does not fix that order, only that there is one; it names the circle it finds.
//!
//! It also keeps one promise of that layout: `report` renders an audit's outcome
//! and never touches the database.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path of a source file under `src/`: `audit/scan.rs` → ["audit", "scan"],
/// `audit/mod.rs` → ["audit"], `lib.rs` → [].
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments (doc comments name modules too).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path named after `prefix` (`crate::` or `super::`), braces expanded:
/// `crate::audit::{plan, scan::Unit}` → [audit, plan], [audit, scan, Unit].
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = vec![];
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let (paths, _) = parse_tree(rest);
        out.extend(paths);
    }
    out
}

/// Parse `a::b::{c, d::e}` at the start of `s`: the paths, and the length read.
fn parse_tree(s: &str) -> (Vec<Vec<String>>, usize) {
    let mut segs: Vec<String> = vec![];
    let mut i = 0;
    let b = s.as_bytes();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            i += 1;
            let mut out = vec![];
            loop {
                let (subs, n) = parse_tree(&s[i..]);
                i += n;
                for sub in subs {
                    let mut p = segs.clone();
                    p.extend(sub);
                    out.push(p);
                }
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i < b.len() && b[i] == b',' {
                    i += 1;
                    continue;
                }
                if i < b.len() && b[i] == b'}' {
                    i += 1;
                }
                break;
            }
            if segs.is_empty() && out.is_empty() {
                return (vec![], i);
            }
            return (out, i);
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i == start {
            break;
        }
        segs.push(s[start..i].to_string());
        if s[i..].starts_with("::") {
            i += 2;
        } else {
            break;
        }
    }
    let paths = if segs.is_empty() { vec![] } else { vec![segs] };
    (paths, i)
}

/// A circle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut vec![], &mut done) {
            return Some(c);
        }
    }
    None
}

struct Source {
    /// Module path of each file, with the paths (absolute, from the crate root) it names.
    files: Vec<(PathBuf, Vec<String>, Vec<Vec<String>>)>,
    /// Every module (by path) that exists.
    modules: BTreeSet<Vec<String>>,
}

fn read_source() -> Source {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = vec![];
    rust_files(&src, &mut paths);
    paths.sort();
    let mut files = vec![];
    let mut modules = BTreeSet::new();
    for path in paths {
        if path == src.join("main.rs") {
            continue; // the binary: it reaches the library as `pg_integrity::`
        }
        let module = module_of(&src, &path);
        let text = code(&std::fs::read_to_string(&path).unwrap());
        let mut named = paths_after(&text, "crate::");
        // `super::x` in `a/b.rs` (module a::b) is a::x; in `a/b/mod.rs` too.
        let parent = &module[..module.len().saturating_sub(1)];
        for p in paths_after(&text, "super::") {
            let mut abs = parent.to_vec();
            abs.extend(p);
            named.push(abs);
        }
        modules.insert(module.clone());
        files.push((path, module, named));
    }
    Source { files, modules }
}

/// The arrows among the children of `parent` (the top level when empty).
fn sibling_graph(source: &Source, parent: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let child = |m: &[String]| -> Option<String> {
        (m.len() > parent.len() && m.starts_with(parent)).then(|| m[parent.len()].clone())
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, module, named) in &source.files {
        let Some(from) = child(module) else { continue };
        graph.entry(from.clone()).or_default();
        for path in named {
            let Some(to) = child(path) else { continue };
            let mut to_module = parent.to_vec();
            to_module.push(to.clone());
            if to != from && source.modules.contains(&to_module) {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    graph
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let source = read_source();
    let mut parents: BTreeSet<Vec<String>> = BTreeSet::new();
    for m in &source.modules {
        if !m.is_empty() {
            parents.insert(m[..m.len() - 1].to_vec());
        }
    }
    let mut circles = vec![];
    for parent in &parents {
        if let Some(cycle) = find_cycle(&sibling_graph(&source, parent)) {
            let prefix = if parent.is_empty() {
                String::new()
            } else {
                format!("{}::", parent.join("::"))
            };
            let named: Vec<String> = cycle.iter().map(|m| format!("{prefix}{m}")).collect();
            circles.push(named.join(" → "));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles among modules (break each by moving what both need into a module below them):\n  {}",
        circles.join("\n  ")
    );
    // The top level is where a circle costs most: make sure it was looked at.
    assert!(sibling_graph(&source, &[]).len() >= 5);
}

#[test]
fn report_never_touches_the_database() {
    let source = read_source();
    for (path, module, named) in &source.files {
        if module.first().map(String::as_str) != Some("report") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            !text.contains("tokio_postgres")
                && !named.iter().any(|p| p.first().is_some_and(|m| m == "db")),
            "{} reaches the database; a report renders an audit's outcome only",
            path.display()
        );
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    // A test that cannot fail is a defect: the finder must see a planted circle,
    // including one closed through braces and `super::`.
    let text = code("use crate::a::{b, c::D};\nfn f() { super::e::g(); } // crate::z::y");
    let paths = paths_after(&text, "crate::");
    assert_eq!(paths, vec![vec!["a", "b"], vec!["a", "c", "D"]]);
    assert_eq!(paths_after(&text, "super::"), vec![vec!["e", "g"]]);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

//! docs/test-strength.md (written by scripts/mutate.py, issue 18) records, per check and
//! building block, how many mutants its cases kill, and a hash of what was measured. This
//! fails when a kept-fresh row's check (or block, or a check using the block) changed
//! since, without running any mutation: rerun `scripts/mutate.py --write-doc ID`.
//! The hash must match scripts/mutate.py's `check_hash` / `lib_hash`.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// sha256 over each part followed by a NUL byte, first 16 hex digits.
fn hash(parts: &[Vec<u8>]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0u8]);
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..16]
        .to_string()
}

struct CheckFile {
    bytes: Vec<u8>,
    uses: Vec<String>,
    automated: bool,
}

fn check_files(dir: &Path) -> BTreeMap<String, CheckFile> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let t: toml::Table = toml::from_str(std::str::from_utf8(&bytes).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let id = t["id"].as_str().unwrap().to_string();
        let uses = t
            .get("uses")
            .and_then(|u| u.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let automated = t.get("kind").and_then(|k| k.as_str()) != Some("manual")
            && t.get("sql")
                .and_then(|s| s.as_str())
                .is_some_and(|s| !s.is_empty());
        out.insert(
            id,
            CheckFile {
                bytes,
                uses,
                automated,
            },
        );
    }
    out
}

/// The kept-fresh rows: (target, recorded hash), from the "Checks" and "Building
/// blocks" sections (not "Snapshot").
fn fresh_rows(doc: &str) -> Vec<(String, String)> {
    let mut section = "";
    let mut rows = vec![];
    for line in doc.lines() {
        if let Some(s) = line.strip_prefix("## ") {
            section = s.trim();
            continue;
        }
        if section != "Checks" && section != "Building blocks" {
            continue;
        }
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((target, _)) = rest.split_once('`') else {
            continue;
        };
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        rows.push((target.to_string(), cells.last().unwrap().to_string()));
    }
    rows
}

/// The blocks `uses` names and every block they require (`-- requires:` lines), in turn.
fn block_closure(uses: &[String]) -> Vec<String> {
    let (mut seen, mut todo): (Vec<String>, Vec<String>) = (vec![], uses.to_vec());
    while let Some(n) = todo.pop() {
        let Ok(text) = std::fs::read_to_string(root().join("checks/lib").join(format!("{n}.sql")))
        else {
            continue;
        };
        if seen.contains(&n) {
            continue;
        }
        seen.push(n);
        for line in text.lines() {
            if let Some(rest) = line.trim_start().strip_prefix("--") {
                if let Some(list) = rest.trim_start().strip_prefix("requires:") {
                    todo.extend(
                        list.split(',')
                            .map(|x| x.trim().to_string())
                            .filter(|x| !x.is_empty()),
                    );
                }
            }
        }
    }
    seen
}

fn current_hash(checks: &BTreeMap<String, CheckFile>, target: &str) -> Option<String> {
    if let Some(name) = target.strip_prefix("lib:") {
        let lib = std::fs::read(root().join("checks/lib").join(format!("{name}.sql"))).ok()?;
        let mut parts = vec![lib];
        // the checks that judge the block (scripts/mutate.py block_users): those naming
        // it in `uses`, then those reaching it through the blocks they use
        let names = |c: &CheckFile| c.uses.iter().any(|u| u == name);
        let automated = || checks.values().filter(|c| c.automated);
        let users: Vec<&CheckFile> = automated()
            .filter(|c| names(c))
            .chain(
                automated()
                    .filter(|c| !names(c) && block_closure(&c.uses).iter().any(|u| u == name)),
            )
            .collect();
        parts.extend(users.into_iter().map(|c| c.bytes.clone()));
        Some(hash(&parts))
    } else {
        checks
            .get(target)
            .map(|c| hash(std::slice::from_ref(&c.bytes)))
    }
}

#[test]
fn test_strength_doc_is_not_stale() {
    let doc = std::fs::read_to_string(root().join("docs/test-strength.md"))
        .expect("docs/test-strength.md (scripts/mutate.py --write-doc)");
    let checks = check_files(&root().join("checks"));
    let rows = fresh_rows(&doc);
    assert!(
        !rows.is_empty(),
        "no kept-fresh rows in docs/test-strength.md"
    );
    let stale: Vec<String> = rows
        .iter()
        .filter(|(t, recorded)| current_hash(&checks, t).as_deref() != Some(recorded.as_str()))
        .map(|(t, _)| format!("{t}: changed since measured: run scripts/mutate.py --write-doc {t}"))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/test-strength.md is stale:\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_staleness_hash_sees_a_changed_case() {
    let a = hash(&[b"sql = 'select 1'\n[[test]]\nexpect = \"pass\"\n".to_vec()]);
    let b = hash(&[b"sql = 'select 1'\n[[test]]\nexpect = \"fail\"\n".to_vec()]);
    assert_ne!(a, b);
    assert_eq!(a.len(), 16);
    let doc = "## Checks\n\n| target | h |\n|---|---|\n| `x.y` | 1 | abc |\n\n## Snapshot (not kept fresh)\n\n| `z.w` | 2 | at 123 |\n";
    assert_eq!(
        fresh_rows(doc),
        vec![("x.y".to_string(), "abc".to_string())]
    );
}

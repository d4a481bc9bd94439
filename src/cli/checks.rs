//! `pg-integrity checks`: list, show, validate and test the check catalog.

use crate::audit::selftest;
use crate::checks::catalog::{Catalog, Check};
use crate::checks::params;
use crate::cli::args::{ChecksCommand, ListArgs, ListFormat};
use crate::cli::exit::{write_stdout, Failure, EXIT_DATABASE, EXIT_GATE, EXIT_INPUT, EXIT_OK};
use crate::cli::target::{env_var, load_catalog};
use crate::db::connection::ConnectOptions;
use crate::db::sandbox::Sandbox;
use crate::report::{self, catalog::Listed};

pub async fn run(cmd: ChecksCommand) -> Result<u8, Failure> {
    match cmd {
        ChecksCommand::List(ListArgs {
            catalog: args,
            format,
        }) => {
            let (catalog, config) = load_catalog(&args)?;
            let listed: Vec<Listed> = catalog
                .ordered()
                .into_iter()
                .map(|c| Listed {
                    check: c,
                    severity: config.severity_override(&c.id).unwrap_or(c.severity),
                    disabled: config.is_disabled(&c.id),
                })
                .collect();
            match format {
                ListFormat::Markdown => {
                    write_stdout(&report::catalog::markdown(&listed));
                    return Ok(EXIT_OK);
                }
                ListFormat::Json => {
                    write_stdout(&report::catalog::json(&listed));
                    return Ok(EXIT_OK);
                }
                ListFormat::Table => {}
            }
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::NOTHING)
                .set_header(vec!["ID", "SEVERITY", "KIND", "TITLE"]);
            for c in catalog.ordered() {
                let sev = config.severity_override(&c.id).unwrap_or(c.severity);
                let kind = if config.is_disabled(&c.id) {
                    format!("{} (disabled)", c.kind.as_str())
                } else {
                    c.kind.as_str().to_string()
                };
                t.add_row(vec![c.id.clone(), sev.to_string(), kind, c.title.clone()]);
            }
            write_stdout(&format!("{t}\n"));
            Ok(EXIT_OK)
        }
        ChecksCommand::Show {
            id,
            composed,
            catalog: args,
        } => {
            let (catalog, _) = load_catalog(&args)?;
            let Some(c) = catalog.checks.get(&id) else {
                let hint = crate::diag::did_you_mean(&id, catalog.ids())
                    .unwrap_or_else(|| "`pg-integrity checks list` shows every id".into());
                return Err(Failure::msg(
                    EXIT_INPUT,
                    format!("unknown check id `{id}`"),
                    &hint,
                ));
            };
            if composed {
                let sql = catalog.compose(c);
                let mut text = String::new();
                for (i, p) in sql.params.iter().enumerate() {
                    text.push_str(&format!("-- ${}: {p}\n", i + 1));
                }
                write_stdout(&format!("{text}{}\n", sql.sql));
            } else {
                write_stdout(&show_check(&catalog, c));
            }
            Ok(EXIT_OK)
        }
        ChecksCommand::Validate { dirs } => {
            let catalog = if dirs.is_empty() {
                Catalog::load(&dirs)
            } else {
                Catalog::load_only(&dirs)
            }
            .map_err(Failure::input)?;
            let warnings = sql_warnings(&catalog);
            let mut text = String::new();
            for w in &warnings {
                text.push_str(&format!("warning: {w}\n"));
            }
            text.push_str(&format!("{} checks valid", catalog.checks.len()));
            if !warnings.is_empty() {
                text.push_str(&format!(
                    " ({} SQL text(s) the parser could not read: PostgreSQL may still accept them; `pg-integrity checks test` runs them)",
                    warnings.len()
                ));
            }
            write_stdout(&format!("{text}\n"));
            Ok(EXIT_OK)
        }
        ChecksCommand::Test {
            dirs,
            only,
            database_url,
            jobs,
            preload,
            variants,
        } => {
            let catalog = if dirs.is_empty() {
                Catalog::load(&dirs)
            } else {
                Catalog::load_only(&dirs)
            }
            .map_err(Failure::input)?;
            let (admin, _sandbox) = match database_url {
                Some(url) => (ConnectOptions::resolve(Some(&url), &env_var)?, None),
                None => {
                    let settings: Vec<String> = if preload.is_empty() {
                        vec![]
                    } else {
                        vec![format!(
                            "shared_preload_libraries = '{}'",
                            preload.join(",").replace('\'', "")
                        )]
                    };
                    let sb = tokio::task::spawn_blocking(move || {
                        let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
                        Sandbox::start(&refs)
                    })
                    .await
                    .map_err(|e| Failure::msg(EXIT_DATABASE, e.to_string(), ""))??;
                    (sb.options("postgres"), Some(sb))
                }
            };
            if let Some(dir) = variants {
                return test_variants(&admin, &catalog, &only, &dir).await;
            }
            let outcomes = selftest::run_cases(&admin, &catalog, &only, jobs, false).await?;
            let (mut passed, mut failed, mut skipped) = (0, 0, 0);
            let mut text = String::new();
            for o in &outcomes {
                match (&o.failure, &o.skipped) {
                    (Some(f), _) => {
                        failed += 1;
                        text.push_str(&format!("FAIL {} — {}\n    {f}\n", o.check, o.case));
                    }
                    (None, Some(s)) => {
                        skipped += 1;
                        text.push_str(&format!("skip {} — {} ({s})\n", o.check, o.case));
                    }
                    _ => passed += 1,
                }
            }
            text.push_str(&format!(
                "{passed} passed, {failed} failed, {skipped} skipped\n"
            ));
            write_stdout(&text);
            Ok(if failed == 0 { EXIT_OK } else { EXIT_GATE })
        }
    }
}

/// `checks test DIR --only ID --variants VDIR`: one JSON line per variant.
async fn test_variants(
    admin: &ConnectOptions,
    catalog: &Catalog,
    only: &[String],
    dir: &std::path::Path,
) -> Result<u8, Failure> {
    let [id] = only else {
        return Err(Failure::msg(
            EXIT_INPUT,
            "--variants needs exactly one --only id".into(),
            "",
        ));
    };
    let mut dirs: Vec<_> = std::fs::read_dir(dir)
        .and_then(|d| {
            d.map(|e| e.map(|e| e.path()))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| Failure::msg(EXIT_INPUT, format!("{}: {e}", dir.display()), ""))?;
    dirs.retain(|d| d.is_dir());
    dirs.sort();
    let mut variants = vec![];
    for d in dirs {
        variants.push(selftest::Variant {
            name: d
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            catalog: Catalog::load_only(&[&d]).map_err(Failure::input)?,
        });
    }
    let verdicts = selftest::run_variants(admin, catalog, id, &variants)
        .await
        .map_err(|e| Failure::msg(EXIT_GATE, e, ""))?;
    let mut text = String::new();
    for (v, verdict) in variants.iter().zip(verdicts) {
        let line = match verdict {
            selftest::VariantVerdict::Survived => {
                serde_json::json!({"variant": v.name, "verdict": "survived"})
            }
            selftest::VariantVerdict::Killed { case, why } => {
                serde_json::json!({"variant": v.name, "verdict": "killed", "case": case, "why": why})
            }
            selftest::VariantVerdict::Undecided { case, why } => {
                serde_json::json!({"variant": v.name, "verdict": "undecided", "case": case, "why": why})
            }
        };
        text.push_str(&format!("{line}\n"));
    }
    write_stdout(&text);
    Ok(EXIT_OK)
}

/// The checks' and building blocks' SQL read with the parser `migrate` uses (squawk's; see
/// `migrate::parse`): for each text it could not read, `file:line:column: message`, where
/// the file is the check's TOML (or the block's .sql). Warnings, not problems: squawk's
/// grammar is not the server's, and valid PostgreSQL it does not know is a parse error to
/// it; a real syntax error shows again when the check runs (`checks test`), mapped to the
/// same place.
pub fn sql_warnings(catalog: &Catalog) -> Vec<String> {
    let mut out = vec![];
    let mut warn = |file: &crate::diag::SourceFile, base: usize, sql: &str| {
        if let Some(e) = crate::migrate::parse::errors(sql).first() {
            let (line, col) = file.line_col(base + e.start.min(sql.len()));
            out.push(format!(
                "{}:{line}:{col}: the SQL parser could not read it: {}",
                file.name, e.message
            ));
        }
    };
    for c in catalog.checks.values() {
        if let (Some(sql), Some(base)) = (&c.sql, c.sql_offset) {
            warn(&c.file, base, sql);
        }
    }
    for f in catalog.fragments.values() {
        warn(&f.file, 0, &f.body);
    }
    out
}

fn show_check(catalog: &Catalog, c: &Check) -> String {
    let mut s = format!("{} — {}\n", c.id, c.title);
    s.push_str(&format!(
        "section: {}  severity: {}  kind: {}{}\n",
        c.section,
        c.severity,
        c.kind.as_str(),
        if c.strict { "  strict" } else { "" }
    ));
    s.push_str(&format!(
        "file: {}\n\n{}\n",
        c.file.name,
        c.description.trim()
    ));
    if let Some(g) = &c.guidance {
        s.push_str(&format!("\nGuidance:\n{}\n", g.trim()));
    }
    if !c.remediation.is_empty() {
        s.push_str(&format!("\nRemediation:\n{}\n", c.remediation.trim()));
    }
    if !c.fixed_by.is_empty() {
        s.push_str(&format!("Fixed by: {}\n", c.fixed_by.join(", ")));
    }
    if c.sql.is_some() {
        let composed = catalog.compose(c);
        s.push_str("\nParameters:\n");
        for (i, p) in composed.params.iter().enumerate() {
            let d = params::describe(p).unwrap_or_default();
            s.push_str(&format!("  ${} {p}: {d}\n", i + 1));
        }
        if !c.uses.is_empty() {
            s.push_str(&format!("Uses: {}\n", c.uses.join(", ")));
        }
        s.push_str(&format!(
            "\nSQL:\n{}\n",
            c.sql.as_deref().unwrap_or("").trim_end()
        ));
    }
    if !c.tests.is_empty() {
        s.push_str("\nTests:\n");
        for t in &c.tests {
            s.push_str(&format!("  - {} → {}\n", t.name, t.expect));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shipped files whose valid SQL squawk's parser cannot read (file, why): `checks
    /// validate` warns about them; the server runs them. None today.
    const KNOWN_GAPS: &[(&str, &str)] = &[];

    #[test]
    fn the_parser_reads_every_shipped_check_and_block() {
        let catalog = Catalog::load(&[] as &[std::path::PathBuf]).unwrap();
        let unread: Vec<String> = sql_warnings(&catalog)
            .into_iter()
            .filter(|w| !KNOWN_GAPS.iter().any(|(f, _)| w.starts_with(f)))
            .collect();
        assert_eq!(
            unread,
            Vec::<String>::new(),
            "a syntax error, or valid SQL squawk does not know (then list it in KNOWN_GAPS)"
        );
    }

    #[test]
    fn an_unreadable_check_is_a_warning_at_its_line_and_column() {
        let mut catalog = Catalog::load(&[] as &[std::path::PathBuf]).unwrap();
        let c = catalog.checks.values_mut().next().unwrap();
        let text = "id = \"x\"\nsql = \"\"\"\nselect 1\nfrom t whre a\n\"\"\"\n";
        c.file = crate::diag::SourceFile::new("x.toml", text);
        c.sql = Some("select 1\nfrom t whre a\n".into());
        c.sql_offset = text.find("select");
        let w: Vec<String> = sql_warnings(&catalog)
            .into_iter()
            .filter(|w| w.starts_with("x.toml"))
            .collect();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("x.toml:4:"), "{w:?}");
    }
}

//! `pg-integrity fix`: audit (the audit's own entry point), then write migrations for
//! the findings whose checks carry a `[fix]` template, and list the rest, with why.

use crate::audit::plan::{select, AuditOptions};
use crate::checks::catalog::Check;
use crate::cli::args::{FixArgs, FixNaming};
use crate::cli::audit::plan_and_run;
use crate::cli::exit::{write_stdout, Failure, EXIT_DATABASE, EXIT_INPUT, EXIT_OK};
use crate::cli::target::{load_catalog, open_target};
use crate::db::connection::connect;
use crate::fix::fields;
use crate::fix::fill::fill;
use crate::fix::plan::{self, Fixable, Manual, Todo};
use crate::fix::write::{self, Naming};
use crate::migrate::status::history;
use crate::model::Status;

pub async fn run(args: FixArgs) -> Result<u8, Failure> {
    let (catalog, config) = load_catalog(&args.catalog)?;
    let opts = AuditOptions {
        only: args.only.clone(),
        progress: true,
        ..AuditOptions::default()
    };
    let selected = select(&catalog, &config, &opts)
        .map_err(|m| Failure::msg(EXIT_INPUT, m, "`pg-integrity checks list` shows every id"))?;
    let target = open_target(&args.target).await?;
    let run = plan_and_run(&target.options, &catalog, &config, &opts, selected).await?;
    let client = connect(&target.options).await?;
    let db_err = |e: String| Failure::msg(EXIT_DATABASE, e, "");

    let mut manual: Vec<Manual> = vec![];
    let mut fixable: Vec<(&Check, Vec<Fixable>)> = vec![];
    let mut not_audited = vec![];
    for r in &run.results {
        if r.status == Status::Error {
            not_audited.push(format!(
                "{}: {}",
                r.check.id,
                r.reason.clone().unwrap_or_default()
            ));
        }
        let findings: Vec<_> = r.findings().collect();
        if findings.is_empty() {
            continue;
        }
        let check: &Check = &r.check;
        let Some(fix) = &check.fix else {
            let why = format!(
                "no mechanical fix for this check yet ({}; `pg-integrity checks show {}` says how)",
                first_sentence(&check.remediation),
                check.id
            );
            for f in findings {
                manual.push(Manual {
                    check: check.id.clone(),
                    object: f.object.clone(),
                    why: why.clone(),
                });
            }
            continue;
        };
        if fix.only_when_asked && !args.only.contains(&check.id) {
            for f in findings {
                manual.push(Manual {
                    check: check.id.clone(),
                    object: f.object.clone(),
                    why: format!(
                        "its fix is a design decision, written only when asked: `pg-integrity fix --only {}`",
                        check.id
                    ),
                });
            }
            continue;
        }
        let by_object = match fields::fields(&client, &catalog, check, &config).await {
            Ok(m) => m,
            Err(e) => {
                for f in findings {
                    manual.push(Manual {
                        check: check.id.clone(),
                        object: f.object.clone(),
                        why: format!("the fields its fix needs could not be read: {e}"),
                    });
                }
                continue;
            }
        };
        let mut mine = vec![];
        for f in findings {
            let Some(fields) = by_object.get(&f.object) else {
                manual.push(Manual {
                    check: check.id.clone(),
                    object: f.object.clone(),
                    why: "the check's query returned no fix fields for it".into(),
                });
                continue;
            };
            if let Some(why) = fields.get("manual").filter(|w| !w.trim().is_empty()) {
                manual.push(Manual {
                    check: check.id.clone(),
                    object: f.object.clone(),
                    why: why.clone(),
                });
                continue;
            }
            let mut todo = None;
            if let Some(d) = &fix.decision {
                let filled = fill(&d.count, &f.object, fields)
                    .and_then(|q| fill(&d.todo, &f.object, fields).map(|t| (q, t)));
                match filled {
                    Err(e) => {
                        manual.push(Manual {
                            check: check.id.clone(),
                            object: f.object.clone(),
                            why: format!("its fix could not be written: {e}"),
                        });
                        continue;
                    }
                    Ok((query, what)) => match fields::count(&client, &query).await {
                        Ok(0) => {}
                        Ok(n) => {
                            todo = Some(Todo {
                                what,
                                query,
                                found: format!("{n} found"),
                            })
                        }
                        Err(e) => {
                            todo = Some(Todo {
                                what,
                                query,
                                found: format!("not counted: {e}"),
                            })
                        }
                    },
                }
            }
            mine.push(Fixable {
                object: f.object.clone(),
                fields: fields.clone(),
                todo,
            });
        }
        if !mine.is_empty() {
            fixable.push((check, mine));
        }
    }
    let planned = plan::plan(&fixable, &mut manual);
    let applied = history(&client).await.map_err(|e| db_err(e.to_string()))?;
    drop(client);
    drop(target);
    let after = write::highest_version(&args.out).max(
        applied
            .iter()
            .map(|a| u64::from(a.version))
            .max()
            .unwrap_or(0),
    );
    let naming = match args.naming {
        FixNaming::Refinery => Naming::Refinery,
        FixNaming::Flyway => Naming::Flyway,
        FixNaming::Sqlx => Naming::Sqlx,
        FixNaming::Plain => Naming::Plain,
    };
    let mut out = String::new();
    if planned.is_empty() {
        out.push_str("no migration written: no finding has a mechanical fix left to apply\n");
    } else {
        let paths = write::write(&args.out, &planned, naming, after).map_err(|e| {
            Failure::msg(
                EXIT_INPUT,
                format!("cannot write to {}: {e}", args.out.display()),
                "check the directory is writable, or choose another with --out",
            )
        })?;
        out.push_str(&format!(
            "wrote {} migration(s) to {}:\n",
            paths.len(),
            args.out.display()
        ));
        for (p, m) in paths.iter().zip(&planned) {
            let fname = p.file_name().and_then(|f| f.to_str()).unwrap_or_default();
            out.push_str(&format!(
                "  {fname}  {} ({} finding{}{}{})\n",
                m.check,
                m.objects.len(),
                if m.objects.len() == 1 { "" } else { "s" },
                if m.no_transaction {
                    ", no transaction"
                } else {
                    ""
                },
                if m.todo {
                    ", TODO: a person must decide first"
                } else {
                    ""
                }
            ));
        }
        let todos = planned.iter().filter(|m| m.todo).count();
        if todos > 0 {
            out.push_str(&format!(
                "{todos} migration(s) carry a `-- TODO(pg-integrity):` line: `migrate apply` refuses them until a person has decided and deleted it\n"
            ));
        }
        out.push_str(&format!(
            "apply them with: pg-integrity migrate apply --from {} <target>\n",
            args.out.display()
        ));
    }
    if !manual.is_empty() {
        manual.sort_by(|a, b| (&a.check, &a.object).cmp(&(&b.check, &b.object)));
        out.push_str(&format!("left to a person ({}):\n", manual.len()));
        for m in &manual {
            out.push_str(&format!("  {}  {}: {}\n", m.check, m.object, m.why));
        }
    }
    for n in &not_audited {
        out.push_str(&format!("not audited (the check failed to run): {n}\n"));
    }
    write_stdout(&out);
    Ok(EXIT_OK)
}

/// The start of a remediation text, for a one-line reason.
fn first_sentence(text: &str) -> String {
    let end = text
        .find("; ")
        .or_else(|| text.find(". "))
        .unwrap_or(text.len());
    let s: String = text[..end].chars().take(120).collect();
    if s.len() < end {
        format!("{s}…")
    } else {
        s
    }
}

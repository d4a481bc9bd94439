//! The `migrate` commands: resolve the target, call `migrate`, print.

use crate::cli::args::{ApplyArgs, MigrateCommand, TargetArgs};
use crate::cli::audit::{quick_audit, score_line};
use crate::cli::exit::{write_stdout, Failure, EXIT_DATABASE, EXIT_GATE, EXIT_INPUT, EXIT_OK};
use crate::cli::target::{load_catalog, open_target, Target};
use crate::db::connection::connect;
use crate::migrate::apply::{self, ApplyOptions};
use crate::migrate::files::{self, MigrateError, MigrationFile};
use crate::migrate::plan as migrate_plan;
use crate::migrate::status::{self, State, StatusRow};
use std::path::Path;
use std::time::Duration;

impl From<MigrateError> for Failure {
    fn from(e: MigrateError) -> Self {
        let code = match e {
            MigrateError::Invalid(..) | MigrateError::NotTheFixture(_) => EXIT_INPUT,
            MigrateError::Database(_) => EXIT_DATABASE,
            _ => EXIT_GATE,
        };
        Failure {
            code,
            report: e.into(),
        }
    }
}

pub async fn run(cmd: MigrateCommand) -> Result<u8, Failure> {
    match cmd {
        MigrateCommand::Status {
            target,
            format,
            source,
        } => status(&target, &format, source.from.as_deref()).await,
        MigrateCommand::Plan {
            target,
            format,
            target_version,
            source,
        } => plan(&target, &format, target_version, source.from.as_deref()).await,
        MigrateCommand::Apply(args) => apply(*args).await,
        MigrateCommand::Verify { target, source } => verify(&target, source.from.as_deref()).await,
    }
}

/// The migrations (read once) and their state in the target's history.
async fn rows(
    target: &Target,
    from: Option<&Path>,
) -> Result<(Vec<MigrationFile>, Vec<StatusRow>), Failure> {
    let client = connect(&target.options).await?;
    let files = files::load(from)?;
    let applied = status::history(&client).await?;
    let mut rows = status::status(&files, &applied);
    status::with_steps(&mut rows, &files, &status::steps_done(&client).await?);
    Ok((files, rows))
}

async fn status(args: &TargetArgs, format: &str, from: Option<&Path>) -> Result<u8, Failure> {
    let target = open_target(args).await?;
    let (_, rows) = rows(&target, from).await?;
    if format == "json" {
        let doc = serde_json::json!({ "format_version": 1, "migrations": rows });
        write_stdout(&(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"));
    } else {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
            .set_header(vec!["Version", "Name", "State", "Applied on", "Notes"]);
        for r in &rows {
            let mut notes = r.detail.clone().unwrap_or_default();
            if r.no_transaction {
                notes = format!("no transaction {notes}").trim().to_string();
            }
            t.add_row(vec![
                r.version.to_string(),
                r.name.clone(),
                format!("{:?}", r.state).to_lowercase(),
                r.applied_on.clone().unwrap_or_default(),
                notes,
            ]);
        }
        write_stdout(&format!("{t}\n"));
    }
    Ok(EXIT_OK)
}

/// `plan` and `apply --dry-run`: the pending migrations, statement by statement, with
/// their locks and every preflight's verdict; writes nothing. Exit 1 when a preflight
/// would refuse.
async fn print_plan(
    target: &Target,
    format: &str,
    upto: Option<u32>,
    from: Option<&Path>,
) -> Result<u8, Failure> {
    let (files, rows) = rows(target, from).await?;
    if let Some(msg) = status::disagreement(&rows) {
        return Err(MigrateError::Divergent(msg).into());
    }
    let pending: Vec<&MigrationFile> = files
        .iter()
        .filter(|f| {
            rows.iter()
                .any(|r| r.version == f.version && r.state == State::Pending)
        })
        .filter(|f| upto.is_none_or(|t| f.version <= t))
        .collect();
    let client = connect(&target.options).await?;
    let doc = migrate_plan::plan(&client, &pending).await?;
    if format == "json" {
        write_stdout(&(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"));
    } else {
        let mut out = String::new();
        for m in &doc.migrations {
            out.push_str(&format!(
                "-- ===== {}{} =====\n",
                m.label,
                if m.transaction {
                    " (one transaction)"
                } else if m.transactions.iter().any(|t| t.block) {
                    " (outside a transaction: statement by statement, each BEGIN … COMMIT block one transaction)"
                } else {
                    " (outside a transaction, statement by statement)"
                }
            ));
            if let Some(r) = &m.preflight_refusal {
                out.push_str(&format!("-- PREFLIGHT WOULD REFUSE:\n{}\n", comment(r)));
            }
            out.push_str(&one_table_line(m));
            for (i, s) in m.statements.iter().enumerate() {
                out.push_str(&migrate_plan::describe(s));
                out.push('\n');
                for f in m.flags.iter().filter(|f| f.statement == i) {
                    out.push_str(&format!(
                        "-- UNSAFE ({}, {}): {}\n--   safe form: {}\n",
                        f.severity, f.rule, f.message, f.safe_form
                    ));
                    if let Some(fixed) = &f.fixed_sql {
                        out.push_str(&format!("--   e.g. {}\n", fixed.replace('\n', " ")));
                    }
                }
                out.push_str(s.sql.trim_end().trim_end_matches(';'));
                out.push_str(";\n");
            }
        }
        if doc.migrations.is_empty() {
            out.push_str("-- nothing to apply: the database is up to date\n");
        }
        write_stdout(&out);
    }
    Ok(if doc.refused { EXIT_GATE } else { EXIT_OK })
}

/// What SPEC §7's one-table rule says of a migration's transactions, as comment lines.
fn one_table_line(m: &migrate_plan::PlannedMigration) -> String {
    let n = m.transactions.len();
    let broken: Vec<String> = m
        .transactions
        .iter()
        .enumerate()
        .filter(|(_, t)| t.one_table != Some(true))
        .map(|(i, t)| {
            format!(
                "--   transaction {} of {n}: {}\n",
                i + 1,
                t.reason.as_deref().unwrap_or("?")
            )
        })
        .collect();
    if broken.is_empty() {
        format!(
            "-- one table locked per transaction: yes ({n} transaction{})\n",
            if n == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "-- one table locked per transaction: NO or unknown in {} of {n}\n{}",
            broken.len(),
            broken.concat()
        )
    }
}

/// After a failed apply: which of the migrations pending before were applied by this run,
/// and which were not. The first not applied is the one that failed: run outside a
/// transaction, what it did before the failure stays (its steps done, when it has
/// `BEGIN … COMMIT` blocks), and `migrate apply` goes on from there.
fn partial_note(pending_before: &[String], after: &[StatusRow]) -> String {
    if pending_before.is_empty() {
        return String::new();
    }
    let row = |label: &String| {
        after
            .iter()
            .find(|r| format!("V{}__{}", r.version, r.name) == *label)
    };
    let (done, not): (Vec<&String>, Vec<&String>) = pending_before
        .iter()
        .partition(|l| row(l).is_some_and(|r| r.state != State::Pending));
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let not: Vec<String> = not
        .iter()
        .enumerate()
        .map(|(i, l)| match row(l) {
            Some(r) if i == 0 && r.no_transaction => format!(
                "{l} (run outside a transaction: {}; `migrate apply` goes on from there)",
                r.detail
                    .as_deref()
                    .and_then(|d| d.split(';').next())
                    .unwrap_or("the statements before the one that failed stay applied")
            ),
            _ => l.to_string(),
        })
        .collect();
    format!(
        "applied by this run: {}\nnot applied: {}\n",
        list(done.iter().map(|s| s.to_string()).collect()),
        list(not)
    )
}

fn comment(text: &str) -> String {
    text.lines()
        .map(|l| format!("--   {}", l.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn plan(
    args: &TargetArgs,
    format: &str,
    upto: Option<u32>,
    from: Option<&Path>,
) -> Result<u8, Failure> {
    let target = open_target(args).await?;
    print_plan(&target, format, upto, from).await
}

async fn verify(args: &TargetArgs, from: Option<&Path>) -> Result<u8, Failure> {
    let target = open_target(args).await?;
    let (_, rows) = rows(&target, from).await?;
    match status::disagreement(&rows) {
        Some(msg) => Err(MigrateError::Divergent(msg).into()),
        None => {
            let pending = rows.iter().filter(|r| r.state == State::Pending).count();
            write_stdout(&format!(
                "history agrees with the embedded migrations ({} applied, {pending} pending)\n",
                rows.len() - pending
            ));
            Ok(EXIT_OK)
        }
    }
}

async fn apply(args: ApplyArgs) -> Result<u8, Failure> {
    let (catalog, config) = load_catalog(&args.catalog)?;
    let target = open_target(&args.target).await?;
    let from = args.source.from.as_deref();
    if from.is_none() {
        // The compiled-in migrations fit one schema: refuse any other before touching it.
        let client = connect(&target.options).await?;
        let applied = status::history(&client).await?;
        let missing = apply::missing_fixture_tables(&client).await?;
        if applied.is_empty() && !missing.is_empty() {
            return Err(MigrateError::NotTheFixture(missing.join(", ")).into());
        }
    }
    if args.dry_run {
        return print_plan(&target, "table", args.target_version, from).await;
    }
    let before = if args.no_audit {
        None
    } else {
        Some(quick_audit(&target.options, &catalog, &config).await?)
    };
    let mut client = connect(
        &target
            .options
            .clone()
            .with_application_name("pg-integrity migrate"),
    )
    .await?;
    let opts = ApplyOptions {
        target: args.target_version,
        lock_wait: Duration::from_secs(args.lock_wait),
        lock_timeout_ms: args.lock_timeout,
        retries: args.retries,
        from: args.source.from.clone(),
        watch: Some(target.options.clone()),
    };
    // The pending migrations before, to say after a failure which were applied and which not.
    let pending_before: Vec<String> = rows(&target, from)
        .await
        .map(|(_, r)| {
            r.iter()
                .filter(|r| r.state == State::Pending)
                .filter(|r| args.target_version.is_none_or(|t| r.version <= t))
                .map(|r| format!("V{}__{}", r.version, r.name))
                .collect()
        })
        .unwrap_or_default();
    let report = match apply::apply(&mut client, &opts).await {
        Ok(r) => r,
        Err(e) => {
            drop(client);
            if let Ok((_, after)) = rows(&target, from).await {
                eprint!("{}", partial_note(&pending_before, &after));
            }
            return Err(e.into());
        }
    };
    drop(client);
    let mut out = if report.applied.is_empty() {
        "nothing to apply: the database is up to date\n".to_string()
    } else {
        let list: Vec<String> = report
            .applied
            .iter()
            .map(|(l, ms)| format!("  {l} ({ms} ms)"))
            .collect();
        format!(
            "applied {} migration(s):\n{}\n",
            report.applied.len(),
            list.join("\n")
        )
    };
    if let Some(before) = before {
        let after = quick_audit(&target.options, &catalog, &config).await?;
        out.push_str(&score_line(&before, &after));
    }
    write_stdout(&out);
    Ok(EXIT_OK)
}

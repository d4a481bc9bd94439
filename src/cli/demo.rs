//! `pg-integrity demo`: a throwaway server with the ticket-service fixture, audited,
//! migrated, audited again; prints the before → after summary and what changed
//! (report::compare); the server is removed after.

use crate::checks::catalog::Catalog;
use crate::cli::args::TargetArgs;
use crate::cli::audit::quick_audit;
use crate::cli::exit::{write_stdout, Failure, EXIT_DATABASE, EXIT_OK};
use crate::cli::target::open_target;
use crate::config::LoadedConfig;
use crate::db::connection::connect;
use crate::migrate::apply::{apply, ApplyOptions};
use std::io::IsTerminal;

const FIXTURE_SCHEMA: &str = include_str!("../../fixtures/ticket-service/schema.sql");
const FIXTURE_DATA: &str = include_str!("../../fixtures/ticket-service/data.sql");
const FIXTURE_CONFIG: &str = include_str!("../../fixtures/ticket-service/pg-integrity.toml");

/// Throwaway server, fixture loaded, audit, migrate, audit again, compare; removed after.
pub async fn run() -> Result<u8, Failure> {
    let dir = tempfile::tempdir().map_err(|e| {
        Failure::msg(
            EXIT_DATABASE,
            e.to_string(),
            "cannot create a temporary directory",
        )
    })?;
    let schema = dir.path().join("schema.sql");
    let data = dir.path().join("data.sql");
    std::fs::write(&schema, FIXTURE_SCHEMA)
        .and_then(|_| std::fs::write(&data, FIXTURE_DATA))
        .map_err(|e| {
            Failure::msg(
                EXIT_DATABASE,
                e.to_string(),
                "cannot write the fixture to a temporary directory",
            )
        })?;
    eprintln!("pg-integrity demo: the ticket-service fixture");
    let target = open_target(&TargetArgs {
        database_url: None,
        schema: vec![schema, data],
        ..TargetArgs::default()
    })
    .await?;
    let mut catalog = Catalog::load(&[] as &[&str]).map_err(Failure::input)?;
    let config = LoadedConfig::parse("ticket-service/pg-integrity.toml", FIXTURE_CONFIG)
        .map_err(Failure::input)?;
    crate::report::names::fill_catalog(&mut catalog, &config.config);
    eprintln!("auditing the fixture…");
    let before = quick_audit(&target.options, &catalog, &config).await?;
    eprintln!("applying the remediation migrations…");
    let mut client = connect(&target.options).await?;
    let report = apply(&mut client, &ApplyOptions::default()).await?;
    drop(client);
    eprintln!("auditing again…");
    let after = quick_audit(&target.options, &catalog, &config).await?;
    // On a terminal the tables fit it; on a pipe they wrap at 120 columns, as audit's.
    let width = if std::io::stdout().is_terminal() {
        None
    } else {
        Some(120)
    };
    let names: Vec<&str> = report.applied.iter().map(|(l, _)| l.as_str()).collect();
    let mut out = format!(
        "pg-integrity demo: the ticket-service fixture on a throwaway server, audited, \
         migrated, audited again\n\nApplied {} migration(s):\n{}",
        names.len(),
        wrapped(&names, 100)
    );
    out.push_str(&crate::report::compare::render(&before, &after, width));
    write_stdout(&out);
    Ok(EXIT_OK)
}

/// `items` joined by ", " in lines of at most about `width` characters, indented.
fn wrapped(items: &[&str], width: usize) -> String {
    let mut lines: Vec<String> = vec![];
    let mut line = String::new();
    for (i, item) in items.iter().enumerate() {
        let piece = if i + 1 < items.len() {
            format!("{item},")
        } else {
            item.to_string()
        };
        if !line.is_empty() && line.len() + 1 + piece.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&piece);
    }
    if items.is_empty() {
        line.push_str("none");
    }
    lines.push(line);
    lines.iter().map(|l| format!("  {l}\n")).collect()
}

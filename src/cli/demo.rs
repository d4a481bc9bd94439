//! `pg-integrity demo`: a throwaway server with the ticket-service fixture, audited,
//! migrated, audited again, compared; removed after.

use crate::checks::catalog::Catalog;
use crate::cli::args::TargetArgs;
use crate::cli::audit::{quick_audit, score_line};
use crate::cli::exit::{write_stdout, Failure, EXIT_DATABASE, EXIT_OK};
use crate::cli::target::open_target;
use crate::config::LoadedConfig;
use crate::db::connection::connect;
use crate::migrate::apply::{apply, ApplyOptions};

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
    eprintln!("starting a throwaway PostgreSQL with the ticket-service fixture…");
    let target = open_target(&TargetArgs {
        database_url: None,
        schema: vec![schema, data],
        migrations: None,
        allow_shell: false,
    })
    .await?;
    let mut catalog = Catalog::load(&[] as &[&str]).map_err(Failure::input)?;
    let config = LoadedConfig::parse("ticket-service/pg-integrity.toml", FIXTURE_CONFIG)
        .map_err(Failure::input)?;
    crate::report::names::fill_catalog(&mut catalog, &config.config);
    let before = quick_audit(&target.options, &catalog, &config).await?;
    write_stdout(&crate::report::table::render(&before, None));
    eprintln!("\napplying the remediation migrations…");
    let mut client = connect(&target.options).await?;
    let report = apply(&mut client, &ApplyOptions::default()).await?;
    drop(client);
    let after = quick_audit(&target.options, &catalog, &config).await?;
    write_stdout(&format!("\nAfter {} migration(s):\n", report.applied.len()));
    write_stdout(&crate::report::table::render(&after, None));
    write_stdout(&format!("\n{}", score_line(&before, &after)));
    Ok(EXIT_OK)
}

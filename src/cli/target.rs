//! What a command works on: the check catalog and configuration, and the database
//! (`--database-url`, or a throwaway server loaded with `--schema` files).

use crate::checks::catalog::Catalog;
use crate::cli::args::{CatalogArgs, TargetArgs};
use crate::cli::exit::{Failure, EXIT_DATABASE, EXIT_INPUT};
use crate::config::LoadedConfig;
use crate::db::connection::ConnectOptions;
use crate::db::sandbox::Sandbox;
use std::path::{Path, PathBuf};

pub fn load_catalog(args: &CatalogArgs) -> Result<(Catalog, LoadedConfig), Failure> {
    let catalog = Catalog::load(&args.checks_dirs).map_err(Failure::input)?;
    let config = LoadedConfig::load(args.config.as_deref()).map_err(Failure::input)?;
    config.check_ids(&catalog.ids()).map_err(Failure::input)?;
    Ok((catalog, config))
}

/// The database a command works on; the sandbox (if any) lives as long as this.
pub struct Target {
    pub options: ConnectOptions,
    pub sandbox: Option<Sandbox>,
}

pub const SANDBOX_DB: &str = "pg_integrity";

pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub async fn open_target(args: &TargetArgs) -> Result<Target, Failure> {
    if args.schema.is_empty() {
        let options = ConnectOptions::resolve(args.database_url.as_deref(), &env_var)?;
        return Ok(Target {
            options,
            sandbox: None,
        });
    }
    let files = args.schema.clone();
    let migrations = args.migrations.clone();
    let sandbox = tokio::task::spawn_blocking(move || -> Result<Sandbox, Failure> {
        let sb = Sandbox::start(&[])?;
        sb.create_database(SANDBOX_DB)?;
        sb.load_files(SANDBOX_DB, &files)?;
        if let Some(dir) = migrations {
            sb.load_files(SANDBOX_DB, &migration_files(&dir)?)?;
        }
        Ok(sb)
    })
    .await
    .map_err(|e| {
        Failure::msg(
            EXIT_DATABASE,
            e.to_string(),
            "the throwaway server task failed",
        )
    })??;
    Ok(Target {
        options: sandbox.options(SANDBOX_DB),
        sandbox: Some(sandbox),
    })
}

/// `V{n}__name.sql` files of `dir`, in version order.
pub fn migration_files(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Failure::msg(
            EXIT_INPUT,
            format!("cannot read {}: {e}", dir.display()),
            "--migrations takes a directory of V{n}__name.sql files",
        )
    })?;
    let mut files: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let rest = name.strip_prefix('V').or_else(|| name.strip_prefix('U'))?;
            let (v, _) = rest.split_once("__")?;
            name.ends_with(".sql").then_some((v.parse().ok()?, p))
        })
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

//! What a command works on: the check catalog and configuration, and the database
//! (`--database-url`, or a throwaway server loaded with `--schema` files).

use crate::checks::catalog::Catalog;
use crate::cli::args::{CatalogArgs, SchemaErrors, TargetArgs};
use crate::cli::exit::{Failure, EXIT_DATABASE, EXIT_INPUT};
use crate::config::LoadedConfig;
use crate::db::connection::ConnectOptions;
use crate::db::sandbox::Sandbox;
use crate::db::{shell, watch};
use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn load_catalog(args: &CatalogArgs) -> Result<(Catalog, LoadedConfig), Failure> {
    let mut catalog = Catalog::load(&args.checks_dirs).map_err(Failure::input)?;
    let config = LoadedConfig::load(args.config.as_deref()).map_err(Failure::input)?;
    config.check_ids(&catalog.ids()).map_err(Failure::input)?;
    // Titles and remediation in the configured names (tenant column, app role, ...).
    crate::report::names::fill_catalog(&mut catalog, &config.config);
    Ok((catalog, config))
}

/// The database a command works on; the sandbox (if any) lives as long as this.
pub struct Target {
    pub options: ConnectOptions,
    pub sandbox: Option<Sandbox>,
    /// With `--schema-errors continue`: each statement of the files the server
    /// rejected, `file:line: message` (also said on stderr).
    pub warnings: Vec<String>,
}

pub const SANDBOX_DB: &str = "pg_integrity";

pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub async fn open_target(args: &TargetArgs) -> Result<Target, Failure> {
    if args.schema.is_empty() && (args.migrations.is_some() || args.schema_errors.is_some()) {
        // clap's `requires = "schema"` does not hold across the flattened groups
        return Err(Failure::msg(
            EXIT_INPUT,
            "--migrations and --schema-errors work on a throwaway server".into(),
            "give the schema with --schema FILE.sql (without it the target is --database-url)",
        ));
    }
    if args.schema.is_empty() {
        let options = ConnectOptions::resolve(args.database_url.as_deref(), &env_var)?;
        return Ok(Target {
            options,
            sandbox: None,
            warnings: vec![],
        });
    }
    let files = args.schema.clone();
    let migrations = args.migrations.clone();
    if !args.allow_shell {
        let mut loaded = files.clone();
        if let Some(dir) = &migrations {
            loaded.extend(migration_files(dir)?);
        }
        let problems = shell::refuse(&loaded);
        if !problems.is_empty() {
            return Err(Failure::input(crate::diag::Problems::new(problems)));
        }
    }
    let keep_going = args.schema_errors == Some(SchemaErrors::Continue);
    let (sandbox, warnings) = tokio::task::spawn_blocking(move || -> Result<_, Failure> {
        // Progress on stderr when it is a terminal: starting a server and loading a
        // large schema take seconds.
        let started = std::time::Instant::now();
        let say = |what: &str| {
            if std::io::stderr().is_terminal() {
                eprintln!("{what}");
            }
        };
        say("starting a throwaway PostgreSQL…");
        let sb = Sandbox::start(&[])?;
        sb.create_database(SANDBOX_DB)?;
        let mut loaded = files;
        if let Some(dir) = migrations {
            loaded.extend(migration_files(&dir)?);
        }
        let mut warnings = vec![];
        for (i, file) in loaded.iter().enumerate() {
            say(&format!(
                "loading {} ({}/{})…",
                file.display(),
                i + 1,
                loaded.len()
            ));
            let one = std::slice::from_ref(file);
            if keep_going {
                warnings.extend(sb.load_files_continuing(SANDBOX_DB, one)?);
            } else {
                sb.load_files(SANDBOX_DB, one)?;
            }
        }
        say(&format!(
            "throwaway server ready ({:.1} s)",
            started.elapsed().as_secs_f64()
        ));
        Ok((sb, warnings))
    })
    .await
    .map_err(|e| {
        Failure::msg(
            EXIT_DATABASE,
            e.to_string(),
            "the throwaway server task failed",
        )
    })??;
    for w in &warnings {
        eprintln!("warning: {w} (--schema-errors continue: the rest was loaded)");
    }
    Ok(Target {
        options: sandbox.options(SANDBOX_DB),
        sandbox: Some(sandbox),
        warnings,
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

/// The client-side deadline: how long the command waits for a server that answers no
/// statement at all, or for one connection's statement that gets no answer (see
/// `watch::waiting`), before it ends with exit 3. `audit.statement_timeout_ms` (each
/// statement's limit on the server's side) plus a margin, 10 s unless
/// `PG_INTEGRITY_DEADLINE_MARGIN_MS` says otherwise.
pub fn client_deadline(config: &LoadedConfig) -> Duration {
    let margin = env_var("PG_INTEGRITY_DEADLINE_MARGIN_MS")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(watch::DEFAULT_MARGIN, Duration::from_millis);
    Duration::from_millis(config.config.audit.statement_timeout_ms) + margin
}

/// Run `work` (statements on the target) under the client-side deadline: a server
/// that stops answering, or a connection lost on the way (the server stopped,
/// crashed, or ended our backend), is exit 3 with what happened, and no report.
pub async fn answering<T>(
    config: &LoadedConfig,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let deadline = client_deadline(config);
    watch::reset();
    let done = watch::within(deadline, work).await;
    if let Some(reason) = watch::lost_reason() {
        return Err(Failure::msg(
            EXIT_DATABASE,
            format!("lost the server mid-audit: {reason}"),
            "the connection ended before every check had run (the server stopped, crashed, or ended the session), so no report is given: run the audit again once the server is up",
        ));
    }
    match done {
        Ok(result) => result,
        Err(stalled) => Err(Failure::msg(
            EXIT_DATABASE,
            format!(
                "lost the server: no answer for {} s (statement_timeout plus a margin), so no report is given",
                stalled.after.as_millis() as f64 / 1000.0
            ),
            "the server or the network stopped answering (frozen, overloaded, or a dead link): check that the server is up and reachable; audit.statement_timeout_ms and PG_INTEGRITY_DEADLINE_MARGIN_MS set how long to wait",
        )),
    }
}

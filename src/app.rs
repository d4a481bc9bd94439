//! Command implementations: resolve arguments once, call the engine, hand results
//! to the reports, and map the outcome to an exit code (SPEC §1).

use crate::catalog::Catalog;
use crate::cli::{AuditArgs, CatalogArgs, ChecksCommand, Cli, Command, TargetArgs};
use crate::config::LoadedConfig;
use crate::connection::{ConnectOptions, ConnectionError};
use crate::gate::{assess, Baseline, FailOn, GateOptions};
use crate::report::{self, Format};
use crate::runner::{self, AuditOptions};
use crate::sandbox::{Sandbox, SandboxError};
use miette::Report;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

pub const EXIT_OK: u8 = 0;
pub const EXIT_GATE: u8 = 1;
pub const EXIT_INPUT: u8 = 2;
pub const EXIT_DATABASE: u8 = 3;

/// A command that could not finish: the exit code and what to tell the user.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub report: Report,
}

impl Failure {
    pub fn input(e: impl Into<Report>) -> Self {
        Failure {
            code: EXIT_INPUT,
            report: e.into(),
        }
    }
    pub fn database(e: impl Into<Report>) -> Self {
        Failure {
            code: EXIT_DATABASE,
            report: e.into(),
        }
    }
    pub fn msg(code: u8, msg: String, help: &str) -> Self {
        Failure {
            code,
            report: miette::miette!(help = help.to_string(), "{msg}"),
        }
    }
}

/// Bad input is exit 2; anything else from reaching the database is exit 3.
fn input_or_database(input: bool, report: Report) -> Failure {
    let code = if input { EXIT_INPUT } else { EXIT_DATABASE };
    Failure { code, report }
}

impl From<ConnectionError> for Failure {
    fn from(e: ConnectionError) -> Self {
        input_or_database(e.is_input_error(), e.into())
    }
}

impl From<SandboxError> for Failure {
    fn from(e: SandboxError) -> Self {
        input_or_database(e.is_input_error(), e.into())
    }
}

pub async fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Audit(args) => audit(*args).await,
        Command::Checks(cmd) => checks(cmd).await,
        Command::Migrate(cmd) => crate::migrate_cmd::run(cmd).await,
        Command::Demo => crate::migrate_cmd::demo().await,
        Command::Init(args) => init(args).await,
        Command::Completions { shell } => {
            // From the same clap definitions as the parser: they cannot drift apart.
            let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "pg-integrity", &mut out);
            write_stdout(&String::from_utf8_lossy(&out));
            Ok(EXIT_OK)
        }
        Command::Man => {
            let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| Failure::msg(EXIT_INPUT, e.to_string(), ""))?;
            write_stdout(&String::from_utf8_lossy(&out));
            Ok(EXIT_OK)
        }
    }
}

/// `pg-integrity init`: propose a configuration from what the database shows.
async fn init(args: crate::cli::InitArgs) -> Result<u8, Failure> {
    let to_stdout = args.output.as_os_str() == "-";
    if !to_stdout && args.output.exists() && !args.force {
        return Err(Failure::msg(
            EXIT_INPUT,
            format!("{} exists", args.output.display()),
            "use --force to overwrite it, or --output FILE (or -) to write elsewhere",
        ));
    }
    let catalog = Catalog::load(&[] as &[&str]).map_err(Failure::input)?;
    let target = open_target(&args.target).await?;
    let client = crate::connection::connect(&target.options).await?;
    let proposal = crate::init::inspect(&client, &catalog)
        .await
        .map_err(|m| Failure::msg(EXIT_DATABASE, m, ""))?;
    let text = crate::init::render(&proposal);
    // What init writes must load: a proposal the audit would refuse helps nobody.
    LoadedConfig::parse(&args.output.display().to_string(), &text).map_err(Failure::input)?;
    if to_stdout {
        write_stdout(&text);
    } else {
        std::fs::write(&args.output, &text).map_err(|e| {
            Failure::msg(
                EXIT_INPUT,
                format!("cannot write {}: {e}", args.output.display()),
                "",
            )
        })?;
        eprintln!(
            "wrote {} (tenant table {}, model {}): review it, then run `pg-integrity audit`",
            args.output.display(),
            proposal
                .candidates
                .first()
                .map_or("none found", |c| c.table.as_str()),
            crate::init::model_written(&proposal),
        );
    }
    Ok(EXIT_OK)
}

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

fn parse_output(spec: &str) -> Result<(Format, PathBuf), Failure> {
    let (f, p) = spec.split_once(':').ok_or_else(|| {
        Failure::msg(
            EXIT_INPUT,
            format!("--output `{spec}` is not FORMAT:PATH"),
            "e.g. --output sarif:results.sarif",
        )
    })?;
    let format = Format::parse(f).ok_or_else(|| {
        Failure::msg(
            EXIT_INPUT,
            format!("unknown format `{f}` in --output"),
            "formats: table, markdown, json, sarif, junit, github",
        )
    })?;
    Ok((format, PathBuf::from(p)))
}

async fn audit(args: AuditArgs) -> Result<u8, Failure> {
    let (catalog, mut config) = load_catalog(&args.catalog)?;
    if let Some(pct) = args.sample {
        if !(pct > 0.0 && pct <= 100.0) {
            return Err(Failure::msg(
                EXIT_INPUT,
                format!("--sample {pct} is not a percentage"),
                "use a number above 0 and at most 100, e.g. --sample 10",
            ));
        }
        config.config.audit.sample_percent = Some(pct);
    }
    let fail_on = FailOn::parse(&args.fail_on).ok_or_else(|| {
        Failure::msg(
            EXIT_INPUT,
            format!("unknown --fail-on `{}`", args.fail_on),
            "use critical, high, medium, low or never",
        )
    })?;
    let outputs: Vec<(Format, PathBuf)> = args
        .output
        .iter()
        .map(|o| parse_output(o))
        .collect::<Result<_, _>>()?;
    let baseline = match &args.baseline {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                Failure::msg(
                    EXIT_INPUT,
                    format!("cannot read baseline {}: {e}", p.display()),
                    "create one with --write-baseline FILE",
                )
            })?;
            Some(
                Baseline::parse(&p.display().to_string(), &text).map_err(|m| {
                    Failure::msg(EXIT_INPUT, m, "regenerate it with --write-baseline FILE")
                })?,
            )
        }
        None => None,
    };
    let opts = AuditOptions {
        jobs: args.jobs,
        deep: args.deep,
        probe: args.probe.is_some(),
        probe_write: args.probe == Some(crate::cli::ProbeMode::Write),
        only: args.only.clone(),
        skip: args.skip.clone(),
        progress: true,
        batch: !args.no_batch,
    };
    let selected = runner::select(&catalog, &config, &opts)
        .map_err(|m| Failure::msg(EXIT_INPUT, m, "`pg-integrity checks list` shows every id"))?;
    let target = open_target(&args.target).await?;
    let mut opts = opts;
    let (jobs, tenancy) = check_scope(&target, &catalog, &config, opts.jobs).await?;
    opts.jobs = jobs;
    let run = runner::audit(&target.options, &catalog, &config, &opts, selected).await?;
    drop(target);
    let gate_opts = GateOptions {
        fail_on,
        min_score: args.min_score,
        today: chrono::Utc::now().date_naive(),
    };
    let mut assessment = assess(run, &config, baseline.as_ref(), &gate_opts);
    assessment.findings_limit = args.findings.0;
    assessment.tenancy = tenancy;
    assessment.artifact = args
        .target
        .schema
        .first()
        .map(|p| p.display().to_string())
        .or_else(|| config.source.as_ref().map(|s| s.name.clone()));
    if let Some(path) = &args.write_baseline {
        let b = Baseline::from_assessment(&assessment);
        let text = serde_json::to_string_pretty(&b).unwrap_or_default() + "\n";
        std::fs::write(path, text).map_err(|e| {
            Failure::msg(
                EXIT_INPUT,
                format!("cannot write baseline {}: {e}", path.display()),
                "check the directory exists and is writable",
            )
        })?;
        let checks = b
            .findings
            .iter()
            .map(|f| f.check.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        eprintln!(
            "wrote baseline {} ({} finding{} of {checks} check{}): later audits with --baseline {} fail only on new findings",
            path.display(),
            b.findings.len(),
            plural(b.findings.len()),
            plural(checks),
            path.display()
        );
    }
    let stdout_terminal = std::io::stdout().is_terminal();
    let format = args.format.unwrap_or(if stdout_terminal {
        Format::Table
    } else {
        Format::Json
    });
    let width = if stdout_terminal { None } else { Some(120) };
    for (f, path) in &outputs {
        let text = report::render(*f, &assessment, Some(120))
            .map_err(|m| Failure::msg(EXIT_INPUT, m, ""))?;
        std::fs::write(path, text).map_err(|e| {
            Failure::msg(
                EXIT_INPUT,
                format!("cannot write {}: {e}", path.display()),
                "check the directory exists and is writable",
            )
        })?;
    }
    let text =
        report::render(format, &assessment, width).map_err(|m| Failure::msg(EXIT_INPUT, m, ""))?;
    write_stdout(&text);
    if wants_annotations(format, args.no_annotations, &env_var) {
        // On stderr, which the Actions runner reads for workflow commands as it
        // reads stdout, so that `--format json > report.json` stays valid JSON.
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(report::github::render(&assessment).as_bytes());
        let _ = err.flush();
    }
    Ok(if assessment.gate.passed {
        EXIT_OK
    } else {
        EXIT_GATE
    })
}

/// Inside GitHub Actions (`GITHUB_ACTIONS=true`), findings are also emitted as
/// workflow commands, unless `--no-annotations` or the report already is them.
pub fn wants_annotations(
    format: Format,
    no_annotations: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> bool {
    format != Format::Github && !no_annotations && env("GITHUB_ACTIONS").as_deref() == Some("true")
}

/// Write to stdout; a closed pipe (`| head`) is not an error.
pub fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

async fn checks(cmd: ChecksCommand) -> Result<u8, Failure> {
    match cmd {
        ChecksCommand::List(args) => {
            let (catalog, config) = load_catalog(&args)?;
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
            write_stdout(&format!("{} checks valid\n", catalog.checks.len()));
            Ok(EXIT_OK)
        }
        ChecksCommand::Test {
            dirs,
            only,
            database_url,
            jobs,
            preload,
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
            let outcomes =
                crate::checktest::run_cases(&admin, &catalog, &only, jobs, false).await?;
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

fn show_check(catalog: &Catalog, c: &crate::catalog::Check) -> String {
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
            let d = crate::params::describe(p).unwrap_or_default();
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

/// Refuse a scope that would turn the checks off in silence (exit 2), and cap `--jobs`
/// at the connections the server can spare (said on stderr).
async fn check_scope(
    target: &Target,
    catalog: &Catalog,
    config: &LoadedConfig,
    jobs: usize,
) -> Result<(usize, Option<(String, String)>), Failure> {
    let client = crate::connection::connect(&target.options).await?;
    let scope = crate::scope::inspect(&client, catalog, config)
        .await
        .map_err(|m| Failure::msg(EXIT_DATABASE, m, ""))?;
    if let Some((missing, near)) = scope.missing_schemas.first() {
        return Err(Failure::msg(
            EXIT_INPUT,
            format!("scope.schemas names `{missing}`, a schema this database does not have"),
            &near.clone().unwrap_or_else(|| {
                "list the schemas with \\dn in psql, or leave scope.schemas empty for all".into()
            }),
        ));
    }
    if scope.tables == 0 {
        return Err(Failure::msg(
            EXIT_INPUT,
            "nothing to audit: no table is in scope, so every check would pass or not apply".into(),
            "check scope.schemas and scope.exclude_tables in pg-integrity.toml, and that this is the database you meant",
        ));
    }
    let capped = crate::scope::cap_jobs(jobs, scope.free_connections);
    if capped < jobs {
        eprintln!(
            "note: --jobs {jobs} capped at {capped}: the server has {} free connection slots, and the application keeps the rest",
            scope.free_connections.max(0)
        );
    }
    // The tenancy model the rls checks judge by, and why, for the report's header.
    let tenancy = if catalog.fragments.contains_key("tenancy_model") {
        crate::scope::tenancy_model(&client, catalog, config)
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    Ok((capped, tenancy))
}

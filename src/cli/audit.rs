//! `pg-integrity audit`: select the checks, run them on the target, judge them
//! against the gate, and render the reports.

use crate::audit::execute;
use crate::audit::gate::{activity, assess, score, Assessment, Baseline, FailOn, GateOptions};
use crate::audit::plan::{self, AuditOptions, Plan, PlanError};
use crate::checks::catalog::Catalog;
use crate::cli::args::{AuditArgs, ProbeMode};
use crate::cli::exit::{write_stdout, Failure, EXIT_DATABASE, EXIT_GATE, EXIT_INPUT, EXIT_OK};
use crate::cli::target::{answering, env_var, load_catalog, open_target};
use crate::config::LoadedConfig;
use crate::db::connection::ConnectOptions;
use crate::model::Severity;
use crate::report::{self, Format};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

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
            "formats: table, markdown, json, sarif, junit, github, html",
        )
    })?;
    Ok((format, PathBuf::from(p)))
}

pub async fn run(args: AuditArgs) -> Result<u8, Failure> {
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
    let gate_opts = gate_options(&args)?;
    let outputs: Vec<(Format, PathBuf)> = args
        .output
        .iter()
        .map(|o| parse_output(o))
        .collect::<Result<_, _>>()?;
    let baseline = read_baseline(args.baseline.as_deref())?;
    let opts = AuditOptions {
        jobs: args.jobs,
        deep: args.deep,
        probe: args.probe.is_some(),
        probe_write: args.probe == Some(ProbeMode::Write),
        only: args.only.clone(),
        skip: args.skip.clone(),
        progress: true,
        batch: !args.no_batch,
    };
    let selected = plan::select(&catalog, &config, &opts)
        .map_err(|m| Failure::msg(EXIT_INPUT, m, "`pg-integrity checks list` shows every id"))?;
    let target = open_target(&args.target).await?;
    let plan = answering(&config, async {
        plan::build(&target.options, &catalog, &config, &opts, selected)
            .await
            .map_err(plan_failure)
    })
    .await?;
    refuse_scope(&plan)?;
    let tenancy = plan.tenancy.clone();
    let facts = plan.tenancy_facts.clone();
    let untenanted = plan.untenanted.clone();
    let mut run = answering(&config, async { Ok(execute::run(plan).await?) }).await?;
    // the rls checks' words in the tenancy model in force
    crate::report::names::refine_run(&mut run, &config.config, facts.as_ref());
    if let Some(reason) = &untenanted {
        crate::audit::scope::explain_untenanted(&mut run, &catalog, reason);
    }
    shipped_fixes_only_on_the_fixture(&target.options, &mut run).await;
    let load_warnings = target.warnings.clone();
    drop(target);
    let mut assessment = assess(run, &config, baseline.as_ref(), &gate_opts);
    assessment.findings_limit = args.findings.0;
    assessment.tenancy = tenancy;
    assessment.activity = activity(opts.deep, opts.probe, opts.probe_write);
    assessment.load_warnings = load_warnings;
    assessment.artifact = args
        .target
        .schema
        .first()
        .map(|p| p.display().to_string())
        .or_else(|| config.source.as_ref().map(|s| s.name.clone()));
    if let Some(path) = &args.write_baseline {
        write_baseline(path, &assessment)?;
    }
    if let Some(dir) = &args.history {
        assessment.history = report::history::read_dir(dir)
            .map_err(|m| Failure::msg(EXIT_INPUT, m, "--history takes a directory"))?;
    }
    render(&args, &outputs, &assessment)?;
    if let Some(dir) = &args.history {
        keep_in_history(dir, &assessment)?;
    }
    Ok(if assessment.gate.passed {
        EXIT_OK
    } else {
        EXIT_GATE
    })
}

/// The compiled-in migrations are the ticket-service fixture's (`migrate apply` without
/// `--from` refuses any other schema): a check's `fixed_by` names them only when the audited
/// database is that schema (it has every fixture table). Elsewhere it is emptied, and the
/// reports point at `pg-integrity fix --only <id>` for a check with a fix template.
async fn shipped_fixes_only_on_the_fixture(
    options: &ConnectOptions,
    run: &mut crate::audit::outcome::AuditRun,
) {
    if run.results.iter().all(|r| r.check.fixed_by.is_empty()) {
        return;
    }
    let fixture = match crate::db::connection::connect(options).await {
        Ok(client) => crate::migrate::apply::missing_fixture_tables(&client)
            .await
            .is_ok_and(|missing| missing.is_empty()),
        Err(_) => false,
    };
    if fixture {
        return;
    }
    for r in &mut run.results {
        if !r.check.fixed_by.is_empty() {
            let mut check = (*r.check).clone();
            check.fixed_by.clear();
            r.check = std::sync::Arc::new(check);
        }
    }
}

fn gate_options(args: &AuditArgs) -> Result<GateOptions, Failure> {
    let fail_on = FailOn::parse(&args.fail_on).ok_or_else(|| {
        Failure::msg(
            EXIT_INPUT,
            format!("unknown --fail-on `{}`", args.fail_on),
            "use critical, high, medium, low or never",
        )
    })?;
    Ok(GateOptions {
        fail_on,
        min_score: args.min_score,
        today: chrono::Utc::now().date_naive(),
    })
}

fn read_baseline(path: Option<&std::path::Path>) -> Result<Option<Baseline>, Failure> {
    let Some(p) = path else { return Ok(None) };
    let text = std::fs::read_to_string(p).map_err(|e| {
        Failure::msg(
            EXIT_INPUT,
            format!("cannot read baseline {}: {e}", p.display()),
            "create one with --write-baseline FILE",
        )
    })?;
    Baseline::parse(&p.display().to_string(), &text)
        .map(Some)
        .map_err(|m| Failure::msg(EXIT_INPUT, m, "regenerate it with --write-baseline FILE"))
}

fn write_baseline(path: &std::path::Path, assessment: &Assessment) -> Result<(), Failure> {
    let b = Baseline::from_assessment(assessment);
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
    Ok(())
}

/// `--history DIR`: this audit's JSON report, kept for the next audits' trend.
fn keep_in_history(dir: &std::path::Path, assessment: &Assessment) -> Result<(), Failure> {
    let path = dir.join(report::history::file_name(assessment));
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let text = report::render(Format::Json, assessment, Some(120)).unwrap_or_default();
        std::fs::write(&path, text)
    });
    written.map_err(|e| {
        Failure::msg(
            EXIT_INPUT,
            format!("cannot write {}: {e}", path.display()),
            "--history needs a directory it can write",
        )
    })
}

/// The report on stdout (a table on a terminal, JSON on a pipe, unless `--format`),
/// each `--output` file, and GitHub annotations inside Actions.
fn render(
    args: &AuditArgs,
    outputs: &[(Format, PathBuf)],
    assessment: &Assessment,
) -> Result<(), Failure> {
    let stdout_terminal = std::io::stdout().is_terminal();
    let format = args.format.unwrap_or(if stdout_terminal {
        Format::Table
    } else {
        Format::Json
    });
    let width = if stdout_terminal { None } else { Some(120) };
    for (f, path) in outputs {
        let text = report::render(*f, assessment, Some(120))
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
        report::render(format, assessment, width).map_err(|m| Failure::msg(EXIT_INPUT, m, ""))?;
    write_stdout(&text);
    if wants_annotations(format, args.no_annotations, &env_var) {
        // On stderr, which the Actions runner reads for workflow commands as it
        // reads stdout, so that `--format json > report.json` stays valid JSON.
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(report::github::render(assessment).as_bytes());
        let _ = err.flush();
    }
    Ok(())
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

/// Plan and run an audit under the same client-side deadline as `audit` (a server that
/// stops answering ends the command with exit 3), with no scope refusal or report: the
/// audits inside `demo`, `migrate` and `fix`.
pub(crate) async fn plan_and_run(
    options: &ConnectOptions,
    catalog: &Catalog,
    config: &LoadedConfig,
    opts: &AuditOptions,
    selected: Vec<&crate::checks::catalog::Check>,
) -> Result<crate::audit::outcome::AuditRun, Failure> {
    answering(config, async {
        let plan = plan::build(options, catalog, config, opts, selected)
            .await
            .map_err(plan_failure)?;
        let facts = plan.tenancy_facts.clone();
        let untenanted = plan.untenanted.clone();
        let mut run = execute::run(plan).await?;
        crate::report::names::refine_run(&mut run, &config.config, facts.as_ref());
        if let Some(reason) = &untenanted {
            crate::audit::scope::explain_untenanted(&mut run, catalog, reason);
        }
        Ok(run)
    })
    .await
}

/// A catalog audit for before/after comparisons (no deep, no probes).
pub(crate) async fn quick_audit(
    options: &ConnectOptions,
    catalog: &Catalog,
    config: &LoadedConfig,
) -> Result<Assessment, Failure> {
    let opts = AuditOptions {
        progress: false,
        ..AuditOptions::default()
    };
    let selected =
        plan::select(catalog, config, &opts).map_err(|m| Failure::msg(EXIT_INPUT, m, ""))?;
    let run = plan_and_run(options, catalog, config, &opts, selected).await?;
    let gate = GateOptions {
        fail_on: FailOn::At(Severity::High),
        min_score: None,
        today: chrono::Utc::now().date_naive(),
    };
    Ok(assess(run, config, None, &gate))
}

pub(crate) fn score_line(before: &Assessment, after: &Assessment) -> String {
    let (pb, ab, b) = score(&before.run.results);
    let (pa, aa, a) = score(&after.run.results);
    match (b, a) {
        (Some(b), Some(a)) => format!(
            "Score: {b:.0}% ({pb}/{ab}) → {a:.0}% ({pa}/{aa}), {:+.0} points\n",
            a - b
        ),
        _ => "Score: n/a\n".into(),
    }
}

fn plan_failure(e: PlanError) -> Failure {
    match e {
        PlanError::Connection(e) => e.into(),
        PlanError::Scope(m) => Failure::msg(EXIT_DATABASE, m, ""),
    }
}

/// Refuse a scope that would turn the checks off in silence (exit 2), and say on
/// stderr when `--jobs` was capped at the connections the server can spare.
fn refuse_scope(plan: &Plan) -> Result<(), Failure> {
    let scope = &plan.scope;
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
    if let Some(cap) = plan.jobs_cap {
        eprintln!(
            "note: --jobs {} capped at {}: the server has {} free connection slots, and the application keeps the rest",
            cap.requested,
            cap.capped,
            cap.free_connections.max(0)
        );
    }
    Ok(())
}

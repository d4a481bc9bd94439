//! `pg-integrity init`: propose a configuration from what the database shows.

use crate::checks::catalog::Catalog;
use crate::cli::args::InitArgs;
use crate::cli::exit::{write_stdout, Failure, EXIT_DATABASE, EXIT_INPUT, EXIT_OK};
use crate::cli::target::open_target;
use crate::config::LoadedConfig;
use crate::db::connection::connect;

/// `pg-integrity init`: propose a configuration from what the database shows.
pub async fn run(args: InitArgs) -> Result<u8, Failure> {
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
    let client = connect(&target.options).await?;
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

use clap::Parser;
use pg_integrity::cli::{
    self,
    args::{Cli, Color},
    exit::{EXIT_DATABASE, EXIT_INPUT, EXIT_OK},
};
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_INPUT } else { EXIT_OK });
        }
    };
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal(),
    };
    colored::control::set_override(color);
    let stderr_color = color && std::io::stderr().is_terminal() || cli.color == Color::Always;
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(stderr_color)
                .unicode(stderr_color)
                // In logs and pipes, one line per message: easier to grep.
                .wrap_lines(std::io::stderr().is_terminal())
                .build(),
        )
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_DATABASE);
        }
    };
    let code = runtime.block_on(async {
        tokio::select! {
            outcome = cli::run(cli) => match outcome {
                Ok(code) => code,
                Err(failure) => {
                    eprintln!("{:?}", failure.report);
                    failure.code
                }
            },
            _ = tokio::signal::ctrl_c() => {
                // The command's future is dropped here: a throwaway server stops and is removed.
                eprintln!("interrupted");
                130
            }
        }
    });
    ExitCode::from(code)
}

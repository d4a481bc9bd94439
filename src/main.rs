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
                    eprintln!("{}", Shown(failure.report.as_ref(), stderr_color));
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

/// An error as the user reads it: once, and without the diagnostic's code
/// (`pg_integrity::sandbox::load` names our error type, not the problem). A summary
/// whose one related problem says the same thing is shown as that problem alone.
/// `fancy`: colour and Unicode (stderr is a terminal, or --color always).
struct Shown<'a>(&'a dyn miette::Diagnostic, bool);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0;
        if shown.labels().is_none() {
            let related: Vec<&dyn miette::Diagnostic> =
                shown.related().map(|r| r.collect()).unwrap_or_default();
            if let [one] = related.as_slice() {
                if shown.to_string().contains(&one.to_string()) {
                    shown = *one;
                }
            }
        }
        let theme = if self.1 {
            miette::GraphicalTheme::unicode()
        } else {
            miette::GraphicalTheme {
                characters: miette::ThemeCharacters::ascii(),
                styles: miette::ThemeStyles::none(),
            }
        };
        miette::GraphicalReportHandler::new_themed(theme)
            // In logs and pipes, one line per message: easier to grep.
            .with_wrap_lines(std::io::stderr().is_terminal())
            .render_report(f, &Uncoded(shown))
    }
}

/// A diagnostic with everything but its code.
struct Uncoded<'a>(&'a dyn miette::Diagnostic);

impl std::fmt::Debug for Uncoded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.0, f)
    }
}

impl std::fmt::Display for Uncoded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.0, f)
    }
}

impl std::error::Error for Uncoded<'_> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl miette::Diagnostic for Uncoded<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        self.0.severity()
    }
    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.0.help()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0.source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.0.labels()
    }
    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn miette::Diagnostic> + 'b>> {
        self.0.related()
    }
    fn diagnostic_source(&self) -> Option<&dyn miette::Diagnostic> {
        self.0.diagnostic_source()
    }
}

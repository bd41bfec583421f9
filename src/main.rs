use std::process::ExitCode;

// Request decoding allocates many small strings and maps; mimalloc's thread-local free lists
// measured faster than glibc malloc for it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use mlengine::cli::{Cli, Command};

fn init_logging(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    let filter =
        EnvFilter::try_from_env("MLENGINE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (see mlengine --help)");
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Command::Train(args) => {
            init_logging(args.verbose_logging);
            mlengine::trainer::run(args).map(|outcome| {
                mlengine::trainer::print_metrics(&outcome.metrics);
                use std::io::Write;
                let _ = writeln!(
                    std::io::stdout(),
                    "Exported model to {}",
                    outcome.export_dir.display()
                );
            })
        }
        Command::BatchPredict(args) => {
            init_logging(false);
            mlengine::batch::run(args, cli.ort_library.as_deref()).map(|s| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stdout(),
                    "predictionCount: {}, errorCount: {}, time: {:.2} s ({:.0} rows/s)",
                    s.predictions,
                    s.errors,
                    s.seconds,
                    (s.predictions + s.errors) as f64 / s.seconds.max(1e-9)
                );
            })
        }
        Command::Serve(args) => {
            init_logging(false);
            mlengine::serve::run(args, cli.ort_library.as_deref())
        }
        Command::BenchOrt(args) => {
            init_logging(false);
            mlengine::bench::run(args, cli.ort_library.as_deref())
        }
        Command::Predict(args) => {
            init_logging(false);
            mlengine::predict::run(args, cli.ort_library.as_deref())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

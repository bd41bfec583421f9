//! A thin runner per command: the runtime, the library call, the printing and the exit code.
//! The library below never builds a runtime or writes to the terminal itself.

mod batch;
mod bench;
mod health;
mod manage;
mod predict;
mod serve;
mod train;
mod tune;

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
pub use crate::status::one_line;

fn init_logging(verbose: bool) {
    // object_store logs each retry of a request at info; its final error says enough.
    let default = if verbose {
        "debug"
    } else {
        "info,object_store=warn"
    };
    let filter =
        EnvFilter::try_from_env("MLENGINE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// Runs a parsed command line; errors are one line on stderr and a non-zero exit.
pub fn run(cli: Cli) -> ExitCode {
    if !matches!(cli.command, Command::Serve(_)) {
        crate::huge_pages::on();
    }
    let ort = cli.ort_library;
    let result = match cli.command {
        Command::Train(args) => {
            init_logging(args.verbose_logging);
            train::run(args)
        }
        Command::Tune(args) => {
            init_logging(false);
            tune::run(&args)
        }
        Command::BatchPredict(args) => {
            init_logging(false);
            batch::run(&args, ort)
        }
        Command::Serve(args) => {
            init_logging(false);
            serve::run(&args, ort).map(|()| ExitCode::SUCCESS)
        }
        Command::BenchOrt(args) => {
            init_logging(false);
            bench::run(&args, ort).map(|()| ExitCode::SUCCESS)
        }
        Command::Predict(args) => {
            init_logging(false);
            predict::run(&args, ort).map(|()| ExitCode::SUCCESS)
        }
        Command::Health(args) => health::run(&args),
        Command::Models(args) => manage::models(&args),
        Command::Versions(args) => manage::versions(&args),
        Command::Jobs(args) => manage::jobs(&args),
        Command::Operations(args) => manage::operations(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// A tokio runtime for a command's I/O.
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Without this, a task woken by the one running goes next: when a batch's answers reach
    // the hyper stream tasks of one HTTP/2 connection, each of them wakes the connection's task,
    // which then runs before the next answer is ready and writes each with its own `writev`
    // (0.99 per call at 32 streams on one connection, 0.08 with the slot off; README, "Serving
    // with standard clients").
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    Ok(builder
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?)
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
/// A token cancelled on SIGINT or SIGTERM: long work stops cleanly (a checkpoint, temporary files
/// removed, trials stopped) instead of dying mid-write.
fn cancelled_on_signal(runtime: &tokio::runtime::Runtime) -> tokio_util::sync::CancellationToken {
    let cancel = tokio_util::sync::CancellationToken::new();
    let token = cancel.clone();
    runtime.spawn(async move {
        shutdown_signal().await;
        token.cancel();
    });
    cancel
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    /// The project's build (.cargo/config.toml) turns tokio's unstable options on, so that the
    /// serving runtime runs without its LIFO slot; a build that lost the flag fails here rather
    /// than quietly writing every gRPC answer on its own.
    #[cfg(not(tokio_unstable))]
    #[test]
    fn the_build_turns_on_tokio_unstable_for_the_runtime() {
        panic!("built without --cfg tokio_unstable: a RUSTFLAGS variable replaces .cargo/config.toml's");
    }

    #[test]
    fn causes_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file (os error 2)");
        let e = anyhow::Error::new(io).context("cannot read x: No such file (os error 2)");
        assert_eq!(
            super::one_line(&e),
            "cannot read x: No such file (os error 2)"
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::one_line(&e), "outer: inner");
    }
}

//! `mlengine batch-predict`: a runtime thread per session, a spinner with rows and errors on a
//! terminal, and the summary line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::batch::{self, Progress};
use crate::cli::BatchArgs;

pub fn run(args: &BatchArgs, ort_library: Option<PathBuf>) -> Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.max_error_rate) {
        anyhow::bail!("--max-error-rate must be between 0 and 1");
    }
    batch::check_worker_count(args.max_worker_count)?;
    let config = args.config(ort_library);
    // One runtime thread per session: each decodes, runs and encodes whole batches.
    let runtime = super::runtime(config.max_worker_count)?;
    let cancel = super::cancelled_on_signal(&runtime);
    let spinner = Spinner::new();
    let summary = runtime.block_on(batch::run(&config, &cancel, &spinner));
    spinner.finish();
    let s = summary?;
    writeln!(
        std::io::stdout(),
        "predictionCount: {}, errorCount: {}, time: {:.2} s ({:.0} rows/s)",
        s.predictions,
        s.errors,
        s.seconds,
        (s.predictions + s.errors) as f64 / s.seconds.max(1e-9)
    )?;
    s.verdict(args.max_error_rate)?;
    Ok(ExitCode::SUCCESS)
}

/// Rows, rows/s and errors on a terminal; nothing otherwise.
struct Spinner {
    bar: Option<indicatif::ProgressBar>,
}

impl Spinner {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {pos} rows  {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        });
        Spinner { bar }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Spinner {
    fn advance(&self, rows: u64, errors: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(rows);
            let rate = bar.position() as f64 / bar.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{rate:.0} rows/s  {errors} errors"));
        }
    }
}

//! `mlengine train`: sets the process's thread use, runs the trainer with a console (a progress
//! bar on a terminal, log lines otherwise, and the evaluation lines), and says where the model
//! went, or, on Ctrl-C, which step is checkpointed.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::TrainArgs;
use crate::storage::Storage;
use crate::trainer::metrics::EvalMetrics;
use crate::trainer::observe::HypertuneReport;
use crate::trainer::{self, metrics_line, Interrupted, Observer, TrainConfig};

mod distributed;

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    let task = distributed::cloud_task()?;
    if let Some(why) = task.as_ref().and_then(|t| t.idle()) {
        tracing::warn!("{why}");
        return Ok(ExitCode::SUCCESS);
    }
    if args.distributed {
        return distributed::launch(args.worker_count);
    }
    let config: TrainConfig = args.into();
    config.validate()?;
    let world = distributed::World::join()?;
    let rank = world.collective().rank();
    // candle sizes its thread use from RAYON_NUM_THREADS: set for the whole process, which this
    // command owns, before the first tensor operation and before any other thread exists.
    // SAFETY: no other thread exists yet that could read the environment concurrently.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", config.num_threads.to_string()) };
    let runtime = super::runtime(1)?;
    let cancel = super::cancelled_on_signal(&runtime);
    // Rank 0 speaks for the job: the console and a tuning trial's reports.
    let mut observers: Vec<Box<dyn Observer>> = Vec::new();
    if rank == 0 {
        observers.push(Box::new(Console::new(config.log_step_count_steps)));
        // A trial of a tuning job reports its metric the way Cloud ML trainers did.
        if let Some(report) = HypertuneReport::from_env()? {
            observers.push(Box::new(report));
        }
    }
    let storage = Storage::new(runtime.handle().clone());
    let outcome = match trainer::run(&config, &storage, observers, world.collective(), &cancel) {
        Ok(outcome) => outcome,
        Err(e) => {
            if let Some(i) = e.downcast_ref::<Interrupted>() {
                if rank == 0 {
                    eprintln!("{i}");
                }
                return Ok(ExitCode::from(130));
            }
            // One process's failure ends them all, each saying whose it was.
            world.fail(&e);
            return Err(e);
        }
    };
    if rank != 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout();
    if outcome.exported_now {
        writeln!(out, "Exported model to {}", outcome.export)?;
    } else {
        writeln!(
            out,
            "The model of step {} was already exported to {}",
            outcome.global_step, outcome.export
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress and evaluations on the console.
struct Console {
    bar: Option<ProgressBar>,
    every: u64,
    window_start: Instant,
    window_steps: u64,
    loss_sum: f64,
    loss_count: u64,
}

impl Console {
    fn new(every: u64) -> Self {
        Console {
            bar: None,
            every,
            window_start: Instant::now(),
            window_steps: 0,
            loss_sum: 0.0,
            loss_count: 0,
        }
    }

    fn window(&mut self) -> (f64, f64) {
        let secs = self.window_start.elapsed().as_secs_f64().max(1e-9);
        let rate = self.window_steps as f64 / secs;
        let loss = self.loss_sum / self.loss_count.max(1) as f64;
        self.window_start = Instant::now();
        self.window_steps = 0;
        self.loss_sum = 0.0;
        self.loss_count = 0;
        (rate, loss)
    }
}

impl Observer for Console {
    fn started(&mut self, global_step: u64, last_step: Option<u64>) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        // The bar counts global steps, so a resumed run starts where the checkpoint was.
        let bar = last_step.map_or_else(ProgressBar::no_length, ProgressBar::new);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(global_step);
        bar.reset_eta();
        self.bar = Some(bar);
    }

    fn step(&mut self, global_step: u64, loss: f32) {
        self.window_steps += 1;
        self.loss_sum += loss as f64;
        self.loss_count += 1;
        if let Some(bar) = &self.bar {
            bar.set_position(global_step);
            if global_step.is_multiple_of(10) {
                let (rate, loss) = self.window();
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("{rate:.0} steps/s  loss {loss:.4}"));
                }
            }
        } else if global_step.is_multiple_of(self.every) {
            let (rate, loss) = self.window();
            tracing::info!("loss = {loss:.5}, step = {global_step} ({rate:.1} steps/s)");
        }
    }

    fn evaluated(&mut self, metrics: &EvalMetrics) -> Result<()> {
        let line = metrics_line(metrics);
        let print = || {
            let _ = writeln!(std::io::stdout(), "{line}");
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
        Ok(())
    }

    fn evaluated_again(&mut self, metrics: &EvalMetrics) -> Result<()> {
        self.evaluated(metrics)
    }

    fn finished(&mut self, global_step: u64) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        tracing::info!(global_step, "training finished");
    }
}

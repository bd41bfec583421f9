//! Training progress: a bar with loss and steps/s on a terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    every: u64,
    window_start: Instant,
    window_steps: u64,
    loss_sum: f64,
    loss_count: u64,
}

impl Progress {
    pub fn new(planned: Option<u64>, every: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = planned.map_or_else(ProgressBar::no_length, ProgressBar::new);
            let style = ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  {per_sec}  {msg}  eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            every,
            window_start: Instant::now(),
            window_steps: 0,
            loss_sum: 0.0,
            loss_count: 0,
        }
    }

    pub fn step(&mut self, global_step: u64, loss: f32) {
        self.window_steps += 1;
        self.loss_sum += loss as f64;
        self.loss_count += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if global_step.is_multiple_of(10) {
                bar.set_message(format!(
                    "loss {:.4}",
                    self.loss_sum / self.loss_count as f64
                ));
                self.loss_sum = 0.0;
                self.loss_count = 0;
            }
        } else if global_step.is_multiple_of(self.every) {
            let secs = self.window_start.elapsed().as_secs_f64().max(1e-9);
            tracing::info!(
                "loss = {:.5}, step = {} ({:.1} steps/s)",
                self.loss_sum / self.loss_count.max(1) as f64,
                global_step,
                self.window_steps as f64 / secs
            );
            self.window_start = Instant::now();
            self.window_steps = 0;
            self.loss_sum = 0.0;
            self.loss_count = 0;
        }
    }

    /// Runs `f` (which prints) without tearing the bar.
    pub fn suspend(&self, f: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    pub fn finish(&self, global_step: u64) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        tracing::info!(global_step, "training finished");
    }
}

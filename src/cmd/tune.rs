//! `mlengine tune`: reads and checks the config before any trial starts, runs the job with a line
//! per trial as it ends, and prints the job's `trainingOutput` as `gcloud ml-engine jobs describe`
//! did (YAML).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::TuneArgs;
use crate::tune::output::{TrialRecord, TrialState};
use crate::tune::{self, Observer, Trainer, TuneConfig};

pub fn run(args: &TuneArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read --config {}", args.config.display()))?;
    let spec = tune::config::parse_file(&text)
        .map_err(|e| anyhow::anyhow!("--config {}: {e}", args.config.display()))?;
    let job_dir = tune::local_job_dir(&args.job_dir)?;
    let trainer = match &args.trainer {
        Some(program) => Trainer::Program(program.clone()),
        None => {
            Trainer::Mlengine(std::env::current_exe().context("cannot find this mlengine binary")?)
        }
    };
    let cores = args.cores.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let training_input = serde_json::json!({
        "hyperparameters": serde_yaml_ng::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|d| d.pointer("/trainingInput/hyperparameters").cloned()),
        "args": args.trainer_args,
        "jobDir": args.job_dir,
    });
    let config = TuneConfig {
        spec,
        job_dir,
        seed: args.seed,
        trainer,
        trainer_args: args.trainer_args.clone(),
        resume_from: args.resume_from.clone(),
        training_input,
        cores,
    };
    let runtime = super::runtime(1)?;
    let cancel = super::cancelled_on_signal(&runtime);
    let mut console = Console {
        tag: config.spec.metric_tag.clone(),
    };
    eprintln!(
        "Tuning {} trial(s), {} at a time, {} ({} core(s) each); trials in {}",
        config.spec.max_trials,
        config.spec.max_parallel_trials,
        match config.spec.algorithm {
            tune::config::Algorithm::Bayesian => "Bayesian optimization",
            tune::config::Algorithm::Grid => "grid search",
            tune::config::Algorithm::Random => "random search",
        },
        (cores / config.spec.max_parallel_trials as usize).max(1),
        config.job_dir.display()
    );
    let result = tune::run(&config, &cancel, &mut console);
    let output = result?;
    let describe = serde_json::json!({"trainingOutput": output.0});
    let mut out = std::io::stdout();
    write!(out, "{}", serde_yaml_ng::to_string(&describe)?)?;
    Ok(ExitCode::SUCCESS)
}

/// A line per trial as it ends.
struct Console {
    tag: String,
}

impl Observer for Console {
    fn trial_ended(&mut self, t: &TrialRecord, finished: usize, total: usize) {
        let outcome = match (t.state, t.final_metric) {
            (TrialState::Succeeded, Some((step, value))) => format!(
                "{}{}={value} at step {step}",
                if t.stopped_early {
                    "stopped early, "
                } else {
                    ""
                },
                self.tag
            ),
            _ => format!(
                "FAILED: {}",
                t.error.as_deref().unwrap_or("no reason given")
            ),
        };
        eprintln!(
            "Trial {} ({}) {outcome} [{finished}/{total}]",
            t.id,
            t.values_text()
        );
    }
}

//! `mlengine tune`: reads and checks the config before any trial starts, runs the job with a line
//! per trial as it ends, and prints the job's `trainingOutput` as `gcloud ml-engine jobs describe`
//! did (YAML).

use std::io::{IsTerminal, Write};
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
    // A resumed study that silently started afresh would waste every trial: the source must
    // hold an earlier job's trials.
    let job_dir = tune::local_job_dir(&args.job_dir)?;
    if let Some(from) = &args.resume_from {
        // A job's own job-dir is resumed by running the job again; read as an earlier job's,
        // its interrupted trials would run twice.
        let same = |a: &std::path::Path, b: &std::path::Path| {
            a.canonicalize()
                .ok()
                .zip(b.canonicalize().ok())
                .is_some_and(|(a, b)| a == b)
        };
        if same(from, &job_dir) {
            anyhow::bail!(
                "--resume-from {} is this job's own --job-dir: run the job again without \
                 --resume-from to resume it",
                from.display()
            );
        }
        if !from.join(tune::OUTPUT_FILE).is_file() {
            anyhow::bail!(
                "--resume-from {} holds no {}: name the job-dir of an earlier tuning job",
                from.display(),
                tune::OUTPUT_FILE
            );
        }
    } else if let Some(id) = &spec.resume_previous_job_id {
        anyhow::bail!(
            "--config {}: resumePreviousJobId {id:?} names a job of the management API; here, \
             give that job's job-dir as --resume-from",
            args.config.display()
        );
    }
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
        study_id: args.study_id.clone(),
    };
    let runtime = super::runtime(1)?;
    let cancel = super::cancelled_on_signal(&runtime);
    let mut console = Console {
        tag: config.spec.metric_tag.clone(),
        maximize: config.spec.goal == tune::config::Goal::Maximize,
        total: config.spec.max_trials as usize,
        live: std::io::stderr().is_terminal().then(Table::default),
    };
    tune::check_metric_tag(&config)?;
    // One tuner per job-dir: two would run the same trials into the same folders.
    std::fs::create_dir_all(&config.job_dir)
        .with_context(|| format!("cannot create --job-dir {}", config.job_dir.display()))?;
    let _held = crate::storage::lock::hold(
        &config.job_dir,
        &format!("--job-dir {}", config.job_dir.display()),
    )?;
    tune::study_of(&config)?;
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

/// A line per trial as it ends; on a terminal, a table of every trial redrawn as they start and
/// end instead.
struct Console {
    tag: String,
    maximize: bool,
    total: usize,
    live: Option<Table>,
}

/// The trials so far, one line each, best first once they have values.
#[derive(Default)]
struct Table {
    /// (trial, its value when it has one, still running, its line)
    rows: Vec<(u32, Option<f64>, bool, String)>,
    drawn: usize,
}

impl Table {
    fn set(&mut self, id: u32, value: Option<f64>, running: bool, line: String) {
        self.rows.retain(|r| r.0 != id);
        self.rows.push((id, value, running, line));
    }

    fn draw(&mut self, header: &str, better: impl Fn(f64, f64) -> bool) {
        self.rows.sort_by(|a, b| match (a.1, b.1) {
            (Some(x), Some(y)) if better(x, y) => std::cmp::Ordering::Less,
            (Some(x), Some(y)) if better(y, x) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            _ => a.0.cmp(&b.0),
        });
        let mut err = std::io::stderr().lock();
        // Back to the table's first line, and clear to the end of the screen.
        if self.drawn > 0 {
            let _ = write!(err, "\x1b[{}A\x1b[J", self.drawn);
        }
        let _ = writeln!(err, "{header}");
        for (_, _, _, line) in &self.rows {
            let _ = writeln!(err, "{line}");
        }
        self.drawn = self.rows.len() + 1;
    }
}

impl Console {
    fn redraw(&mut self) {
        let (tag, total, maximize) = (self.tag.clone(), self.total, self.maximize);
        if let Some(table) = &mut self.live {
            let done = table.rows.iter().filter(|r| !r.2).count();
            let header =
                format!("TRIAL  STATE      {tag:<12} STEP    PARAMETERS   [{done}/{total}]");
            table.draw(&header, |a, b| if maximize { a > b } else { a < b });
        }
    }
}

impl Observer for Console {
    fn trial_started(&mut self, t: &TrialRecord) {
        if let Some(table) = &mut self.live {
            table.set(
                t.id,
                None,
                true,
                format!(
                    "{:<6} {:<10} {:<12} {:<7} {}",
                    t.id,
                    "RUNNING",
                    "",
                    "",
                    t.values_text()
                ),
            );
            self.redraw();
        }
    }

    fn trial_ended(&mut self, t: &TrialRecord, finished: usize, total: usize) {
        if let Some(table) = &mut self.live {
            let (state, value, step) = match (t.state, t.final_metric) {
                (TrialState::Succeeded, Some((step, value))) => (
                    if t.stopped_early {
                        "STOPPED"
                    } else {
                        "SUCCEEDED"
                    },
                    Some(value),
                    step.to_string(),
                ),
                _ => ("FAILED", None, String::new()),
            };
            let shown = value.map_or(String::new(), |v| format!("{v:.6}"));
            table.set(
                t.id,
                value,
                false,
                format!(
                    "{:<6} {state:<10} {shown:<12} {step:<7} {}",
                    t.id,
                    t.values_text()
                ),
            );
            self.redraw();
            return;
        }
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

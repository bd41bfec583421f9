//! Hyperparameter tuning as Cloud ML Engine's HyperTune ran it: trials of a trainer, each with
//! its parameters as flags, at most `maxParallelTrials` at once, the next ones chosen by the
//! search from what finished, reports read from each trial's metric file, the median stopping
//! rule when asked, and the job's `trainingOutput` as `jobs.get` showed it. `mlengine tune` and
//! the management API's tuning jobs both run this.
//!
//! A trial's path: `search` suggests values → `hparams::Session` marks its start for TensorBoard
//! → `trial::Launch` starts the trainer → its reports come back through its metric file → the
//! loop records the trial, ends its session, tells the observer, and rewrites
//! `hyperparameter_tuning.json` in the job-dir (so a killed job can be resumed).

pub mod config;
pub mod hparams;
pub mod output;
pub mod search;
pub mod space;
pub mod stopping;
pub mod trial;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

pub use config::Spec;
use output::{TrialRecord, TrialState};
use search::{Observation, Search};
use space::Value;
pub use trial::Trainer;

/// The job-dir file holding `{"trainingOutput": ...}`.
pub const OUTPUT_FILE: &str = "hyperparameter_tuning.json";
/// The folder of the trials' logs and metric files, beside their job-dirs.
pub const TUNING_DIR: &str = "tuning";

/// How often running trials are checked for an exit and new reports.
const POLL: Duration = Duration::from_millis(200);

pub struct TuneConfig {
    pub spec: Spec,
    pub job_dir: PathBuf,
    pub seed: u64,
    pub trainer: Trainer,
    pub trainer_args: Vec<String>,
    /// An earlier job's job-dir whose trials inform this one (`resumePreviousJobId`).
    pub resume_from: Option<PathBuf>,
    /// The job's `trainingInput` as Cloud ML had it, for the trials' `TF_CONFIG`.
    pub training_input: serde_json::Value,
    /// Cores to share among parallel trials.
    pub cores: usize,
    /// The job's name, recorded in its output file: the trials found in the job-dir are resumed
    /// only when they carry it.
    pub study_id: Option<String>,
}

/// The name the job's trials carry. Two jobs given one job-dir (both queued before either ran):
/// the second, finding the first's trials, is refused rather than taking them as its own. A job
/// without a name keeps the name it resumes.
pub fn study_of(config: &TuneConfig) -> Result<Option<String>> {
    let found = output::read_study_id(&config.job_dir.join(OUTPUT_FILE))?;
    Ok(match (&config.study_id, found) {
        (Some(id), Some(found)) if found.as_deref() != Some(id.as_str()) => bail!(
            "job-dir {} holds the trials of {}, not of {id}: give this job a new job-dir \
             (resuming that job's trials from it, if wanted)",
            config.job_dir.display(),
            found.map_or("a job without a name".to_string(), |f| format!("job {f}")),
        ),
        (Some(id), _) => Some(id.clone()),
        (None, found) => found.flatten(),
    })
}

/// What watches a tuning job.
pub trait Observer {
    fn trial_started(&mut self, _trial: &TrialRecord) {}
    fn trial_ended(&mut self, _trial: &TrialRecord, _finished: usize, _total: usize) {}
}

struct Running {
    record: TrialRecord,
    child: Child,
    point: Vec<f64>,
    /// The trial in TensorBoard's HParams dashboard.
    session: hparams::Session,
}

/// Runs the job; the result is its `trainingOutput`. A job whose failed trials exceed
/// `maxFailedTrials` (or, when that is 0, whose every trial failed) is an error naming the last
/// failure; the output file is written either way.
/// `mlengine train` reports its evaluation's metrics by name: a tag that is none of them (Cloud
/// ML Engine's default tag among them) would fail every trial after its training. Checked by
/// the command before anything is printed or written.
pub fn check_metric_tag(config: &TuneConfig) -> Result<()> {
    if let Trainer::Mlengine(_) = config.trainer {
        let names = crate::trainer::observe::metric_names();
        if !names.contains(&config.spec.metric_tag) {
            bail!(
                "hyperparameterMetricTag {:?} is not a metric that mlengine train reports; name \
                 one of: {}",
                config.spec.metric_tag,
                names.join(", ")
            );
        }
    }
    Ok(())
}

pub fn run(
    config: &TuneConfig,
    cancel: &CancellationToken,
    observer: &mut dyn Observer,
) -> Result<output::TrainingOutput> {
    let spec = &config.spec;
    let job_dir = &config.job_dir;
    let tuning_dir = job_dir.join(TUNING_DIR);
    std::fs::create_dir_all(&tuning_dir)
        .with_context(|| format!("cannot create {}", tuning_dir.display()))?;
    let stopped = trial::stop_leftovers(&tuning_dir);
    if stopped > 0 {
        tracing::warn!(
            "stopped {stopped} process(es) that an earlier run of this job left running (its \
             tuner was killed outright; its trials' children outlived them)"
        );
    }
    let name = job_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    hparams::write_experiment(job_dir, &name, spec)?;
    let search = Search::new(spec.algorithm, &spec.params, config.seed);
    let threads = (config.cores / spec.max_parallel_trials as usize).max(1);

    // An earlier job's trials (`--resume-from`), and this job's own when it is run again after
    // it stopped: finished trials are history, trials that were running are run again. Only this
    // job's own finished trials count against its maxTrials.
    let mut history: Vec<TrialRecord> = Vec::new();
    // Trials to run again, in their order: this job's own keep their id (their job-dir holds
    // their checkpoints and their metric file), an earlier job's take a new one.
    let mut rerun: std::collections::VecDeque<(Option<u32>, Vec<Value>)> = Default::default();
    let mut launched = 0u32;
    let mut failed = 0u32;
    let study_id = study_of(config)?;
    for (dir, own) in [
        (config.resume_from.as_deref(), false),
        (Some(job_dir.as_path()), true),
    ] {
        let Some(dir) = dir else { continue };
        for t in output::read_trials(&dir.join(OUTPUT_FILE), spec)? {
            if history.iter().any(|h| h.id == t.id) {
                continue;
            }
            match t.state {
                TrialState::Running => rerun.push_back((
                    own.then_some(t.id),
                    t.values.iter().map(|(_, v)| v.clone()).collect(),
                )),
                state => {
                    if own {
                        launched += 1;
                        failed += u32::from(state == TrialState::Failed);
                    }
                    history.push(t);
                }
            }
        }
    }
    let mut next_id = history
        .iter()
        .map(|t| t.id)
        .chain(rerun.iter().filter_map(|(id, _)| *id))
        .max()
        .unwrap_or(0)
        + 1;
    let mut trials: Vec<TrialRecord> = history.clone();
    let mut running: Vec<Running> = Vec::new();
    let total = spec.max_trials as usize;
    let observation = |t: &TrialRecord| -> Option<Observation> {
        let (_, value) = t.final_metric?;
        let values: Vec<Value> = t.values.iter().map(|(_, v)| v.clone()).collect();
        Some(Observation {
            point: search.point_of(&values),
            value: match spec.goal {
                config::Goal::Maximize => value,
                config::Goal::Minimize => -value,
            },
        })
    };
    let save = |trials: &[TrialRecord], running: &[Running]| -> Result<()> {
        let mut all: Vec<TrialRecord> = trials.to_vec();
        all.extend(running.iter().map(|r| r.record.clone()));
        output::write(&job_dir.join(OUTPUT_FILE), spec, &all, study_id.as_deref())
    };
    let mut exhausted = false;
    loop {
        if cancel.is_cancelled() {
            for r in &mut running {
                stop(&mut r.child);
            }
            save(&trials, &running)?;
            bail!("the tuning job was cancelled");
        }
        let too_many_failed = spec.max_failed_trials > 0 && failed >= spec.max_failed_trials;
        while !too_many_failed
            && !exhausted
            && running.len() < spec.max_parallel_trials as usize
            && launched < spec.max_trials
        {
            let taken: Vec<Vec<Value>> = trials
                .iter()
                .chain(running.iter().map(|r| &r.record))
                .map(|t| t.values.iter().map(|(_, v)| v.clone()).collect())
                .collect();
            let (own_id, values) = match rerun.pop_front() {
                Some(again) => again,
                None => {
                    let done: Vec<Observation> = trials.iter().filter_map(observation).collect();
                    let points: Vec<Vec<f64>> = running.iter().map(|r| r.point.clone()).collect();
                    let n = trials.len() + running.len();
                    match search.suggest(n, &done, &points, &taken) {
                        Some(v) => (None, v),
                        None => {
                            exhausted = true;
                            break;
                        }
                    }
                }
            };
            let id = own_id.unwrap_or_else(|| {
                next_id += 1;
                next_id - 1
            });
            let named: Vec<(String, Value)> = spec
                .params
                .iter()
                .map(|p| p.name.clone())
                .zip(values.iter().cloned())
                .collect();
            let launch = trial::Launch {
                trainer: &config.trainer,
                trainer_args: &config.trainer_args,
                job_dir,
                tuning_dir: &tuning_dir,
                id,
                params: &named,
                metric_tag: &spec.metric_tag,
                threads,
                training_input: &config.training_input,
            };
            let session = hparams::Session::start(&job_dir.join(id.to_string()), id, &named)?;
            let child = launch.spawn()?;
            launched += 1;
            let record = TrialRecord::started(id, named);
            observer.trial_started(&record);
            running.push(Running {
                point: search.point_of(&values),
                record,
                child,
                session,
            });
            save(&trials, &running)?;
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(POLL);
        // Early stopping: a running trial whose best report so far is below the median of the
        // completed trials at its step is stopped, and counts as completed with its last report.
        if spec.early_stopping {
            for r in &mut running {
                let reports = trial::finite(trial::read_reports(
                    &trial::metric_path(&tuning_dir, r.record.id),
                    &spec.metric_tag,
                ));
                if stopping::should_stop(spec, &reports, &trials) {
                    stop(&mut r.child);
                    r.record.stopped_early = true;
                }
            }
        }
        let mut i = 0;
        while i < running.len() {
            let Some(status) = running[i].child.try_wait()? else {
                i += 1;
                continue;
            };
            let mut r = running.remove(i);
            let mut reports = trial::read_reports(
                &trial::metric_path(&tuning_dir, r.record.id),
                &spec.metric_tag,
            );
            // A trainer that reports nothing through its metric file may still have written
            // the tag to its TensorBoard evaluation events, as Cloud ML Engine read them.
            if reports.is_empty() {
                let eval = job_dir
                    .join(r.record.id.to_string())
                    .join(crate::trainer::EVAL_EVENTS);
                reports = crate::observability::tfevents::read_scalars(&eval, &spec.metric_tag)
                    .into_iter()
                    .map(|(step, value)| trial::Report { step, value })
                    .collect();
            }
            // A trial whose last report is no number diverged: an earlier value is not its result.
            let diverged = reports
                .last()
                .filter(|last| !last.value.is_finite())
                .map(|last| (last.step, last.value));
            let reports = trial::finite(reports);
            r.record.reports = reports.clone();
            r.record.end();
            let log = trial::log_path(&tuning_dir, r.record.id);
            match (r.record.stopped_early, status.success(), reports.last()) {
                _ if let Some((step, value)) = diverged => {
                    r.record.state = TrialState::Failed;
                    r.record.error = Some(format!(
                        "its last report of {} was {value} (step {step}): the trial diverged",
                        spec.metric_tag
                    ));
                }
                (true, _, Some(last)) | (false, true, Some(last)) => {
                    r.record.state = TrialState::Succeeded;
                    r.record.final_metric = Some((last.step, last.value));
                }
                (_, true, None) | (true, false, None) => {
                    r.record.state = TrialState::Failed;
                    r.record.error = Some(format!(
                        "reported no value for {} (last output: {})",
                        spec.metric_tag,
                        trial::last_lines(&log, 3)
                    ));
                }
                (false, false, _) => {
                    r.record.state = TrialState::Failed;
                    r.record.error = Some(format!(
                        "the trainer exited with {status}: {}",
                        trial::last_lines(&log, 3)
                    ));
                }
            }
            if r.record.state == TrialState::Failed {
                failed += 1;
            }
            r.session.end(r.record.state == TrialState::Succeeded)?;
            trials.push(r.record);
            let finished = trials.len() - history.len();
            if let Some(t) = trials.last() {
                observer.trial_ended(t, finished, total);
            }
            save(&trials, &running)?;
        }
    }
    let out = output::training_output(spec, &trials);
    let last_failure = || {
        trials
            .iter()
            .rev()
            .find_map(|t| t.error.as_ref().map(|e| format!("trial {}: {e}", t.id)))
            .unwrap_or_default()
    };
    if spec.max_failed_trials > 0 && failed >= spec.max_failed_trials {
        bail!(
            "{failed} trials failed, maxFailedTrials is {}; {}",
            spec.max_failed_trials,
            last_failure()
        );
    }
    if launched > 0 && failed == launched {
        bail!("every trial failed; {}", last_failure());
    }
    Ok(out)
}

/// SIGTERM, then SIGKILL if the trial does not exit.
/// Stops a trial: SIGTERM to its process group (the trainer and whatever it started), then
/// SIGKILL to what is left of the group after 5 s. The trainer is reaped only after the last
/// signal: until then its pid, and so its group id, cannot name another process.
fn stop(child: &mut Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    // SAFETY: kill(2) on the process group our own unreaped child leads (`Launch::spawn`).
    unsafe { libc::kill(-pid, libc::SIGTERM) };
    for _ in 0..50 {
        if exited(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: as above; the child is still unreaped.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.wait();
}

/// Whether our child `pid` has exited, leaving it unreaped (a zombie keeps its pid).
fn exited(pid: i32) -> bool {
    // SAFETY: waitid(2) with WNOWAIT on our own child writes only into `info`.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let id = libc::id_t::try_from(pid).unwrap_or_default();
        let r = libc::waitid(
            libc::P_PID,
            id,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r == 0 && info.si_pid() != 0
    }
}

/// The job-dir of a tuning job must be local: trials write their metric files beside it.
pub fn local_job_dir(job_dir: &str) -> Result<PathBuf> {
    if crate::storage::remote::is_remote(job_dir) {
        bail!(
            "--job-dir {job_dir}: tuning jobs need a local job-dir (each trial's metric file is \
             read from it); give a local folder"
        );
    }
    if job_dir.trim().is_empty() {
        bail!("--job-dir must name a folder");
    }
    Ok(Path::new(crate::storage::remote::local_path(job_dir)).to_path_buf())
}

//! `mlengine tune`: a hyperparameter tuning job on this machine, as Cloud ML Engine ran one from
//! `gcloud ml-engine jobs submit training --config hptuning_config.yaml ... -- <trainer args>`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// The tuning config: an `hptuning_config.yaml` (`trainingInput.hyperparameters`, or the
    /// `hyperparameters` spec alone), YAML or JSON
    #[arg(long, env = "MLENGINE_TUNE_CONFIG")]
    pub config: PathBuf,
    /// The job's folder: trial k trains in <job-dir>/k; the output is
    /// <job-dir>/hyperparameter_tuning.json
    #[arg(long)]
    pub job_dir: String,
    /// Seed of the search: the same seed suggests the same trials
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The program each trial runs (a path or a command on PATH), given every parameter as
    /// --name=value; default: `mlengine train`
    #[arg(long)]
    pub trainer: Option<String>,
    /// The job-dir of an earlier tuning job whose trials inform this one (resumePreviousJobId);
    /// trials it was still running are run again
    #[arg(long)]
    pub resume_from: Option<PathBuf>,
    /// Cores the parallel trials share (default: all of this machine's)
    #[arg(long)]
    pub cores: Option<usize>,
    /// The job's name, recorded with its trials: a job-dir holding trials under another name
    /// (or none) is refused rather than resumed as this job's. The management API gives each
    /// tuning job its resource name
    #[arg(long)]
    pub study_id: Option<String>,
    /// Arguments for the trainer, after `--`
    #[arg(last = true)]
    pub trainer_args: Vec<String>,
}

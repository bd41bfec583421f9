//! The management commands, as gcloud's `ml-engine` group: `models`, `versions`, `jobs` and
//! `operations`, against a server's management API.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Where the server is and who is calling.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The server's base URL (http:// is assumed without a scheme; https:// for --tls-cert).
    #[arg(
        long,
        env = "MLENGINE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,

    /// The project of the resources' names.
    #[arg(
        long,
        env = "MLENGINE_PROJECT",
        default_value = "mlengine",
        global = true
    )]
    pub project: String,

    /// A bearer token, when the server requires one (--auth-tokens-file).
    #[arg(long, env = "MLENGINE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,

    /// A CA certificate (PEM) to trust besides the public roots, for an https:// server whose
    /// certificate a private CA signed.
    #[arg(long, env = "MLENGINE_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ModelsCommand {
    /// Create a model.
    Create {
        name: String,
        /// Regions (accepted for compatibility; one machine serves them all).
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List the models.
    List,
    /// Show a model as YAML.
    Describe { name: String },
    /// Delete a model (it must have no versions).
    Delete { name: String },
}

#[derive(Debug, Clone, Args)]
pub struct VersionsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: VersionsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum VersionsCommand {
    /// Create a version from an exported model and wait until it serves.
    Create {
        name: String,
        #[arg(long)]
        model: String,
        /// A version folder with model.onnx, an export/Servo base (its latest version) or a
        /// job-dir; a local path or a bucket URI.
        #[arg(long)]
        origin: String,
        #[arg(long)]
        runtime_version: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Return the operation without waiting for it.
        #[arg(long = "async")]
        no_wait: bool,
    },
    /// List a model's versions.
    List {
        #[arg(long)]
        model: String,
    },
    /// Show a version as YAML.
    Describe {
        name: String,
        #[arg(long)]
        model: String,
    },
    /// Delete a version and wait until it is gone.
    Delete {
        name: String,
        #[arg(long)]
        model: String,
        #[arg(long = "async")]
        no_wait: bool,
    },
    /// Make a version its model's default.
    SetDefault {
        name: String,
        #[arg(long)]
        model: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: JobsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum JobsCommand {
    /// Submit a job.
    #[command(subcommand)]
    Submit(Box<SubmitCommand>),
    /// Show a job as YAML.
    Describe { job: String },
    /// List the jobs, newest first.
    List,
    /// Cancel a job.
    Cancel { job: String },
    /// Follow a job's log to its end; exits non-zero unless the job SUCCEEDED.
    StreamLogs { job: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum SubmitCommand {
    /// A training job: the census trainer with the arguments after `--`.
    Training {
        job: String,
        /// A YAML or JSON job (`trainingInput: ...`, e.g. hptuning_config.yaml); flags override.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        job_dir: Option<String>,
        #[arg(long)]
        scale_tier: Option<String>,
        /// Default: the config's, else us-central1.
        #[arg(long)]
        region: Option<String>,
        /// A user's Python trainer: its package (the server needs --allow-custom-code).
        #[arg(long, value_delimiter = ',')]
        packages: Vec<String>,
        #[arg(long)]
        module_name: Option<String>,
        /// Follow the job's log until it ends.
        #[arg(long)]
        stream_logs: bool,
        /// The trainer's arguments.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// A batch prediction job.
    Prediction {
        job: String,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        version: Option<String>,
        /// A model folder instead of a deployed model.
        #[arg(long)]
        model_dir: Option<String>,
        #[arg(long, default_value = "JSON")]
        data_format: String,
        #[arg(long, required = true, value_delimiter = ',')]
        input_paths: Vec<String>,
        #[arg(long)]
        output_path: String,
        #[arg(long, default_value = "us-central1")]
        region: String,
        #[arg(long)]
        batch_size: Option<u64>,
        #[arg(long)]
        max_worker_count: Option<u64>,
        #[arg(long)]
        stream_logs: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct OperationsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: OperationsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum OperationsCommand {
    /// Show an operation as YAML.
    Describe { operation: String },
    /// List the operations, newest first.
    List,
    /// Ask for an operation to be cancelled.
    Cancel { operation: String },
    /// Wait until an operation is done and show it as YAML; exits non-zero if it failed.
    Wait { operation: String },
}

#[cfg(test)]
mod tests {
    #[test]
    fn submit_takes_the_trainer_args_after_dashes() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "mlengine",
            "jobs",
            "submit",
            "training",
            "census_1",
            "--job-dir",
            "/tmp/j",
            "--",
            "--train-files",
            "a.csv",
            "--train-steps",
            "1000",
        ])
        .unwrap();
        let crate::cli::Command::Jobs(jobs) = cli.command else {
            panic!("not jobs");
        };
        let super::JobsCommand::Submit(submit) = jobs.command else {
            panic!("not submit");
        };
        let super::SubmitCommand::Training {
            job, args, job_dir, ..
        } = *submit
        else {
            panic!("not training");
        };
        assert_eq!(job, "census_1");
        assert_eq!(job_dir.as_deref(), Some("/tmp/j"));
        assert_eq!(args, ["--train-files", "a.csv", "--train-steps", "1000"]);
    }
}

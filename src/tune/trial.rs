//! One trial as a child process: the trainer with its user arguments, `--job-dir=<dir>/<id>`,
//! each parameter as `--name=value`, a thread budget, and the environment Cloud ML Engine gave a
//! trial (`TF_CONFIG` with `task.trial`, `CLOUD_ML_TRIAL_ID`, `CLOUD_ML_HP_METRIC_TAG` and a
//! metric file of its own). Its reports are read back from that file in `cloudml-hypertune`'s
//! format: one JSON object per line, the tag's value and `global_step` as strings.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};
use serde_json::{json, Value as Json};

use super::space::Value;

/// What runs each trial.
#[derive(Debug, Clone)]
pub enum Trainer {
    /// `mlengine train` of this binary.
    Mlengine(PathBuf),
    /// Any program (a path or a name on `PATH`) that takes the parameters as flags.
    Program(String),
}

/// A trial's files beside the job-dirs: its output and its metric file.
pub fn log_path(tuning_dir: &Path, id: u32) -> PathBuf {
    tuning_dir.join(format!("{id}.log"))
}

pub fn metric_path(tuning_dir: &Path, id: u32) -> PathBuf {
    tuning_dir.join(format!("{id}.metrics"))
}

/// The variable naming a trial's metric file (cloudml-hypertune's).
const METRIC_FILE_VARIABLE: &str = "CLOUD_ML_HP_METRIC_FILE";

/// Stops what an earlier tuner of this job left running, returning how many processes. A tuner
/// killed outright takes its trials with it (their parent-death signal) but not what they
/// started: a wrapper script's interpreter, a trainer's own workers. Each is known by the metric
/// file its environment names, which lies in this job's tuning folder; the caller holds the
/// job-dir's lock, so no live tuner owns them.
pub fn stop_leftovers(tuning_dir: &Path) -> usize {
    use std::os::unix::ffi::OsStrExt;
    let Ok(dir) = std::path::absolute(tuning_dir) else {
        return 0;
    };
    let needle = [
        METRIC_FILE_VARIABLE.as_bytes(),
        b"=",
        dir.as_os_str().as_bytes(),
        b"/",
    ]
    .concat();
    let me = std::process::id();
    let mut stopped = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Processes of other users, or gone meanwhile, cannot be read: not ours.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|v| v.starts_with(&needle)) {
            let Ok(pid) = libc::pid_t::try_from(pid) else {
                continue;
            };
            // SAFETY: kill has no memory effects; a process gone meanwhile is ESRCH.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                stopped += 1;
            }
        }
    }
    stopped
}

pub struct Launch<'a> {
    pub trainer: &'a Trainer,
    pub trainer_args: &'a [String],
    pub job_dir: &'a Path,
    pub tuning_dir: &'a Path,
    pub id: u32,
    pub params: &'a [(String, Value)],
    pub metric_tag: &'a str,
    pub threads: usize,
    /// The job's `trainingInput`, for `TF_CONFIG.job`.
    pub training_input: &'a Json,
}

/// The variables that set a trainer's thread pools (OpenMP, BLAS, rayon, TensorFlow).
const THREAD_VARIABLES: &[&str] = &[
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "RAYON_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
];

impl Launch<'_> {
    pub fn command(&self) -> Command {
        let trial_dir = self.job_dir.join(self.id.to_string());
        let mut cmd = match self.trainer {
            Trainer::Mlengine(exe) => {
                let mut c = Command::new(exe);
                c.arg("train");
                c
            }
            Trainer::Program(program) => Command::new(program),
        };
        cmd.args(self.trainer_args);
        cmd.arg(format!("--job-dir={}", trial_dir.display()));
        for (name, value) in self.params {
            cmd.arg(format!("--{name}={}", value.text()));
        }
        let own_threads = self
            .trainer_args
            .iter()
            .any(|a| a == "--num-threads" || a.starts_with("--num-threads="));
        if matches!(self.trainer, Trainer::Mlengine(_)) && !own_threads {
            cmd.arg(format!("--num-threads={}", self.threads));
        }
        for var in THREAD_VARIABLES {
            cmd.env(var, self.threads.to_string());
        }
        let trial = self.id.to_string();
        let tf_config = json!({
            "cluster": {"master": ["localhost"]},
            "task": {"type": "master", "index": 0, "trial": trial},
            "environment": "cloud",
            "job": self.training_input,
        });
        cmd.env("TF_CONFIG", tf_config.to_string())
            .env("CLOUD_ML_TRIAL_ID", &trial)
            .env("CLOUD_ML_HP_METRIC_TAG", self.metric_tag)
            .env(
                METRIC_FILE_VARIABLE,
                // Absolute: what `stop_leftovers` looks for, from any working directory.
                std::path::absolute(metric_path(self.tuning_dir, self.id))
                    .unwrap_or_else(|_| metric_path(self.tuning_dir, self.id)),
            );
        cmd
    }

    pub fn spawn(&self) -> Result<Child> {
        let log = log_path(self.tuning_dir, self.id);
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let _ = std::fs::remove_file(metric_path(self.tuning_dir, self.id));
        let mut cmd = self.command();
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // The trial is a process group of its own, so that stopping it reaches what its
        // trainer started (a wrapper script's interpreter, mpirun's ranks); and it dies with
        // the tuner.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        {
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        cmd.spawn().with_context(|| match self.trainer {
            Trainer::Program(p) => format!("cannot run the trainer {p}"),
            Trainer::Mlengine(p) => format!("cannot run {}", p.display()),
        })
    }
}

/// One report of a trial: the step and the tag's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    pub step: u64,
    pub value: f64,
}

/// Every report of `tag` in a metric file, in order. Lines that are not reports of the tag are
/// skipped (a trainer may report other tags in the same file).
pub fn read_reports(path: &Path, tag: &str) -> Vec<Report> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let obj: Json = serde_json::from_str(line).ok()?;
            let value = match obj.get(tag)? {
                Json::String(s) => s.trim().parse::<f64>().ok()?,
                Json::Number(n) => n.as_f64()?,
                _ => return None,
            };
            let step = match obj.get("global_step") {
                Some(Json::String(s)) => s.trim().parse::<f64>().ok().map_or(0, |x| x as u64),
                Some(Json::Number(n)) => n.as_f64().map_or(0, |x| x as u64),
                _ => 0,
            };
            Some(Report { step, value })
        })
        .collect()
}

/// The reports with a value to compare (a diverged trainer reports NaN).
pub fn finite(reports: Vec<Report>) -> Vec<Report> {
    reports
        .into_iter()
        .filter(|r| r.value.is_finite())
        .collect()
}

/// The last `n` lines of a trial's output, for its failure message.
pub fn last_lines(path: &Path, n: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 << 10)));
    let mut tail = Vec::new();
    let _ = f.read_to_end(&mut tail);
    let text = String::from_utf8_lossy(&tail);
    let mut lines: VecDeque<&str> = VecDeque::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        lines.push_back(line.trim_end());
        if lines.len() > n {
            lines.pop_front();
        }
    }
    lines.into_iter().collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cloudml_hypertune_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.metrics");
        // As cloudml-hypertune 0.1.0 writes them (sort_keys, values as strings).
        std::fs::write(
            &path,
            concat!(
                r#"{"checkpoint_path": "", "global_step": "100", "accuracy": "0.81", "timestamp": 1525851440.1, "trial": "1"}"#,
                "\n",
                r#"{"checkpoint_path": "", "global_step": "200", "loss": "0.4", "timestamp": 1525851441.1, "trial": "1"}"#,
                "\nnot json\n",
                r#"{"checkpoint_path": "", "global_step": "300", "accuracy": "0.85", "timestamp": 1525851442.1, "trial": "1"}"#,
                "\n"
            ),
        )
        .unwrap();
        let reports = read_reports(&path, "accuracy");
        assert_eq!(
            reports,
            vec![
                Report {
                    step: 100,
                    value: 0.81
                },
                Report {
                    step: 300,
                    value: 0.85
                }
            ]
        );
        assert!(read_reports(&path, "auc").is_empty());
        assert!(read_reports(&dir.path().join("none"), "accuracy").is_empty());
    }

    #[test]
    fn a_trial_gets_its_flags_and_environment() {
        let dir = Path::new("/jobs/tune");
        let input = json!({"scaleTier": "BASIC"});
        let params = vec![
            ("first-layer-size".to_string(), Value::Integer(275)),
            ("scale-factor".to_string(), Value::Double(0.5)),
        ];
        let args = vec!["--train-files=a.csv".to_string()];
        let launch = Launch {
            trainer: &Trainer::Program("python3".into()),
            trainer_args: &args,
            job_dir: dir,
            tuning_dir: &dir.join("tuning"),
            id: 3,
            params: &params,
            metric_tag: "accuracy",
            threads: 2,
            training_input: &input,
        };
        let cmd = launch.command();
        let argv: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            argv,
            [
                "--train-files=a.csv",
                "--job-dir=/jobs/tune/3",
                "--first-layer-size=275",
                "--scale-factor=0.5"
            ]
        );
        let env: std::collections::HashMap<String, String> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string())))
            .collect();
        assert_eq!(env["CLOUD_ML_TRIAL_ID"], "3");
        assert_eq!(env["CLOUD_ML_HP_METRIC_TAG"], "accuracy");
        assert_eq!(
            env["CLOUD_ML_HP_METRIC_FILE"],
            "/jobs/tune/tuning/3.metrics"
        );
        assert_eq!(env["OMP_NUM_THREADS"], "2");
        let tf: Json = serde_json::from_str(&env["TF_CONFIG"]).unwrap();
        assert_eq!(tf["task"]["trial"], "3");
        assert_eq!(tf["job"]["scaleTier"], "BASIC");
    }
}

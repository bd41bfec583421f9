//! What a job runs: this binary's `train` or `batch-predict`, or a user's Python module in a
//! virtual environment made for the job from its packages; always in the background (SCHED_IDLE)
//! and tied to the server's life.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{strings, ControlPlane};

impl ControlPlane {
    /// The command line of a job: this binary's `train` or `batch-predict`, or a user's Python
    /// module in a virtual environment of its packages.
    pub(super) fn command(
        &self,
        project: &str,
        job: &Value,
        dir: &Path,
        log: &std::fs::File,
    ) -> std::result::Result<Command, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        if let Some(t) = job.get("trainingInput") {
            let workers = t.get("workerCount").and_then(|w| {
                w.as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .or_else(|| w.as_u64())
            });
            let tier = t
                .get("scaleTier")
                .and_then(Value::as_str)
                .unwrap_or("BASIC");
            if workers.unwrap_or(0) > 0 || !matches!(tier, "BASIC" | "BASIC_GPU" | "CUSTOM") {
                return Err(format!(
                    "scale tier {tier} with {} workers needs the distributed trainer, which runs \
                     on MPI; this build has no MPI",
                    workers.unwrap_or(0)
                ));
            }
            let mut args = strings(t.get("args"));
            let job_dir = t.get("jobDir").and_then(Value::as_str);
            let tuning = t.get("hyperparameters");
            if let (Some(dir), None) = (job_dir, tuning) {
                args.push(format!("--job-dir={dir}"));
            }
            let packages = strings(t.get("packageUris"));
            let python = if packages.is_empty() {
                None
            } else {
                let packages = self.fetch_packages(&packages, dir)?;
                Some(custom_environment(dir, &packages, log)?)
            };
            let module = t
                .get("pythonModule")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(spec) = tuning {
                // The tuner runs the trials: `mlengine tune`, with the user's trainer if any.
                let config = dir.join("hptuning_config.json");
                std::fs::write(
                    &config,
                    serde_json::json!({"hyperparameters": spec}).to_string(),
                )
                .map_err(|e| format!("cannot write the tuning config: {e}"))?;
                let mut cmd = background(&exe);
                cmd.arg("tune")
                    .arg("--config")
                    .arg(&config)
                    .arg("--job-dir")
                    .arg(job_dir.unwrap_or_default())
                    .arg("--study-id")
                    .arg(job["jobId"].as_str().unwrap_or_default());
                if let Some(previous) = spec.get("resumePreviousJobId").and_then(Value::as_str) {
                    cmd.arg("--resume-from").arg(
                        self.previous_tuning_dir(project, previous)
                            .map_err(|e| e.message)?,
                    );
                }
                if let Some(python) = &python {
                    cmd.arg("--trainer").arg(python);
                    args.splice(0..0, ["-m".to_string(), module.to_string()]);
                }
                cmd.arg("--").args(&args);
                return Ok(cmd);
            }
            if let Some(python) = python {
                let mut cmd = background(&python);
                cmd.arg("-m").arg(module).args(&args);
                return Ok(cmd);
            }
            let mut cmd = background(&exe);
            cmd.arg("train").args(&args);
            return Ok(cmd);
        }
        let p = job.get("predictionInput").cloned().unwrap_or_default();
        let model_dir = self.model_dir_of(project, &p).map_err(|e| e.message)?;
        let mut cmd = background(&exe);
        cmd.arg("batch-predict")
            .arg("--model-dir")
            .arg(model_dir)
            .arg("--input-paths")
            .arg(strings(p.get("inputPaths")).join(","))
            .arg("--output-path")
            .arg(
                p.get("outputPath")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            );
        for (field, flag) in [
            ("batchSize", "--batch-size"),
            ("maxWorkerCount", "--max-worker-count"),
        ] {
            if let Some(v) = p.get(field) {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                cmd.arg(flag).arg(v);
            }
        }
        Ok(cmd)
    }

    /// The job's packages as local files: bucket and https objects are downloaded into its
    /// folder, local ones (already checked against the allowed roots) are used where they are.
    fn fetch_packages(
        &self,
        packages: &[String],
        dir: &Path,
    ) -> std::result::Result<Vec<PathBuf>, String> {
        let folder = dir.join("packages");
        let mut local = Vec::new();
        for uri in packages {
            if !crate::storage::remote::is_remote(uri) {
                local.push(PathBuf::from(crate::storage::remote::local_path(uri)));
                continue;
            }
            let name = uri
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty() && *n != "." && *n != "..")
                .ok_or_else(|| format!("package {uri} names no file"))?;
            let bytes = self
                .runtime
                .block_on(async { crate::storage::remote::open(uri)?.read_all().await })
                .map_err(|e| {
                    format!(
                        "cannot download package {uri}: {}",
                        crate::status::one_line(&e)
                    )
                })?;
            std::fs::create_dir_all(&folder)
                .and_then(|()| std::fs::write(folder.join(name), &bytes))
                .map_err(|e| format!("cannot store package {uri}: {e}"))?;
            local.push(folder.join(name));
        }
        Ok(local)
    }
}

/// A command that only takes CPU the serving threads leave (SCHED_IDLE, and nice 19 for tools
/// that only show that), and that dies with the server: a job the server no longer watches
/// (killed, restarted) must not go on writing its job-dir. At nice 10 a training job took 35-40%
/// of 32 connections' throughput on 2 cores (loadtest/results/serving-during-training.md).
fn background(program: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    // SAFETY: prctl, setpriority and sched_setscheduler (`set_this_thread`) are plain system
    // calls, async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The server runs without transparent huge pages, a setting that survives exec.
            crate::huge_pages::on();
            if libc::setpriority(libc::PRIO_PROCESS, 0, 19) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            crate::runtime::scheduling::set_this_thread(crate::runtime::scheduling::Policy::Idle)
        });
    }
    cmd
}
/// A virtual environment with a user's packages installed, for a custom trainer.
fn custom_environment(
    dir: &Path,
    packages: &[PathBuf],
    log: &std::fs::File,
) -> std::result::Result<PathBuf, String> {
    // What venv and pip say goes to the job's log, where the user looks when an install fails.
    let to_log = || -> std::result::Result<(Stdio, Stdio), String> {
        let out = log
            .try_clone()
            .map_err(|e| format!("cannot write the job's log: {e}"))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot write the job's log: {e}"))?;
        Ok((Stdio::from(out), Stdio::from(err)))
    };
    let venv = dir.join("venv");
    let python3 = if Command::new("python3.11").arg("--version").output().is_ok() {
        "python3.11"
    } else {
        "python3"
    };
    let (out, err) = to_log()?;
    let made = Command::new(python3)
        .args(["-m", "venv"])
        .arg(&venv)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot create a Python environment: {e}"))?;
    if !made.success() {
        return Err("cannot create a Python environment (see the job's log)".into());
    }
    let python = venv.join("bin").join("python");
    let (out, err) = to_log()?;
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .args(packages)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot install the job's packages: {e}"))?;
    if !installed.success() {
        let names: Vec<String> = packages.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "pip could not install {} (see the job's log)",
            names.join(", ")
        ));
    }
    Ok(python)
}

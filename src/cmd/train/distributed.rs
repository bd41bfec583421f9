//! Where a `train` process stands in a distributed job: alone, one rank of an `mpirun` job
//! (with the `mpi` feature), or a task that Cloud ML Engine's `TF_CONFIG` names; and
//! `--distributed`, which starts `mpirun -np N` of this same command.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::trainer::{Alone, Collective};

/// The processes of this job as the launcher (OpenMPI's mpirun, or a Hydra launcher) set them.
fn launched_size() -> usize {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(1)
}

pub enum World {
    Alone(Alone),
    #[cfg(feature = "mpi")]
    Mpi(crate::trainer::mpi::Mpi),
}

impl World {
    /// Alone, unless a launcher started several processes; a build without MPI refuses then,
    /// rather than train N copies that never meet.
    pub fn join() -> Result<World> {
        let size = launched_size();
        if size <= 1 {
            return Ok(World::Alone(Alone));
        }
        #[cfg(feature = "mpi")]
        {
            Ok(World::Mpi(crate::trainer::mpi::Mpi::init()?))
        }
        #[cfg(not(feature = "mpi"))]
        {
            bail!(
                "started as one of {size} MPI processes, but this mlengine was built without \
                 MPI: build it with `cargo build --release --features mpi` (README: distributed \
                 training)"
            )
        }
    }

    pub fn collective(&self) -> &dyn Collective {
        match self {
            World::Alone(a) => a,
            #[cfg(feature = "mpi")]
            World::Mpi(m) => m,
        }
    }

    /// A process of a distributed job that fails ends the job: the others would wait for it in
    /// the next exchange forever.
    pub fn fail(&self, error: &anyhow::Error) {
        #[cfg(feature = "mpi")]
        if let World::Mpi(m) = self {
            eprintln!(
                "error: rank {} of {}: {}",
                m.rank(),
                m.size(),
                super::super::one_line(error)
            );
            m.abort(1);
        }
        let _ = error;
    }
}

/// This task in Cloud ML Engine's `TF_CONFIG` (`{"task": {"type", "index", "trial"}, ...}`).
pub struct CloudTask {
    kind: String,
    index: u64,
    /// Whether the cluster has a chief or master; without one, TensorFlow's convention makes
    /// worker 0 the chief.
    has_chief: bool,
}

impl CloudTask {
    /// A task with no work in synchronous data-parallel training, and why: parameter servers
    /// and evaluators always; a worker that no MPI launcher started (it would train alone into
    /// the master's job-dir, both writing the same checkpoints).
    pub fn idle(&self) -> Option<String> {
        match self.kind.as_str() {
            "ps" | "evaluator" => Some(format!(
                "TF_CONFIG names this task a {}: synchronous all-reduce training has no parameter \
                 servers or separate evaluators, so there is nothing for it to do",
                self.kind
            )),
            "worker" if launched_size() <= 1 && self.has_chief => Some(
                "TF_CONFIG names this task a worker, but no MPI launcher started it: the master \
                 trains alone and this task does nothing (data-parallel training runs its \
                 processes under mpirun: README, distributed training)"
                    .to_string(),
            ),
            "worker" if launched_size() <= 1 && self.index != 0 => Some(format!(
                "TF_CONFIG names this task worker {}, but no MPI launcher started it: the \
                 cluster has no chief or master, so worker 0 trains alone as the chief and \
                 this task does nothing (data-parallel training runs its processes under \
                 mpirun: README, distributed training)",
                self.index
            )),
            _ => None,
        }
    }
}

pub fn cloud_task() -> Result<Option<CloudTask>> {
    let Ok(text) = std::env::var("TF_CONFIG") else {
        return Ok(None);
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    let config: Value =
        serde_json::from_str(&text).context("TF_CONFIG is not JSON (Cloud ML Engine's form)")?;
    let kind = config["task"]["type"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Some launchers write the index as a string ("1"): read as worker 0, it would train too.
    let index = match &config["task"]["index"] {
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        other => other.as_u64(),
    }
    .unwrap_or(0);
    let has_chief = ["chief", "master"].iter().any(|k| {
        config["cluster"]
            .get(k)
            .is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()))
    });
    Ok(Some(CloudTask {
        kind,
        index,
        has_chief,
    }))
}

/// `--distributed`: this command again under `mpirun -np N`, which forwards signals to the
/// ranks and ends them all when one fails. This process becomes mpirun (nothing is left to do
/// after it), so a SIGTERM or Ctrl-C meant for the job reaches mpirun, and through it the
/// ranks, which checkpoint and stop; a parent that waited instead would die of the signal and
/// leave the job running.
pub fn launch(workers: u32) -> Result<ExitCode> {
    if !cfg!(feature = "mpi") {
        bail!(
            "--distributed needs an mlengine built with MPI: `cargo build --release --features \
             mpi` (README: distributed training)"
        );
    }
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut args: Vec<String> = Vec::new();
    let mut skip_value = false;
    for a in std::env::args().skip(1) {
        if skip_value {
            skip_value = false;
            continue;
        }
        if a == "--distributed" || a.starts_with("--worker-count=") {
            continue;
        }
        if a == "--worker-count" {
            skip_value = true;
            continue;
        }
        args.push(a);
    }
    let mut mpirun = Command::new("mpirun");
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        mpirun.arg("--allow-run-as-root");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers as usize > cores {
        mpirun.arg("--oversubscribe");
    }
    mpirun
        .args(["-np", &workers.to_string()])
        .arg(exe)
        .args(&args)
        .env_remove("MLENGINE_DISTRIBUTED")
        .env_remove("MLENGINE_DISTRIBUTED_WORKER_COUNT");
    use std::os::unix::process::CommandExt;
    // Returns only when mpirun could not be started.
    let error = mpirun.exec();
    Err(anyhow::Error::new(error).context(
        "cannot start mpirun: install OpenMPI (apt-get install openmpi-bin) or run \
         `mpirun -np N mlengine train ...` yourself",
    ))
}

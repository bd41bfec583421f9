//! Distributed training over MPI (the `mpi` feature; scripts/test.sh runs these with it):
//! `mlengine train --distributed` and `mpirun -np 2 mlengine train` against one process with the
//! same flags, and a failing or killed rank ending the whole job instead of hanging it.
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// OpenMPI's environment for one test: consent to run as root (both variables), and a session
/// folder of the test's own (`mpirun`s started at the same moment race to create a shared
/// `/tmp/ompi.<host>.<uid>` and one of them fails with "File exists").
fn mpi_env(cmd: &mut Command, tmp: &Path) {
    let session = tmp.join("ompi");
    std::fs::create_dir_all(&session).unwrap();
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("TMPDIR", &session);
}

/// `mpirun` with oversubscription: a 2-core machine may run more ranks than cores.
fn mpirun(tmp: &Path) -> Command {
    let mut cmd = Command::new("mpirun");
    mpi_env(&mut cmd, tmp);
    cmd.arg("--oversubscribe");
    cmd
}

fn train_args(train: &Path, eval: &Path, job: &Path, steps: &str) -> Vec<String> {
    vec![
        "train".into(),
        format!("--train-files={}", train.display()),
        format!("--eval-files={}", eval.display()),
        format!("--job-dir={}", job.display()),
        format!("--train-steps={steps}"),
    ]
}

/// Every eval row's probability of the positive class, from `mlengine predict`.
fn probabilities(job: &Path, eval: &Path, tmp: &Path) -> Vec<f64> {
    let rows = mlengine::census::csv::read_local_files(&[eval]).unwrap();
    let instances = tmp.join("instances.json");
    if !instances.exists() {
        std::fs::write(
            &instances,
            mlengine::census::fixture::to_json_instances(&rows),
        )
        .unwrap();
    }
    let out = run(bin()
        .arg("predict")
        .arg("--model-dir")
        .arg(job)
        .arg("--json-instances")
        .arg(&instances));
    assert!(out.status.success(), "{}", stderr(&out));
    let p: Vec<f64> = stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["logistic"][0].as_f64().unwrap()
        })
        .collect();
    assert_eq!(p.len(), rows.len());
    p
}

fn largest_difference(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Waits for the job to end (common's bounded wait); a job that hangs is killed, then reported.
fn wait_exit(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(what, || matches!(child.try_wait(), Ok(Some(_))))
    }));
    if waited.is_err() {
        let _ = child.kill();
        panic!("{what}: the job hung");
    }
    child.wait().unwrap()
}

#[test]
fn two_processes_train_the_model_one_process_trains() {
    // The equality is measured on the census data (all of adult.test).
    let Some(census) = census_dir() else {
        eprintln!("skipped: ../shared/data/census is absent");
        return;
    };
    let (train, eval) = (census.join("adult.data"), census.join("adult.test"));
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let out = run(bin().args(train_args(&train, &eval, &one, "1000")));
    assert!(out.status.success(), "{}", stderr(&out));
    // mpirun -np 2 of the command itself.
    let two = tmp.path().join("two");
    let out = run(mpirun(tmp.path())
        .args(["-np", "2"])
        .arg(env!("CARGO_BIN_EXE_mlengine"))
        .args(train_args(&train, &eval, &two, "1000")));
    assert!(out.status.success(), "{}", stderr(&out));
    // Rank 0 alone printed the evaluation and the export, and wrote the job-dir.
    let said = stdout(&out);
    assert_eq!(
        said.matches("Saving dict for global step 1000").count(),
        1,
        "{said}"
    );
    assert_eq!(said.matches("Exported model to").count(), 1, "{said}");
    assert_eq!(exported_versions(&two).len(), 1);
    let p1 = probabilities(&one, &eval, tmp.path());
    let p2 = probabilities(&two, &eval, tmp.path());
    let worst = largest_difference(&p1, &p2);
    eprintln!(
        "1000 steps, {} rows: largest difference of a probability between 1 and 2 processes: {worst:e}",
        p1.len()
    );
    assert!(worst <= 1e-4, "{worst}");

    // --distributed starts mpirun itself; it resumes the 2-process job to step 1050. (Past
    // ~1100 steps the two drift apart the way any perturbation does: on the census data a
    // one-process run whose learning rate differs by 2e-6 differs by 0.05 at step 500.)
    let mut launch = bin();
    launch.args(train_args(&train, &eval, &two, "1050")).args([
        "--distributed",
        "--worker-count",
        "2",
    ]);
    mpi_env(&mut launch, tmp.path());
    let out = run(&mut launch);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Saving dict for global step 1050"));
    assert_eq!(exported_versions(&two).len(), 2);
    let out = run(bin().args(train_args(&train, &eval, &one, "1050")));
    assert!(out.status.success(), "{}", stderr(&out));
    let p1 = probabilities(&one, &eval, tmp.path());
    let p2 = probabilities(&two, &eval, tmp.path());
    let worst = largest_difference(&p1, &p2);
    eprintln!("after resuming to step 1050: {worst:e}");
    assert!(worst <= 1e-4, "{worst}");
}

#[test]
fn a_rank_that_fails_ends_the_job_with_its_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let job = tmp.path().join("job");
    let good = train_args(&train, &eval, &job, "100");
    let mut bad = good.clone();
    bad[1] = "--train-files=/nonexistent/adult.data".into();
    // Rank 1 cannot read its files; rank 0 would wait for it in the first exchange.
    let mut child = mpirun(tmp.path())
        .args(["-np", "1"])
        .arg(env!("CARGO_BIN_EXE_mlengine"))
        .args(&good)
        .arg(":")
        .args(["-np", "1"])
        .arg(env!("CARGO_BIN_EXE_mlengine"))
        .args(&bad)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, "a failing rank");
    let out = child.wait_with_output().unwrap();
    assert!(!status.success());
    let err = stderr(&out);
    assert!(
        err.contains("error: rank 1 of 2:") && err.contains("/nonexistent/adult.data"),
        "{err}"
    );
    assert!(exported_versions(&job).is_empty());
}

#[test]
fn a_killed_rank_ends_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let job = tmp.path().join("job");
    let mut child = mpirun(tmp.path())
        .args(["-np", "2"])
        .arg(env!("CARGO_BIN_EXE_mlengine"))
        .args(train_args(&train, &eval, &job, "100000000"))
        .args(["--save-checkpoints-steps", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Training is under way once rank 0 has checkpointed.
    wait_until("the first checkpoint", || {
        job.join("checkpoint.json").exists()
    });
    let ranks = children_of(child.id());
    assert_eq!(ranks.len(), 2, "{ranks:?}");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &ranks[1].to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_exit(&mut child, "a killed rank");
    let out = child.wait_with_output().unwrap();
    assert!(!status.success());
    let err = stderr(&out);
    assert!(
        err.contains("signal 9") || err.contains("Killed"),
        "mpirun did not say a rank was killed: {err}"
    );
}

/// The pids whose parent is `pid`, in order.
fn children_of(pid: u32) -> Vec<u32> {
    let mut kids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect();
    kids.sort();
    kids
}

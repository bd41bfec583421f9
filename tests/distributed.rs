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

/// `mpirun -np 1 mlengine A : -np 1 mlengine B`: two ranks with their own command lines.
fn two_ranks(tmp: &Path, rank0: &[String], rank1: &[String]) -> Command {
    let mut cmd = mpirun(tmp);
    cmd.args(["-np", "1"])
        .arg(env!("CARGO_BIN_EXE_mlengine"))
        .args(rank0)
        .arg(":")
        .args(["-np", "1"])
        .arg(env!("CARGO_BIN_EXE_mlengine"))
        .args(rank1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs the job to its end (bounded: a job that hangs fails the test) and returns its stderr.
fn failed_job(mut cmd: Command, what: &str) -> String {
    let mut child = cmd.spawn().unwrap();
    let status = wait_exit(&mut child, what);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!status.success(), "{err}");
    err
}

#[test]
fn ranks_that_read_different_data_stop_before_the_first_exchange() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    // The fixture's first 300 training rows: with --num-epochs rank 1 would take fewer steps
    // and leave rank 0 waiting for its exchanges.
    let part = tmp.path().join("part.data");
    let rows = mlengine::census::fixture::rows(400, 11);
    std::fs::write(
        &part,
        mlengine::census::fixture::to_uci_csv(&rows[..300], false),
    )
    .unwrap();
    let job = tmp.path().join("job");
    let args = |train: &Path| {
        let mut a = train_args(train, &eval, &job, "1");
        a[4] = "--num-epochs=3".into();
        a
    };
    let err = failed_job(
        two_ranks(tmp.path(), &args(&train), &args(&part)),
        "ranks with different data",
    );
    assert!(
        err.contains(
            "error: rank 1 of 2: the number of training rows (300) differs from rank 0's (400)"
        ),
        "{err}"
    );
    assert!(err.contains("the training data (digest "), "{err}");
    assert!(exported_versions(&job).is_empty());
}

#[test]
fn a_rank_without_the_checkpoint_stops_before_the_first_exchange() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    // Rank 0's job-dir holds step 20; rank 1's is its own, empty: it would start at step 0
    // and take 20 more exchanges than rank 0.
    let trained = tmp.path().join("trained");
    let out = run(bin().args(train_args(&train, &eval, &trained, "20")));
    assert!(out.status.success(), "{}", stderr(&out));
    let empty = tmp.path().join("empty");
    let err = failed_job(
        two_ranks(
            tmp.path(),
            &train_args(&train, &eval, &trained, "40"),
            &train_args(&train, &eval, &empty, "40"),
        ),
        "ranks resuming from different steps",
    );
    assert!(
        err.contains("error: rank 1 of 2:")
            && err.contains("the global step (0) differs from rank 0's (20)"),
        "{err}"
    );
    assert_eq!(exported_versions(&trained).len(), 1);
}

#[test]
fn a_batch_smaller_than_the_ranks_is_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let job = tmp.path().join("job");
    let mut cmd = mpirun(tmp.path());
    cmd.args(["-np", "3"])
        .arg(env!("CARGO_BIN_EXE_mlengine"))
        .args(train_args(&train, &eval, &job, "10"))
        .arg("--train-batch-size=2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let err = failed_job(cmd, "a batch smaller than the ranks");
    assert!(
        err.contains(
            "error: rank 0 of 3: --train-batch-size 2 is smaller than the 3 ranks; each rank \
             needs at least one row"
        ),
        "{err}"
    );
    assert!(!job.join("checkpoint.json").exists());
}

/// The pids of the processes whose command line names `needle`.
fn processes_naming(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

#[test]
fn sigterm_to_the_launcher_checkpoints_and_ends_every_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let job = tmp.path().join("job");
    let mut launch = bin();
    launch
        .args(train_args(&train, &eval, &job, "100000000"))
        .args(["--save-checkpoints-steps", "100"])
        .args(["--distributed", "--worker-count", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    mpi_env(&mut launch, tmp.path());
    let mut child = launch.spawn().unwrap();
    wait_until("the first checkpoint", || {
        job.join("checkpoint.json").exists()
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_exit(&mut child, "the launcher after SIGTERM");
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    let needle = job.to_str().unwrap();
    let left = processes_naming(needle);
    for pid in &left {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    assert!(left.is_empty(), "ranks left running: {left:?}; {err}");
    assert!(!status.success(), "{err}");
    // Rank 0 checkpointed the step the job stopped at, and said which.
    let line = err
        .lines()
        .find(|l| l.starts_with("training interrupted; step "))
        .unwrap_or_else(|| panic!("{err}"));
    let step: String = line["training interrupted; step ".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(job.join("checkpoint.json")).unwrap()).unwrap();
    assert_eq!(
        index["latest"],
        format!("model.ckpt-{step}.safetensors"),
        "{err}"
    );
}

//! `mlengine tune`: the census sample's `hptuning_config.yaml` over `mlengine train`, a Python
//! trainer reporting through the real `cloudml-hypertune` package, grid search covering its grid,
//! failing trials against maxFailedTrials, the median stopping rule on known curves, resuming a
//! job killed with SIGKILL, invalid configs refused before any trial starts, and the Katib
//! Experiment in deploy/ checked against the sample config and the trainer's output.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::{json, Value};

/// A Python trainer script run through the hypertune venv's interpreter.
fn python_trainer(tmp: &Path) -> (PathBuf, Vec<String>) {
    let python = python_env("hypertune", "tests/python/requirements-hypertune.txt");
    (trainer_script(tmp, &python, "hypertune_trainer.py"), vec![])
}

fn write_config(tmp: &Path, name: &str, text: &str) -> PathBuf {
    let path = tmp.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn ok(out: &Output) {
    assert!(out.status.success(), "tune failed: {}", stderr(out));
}

#[test]
fn the_census_sample_tunes_mlengine_train() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let config = root().join("models/census/hptuning_config.yaml");
    let job = tmp.path().join("job");
    let out = run(tune(&config, &job, &["--seed", "1", "--"])
        .arg(format!("--train-files={}", train.display()))
        .arg(format!("--eval-files={}", eval.display()))
        .arg("--train-steps=1000"));
    ok(&out);
    // `jobs describe` as YAML on stdout, the same as the output file.
    let described: Value = serde_yaml_ng::from_str(&stdout(&out)).unwrap();
    let output = output_of(&job);
    assert_eq!(described, output);
    let t = &output["trainingOutput"];
    assert_eq!(t["completedTrialCount"], "4");
    assert_eq!(t["isHyperparameterTuningJob"], true);
    assert_eq!(t["hyperparameterMetricTag"], "accuracy");
    let trials = t["trials"].as_array().unwrap();
    let mut ids: Vec<&str> = trials
        .iter()
        .map(|t| t["trialId"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2", "3", "4"]);
    let objective = |t: &Value| t["finalMetric"]["objectiveValue"].as_f64().unwrap();
    assert!(
        trials
            .windows(2)
            .all(|w| objective(&w[0]) >= objective(&w[1])),
        "best first"
    );
    for trial in trials {
        assert_eq!(trial["state"], "SUCCEEDED", "{trial}");
        assert_eq!(trial["finalMetric"]["trainingStep"], "1000", "{trial}");
        let h = &trial["hyperparameters"];
        let size: i64 = h["first-layer-size"].as_str().unwrap().parse().unwrap();
        let layers: i64 = h["num-layers"].as_str().unwrap().parse().unwrap();
        let scale: f64 = h["scale-factor"].as_str().unwrap().parse().unwrap();
        assert!(
            (50..=500).contains(&size) && (1..=15).contains(&layers),
            "{h}"
        );
        assert!((0.1..=1.0).contains(&scale), "{h}");
        // The trial trained and exported in its own job-dir, and its reported accuracy is the
        // evaluation's.
        let dir = job.join(trial["trialId"].as_str().unwrap());
        assert_eq!(exported_versions(&dir).len(), 1, "{}", dir.display());
        let metrics: Value =
            serde_json::from_slice(&std::fs::read(dir.join("eval_metrics.json")).unwrap()).unwrap();
        assert!((metrics["accuracy"].as_f64().unwrap() - objective(trial)).abs() < 1e-9);
    }
    // The first trial is the centre of the space, as Vizier's default starts.
    let first = trials.iter().find(|t| t["trialId"] == "1").unwrap();
    assert_eq!(first["hyperparameters"]["first-layer-size"], "275");
    assert_eq!(first["hyperparameters"]["num-layers"], "8");
    // The metric file is in cloudml-hypertune's format.
    let report = std::fs::read_to_string(job.join("tuning/1.metrics")).unwrap();
    let last: Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    assert_eq!(last["global_step"], "1000");
    assert_eq!(last["trial"], "1");
    assert!(last["accuracy"].as_str().unwrap().parse::<f64>().is_ok());
    // A line per trial as it ended.
    let err = stderr(&out);
    assert_eq!(err.matches("Trial ").count(), 4, "{err}");
}

const QUADRATIC: &str = "hyperparameters:
  goal: maximize
  hyperparameterMetricTag: objective
  maxTrials: 6
  maxParallelTrials: 2
  params:
    - {parameterName: x, type: double, minValue: 0, maxValue: 1}
    - {parameterName: n, type: integer, minValue: 1, maxValue: 8}
    - {parameterName: act, type: categorical, categoricalValues: [relu, tanh]}
";

fn quadratic(h: &Value) -> f64 {
    let x: f64 = h["x"].as_str().unwrap().parse().unwrap();
    let n: f64 = h["n"].as_str().unwrap().parse().unwrap();
    let tanh = if h["act"] == "tanh" { 0.1 } else { 0.0 };
    -(x - 0.3).powi(2) - (n - 4.0).powi(2) / 100.0 + tanh
}

#[test]
fn a_python_trainer_reporting_through_cloudml_hypertune() {
    let tmp = tempfile::tempdir().unwrap();
    let (trainer, _) = python_trainer(tmp.path());
    let config = write_config(tmp.path(), "config.yaml", QUADRATIC);
    let run_job = |name: &str| {
        let job = tmp.path().join(name);
        let out = run(&mut tune(
            &config,
            &job,
            &[
                "--seed",
                "5",
                "--cores",
                "4",
                "--trainer",
                trainer.to_str().unwrap(),
                "--",
                "--mode=quadratic",
            ],
        ));
        ok(&out);
        job
    };
    let job = run_job("a");
    let trials = trials(&job);
    assert_eq!(trials.len(), 6);
    for t in &trials {
        let id = t["trialId"].as_str().unwrap();
        // The objective is the one the trainer computed from its flags and reported.
        let v = t["finalMetric"]["objectiveValue"].as_f64().unwrap();
        assert!((v - quadratic(&t["hyperparameters"])).abs() < 1e-9, "{t}");
        assert_eq!(t["finalMetric"]["trainingStep"], "100");
        // What the trainer got: its flags, job-dir and the trial's environment.
        let seen: Value =
            serde_json::from_slice(&std::fs::read(job.join(id).join("trial.json")).unwrap())
                .unwrap();
        let argv: Vec<&str> = seen["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(argv[0], "--mode=quadratic");
        assert_eq!(argv[1], format!("--job-dir={}", job.join(id).display()));
        let n = t["hyperparameters"]["n"].as_str().unwrap();
        assert!(!n.contains('.'), "integers are integers: {n}");
        assert!(argv.contains(&format!("--n={n}").as_str()), "{argv:?}");
        let env = &seen["env"];
        assert_eq!(env["CLOUD_ML_TRIAL_ID"], id);
        assert_eq!(env["CLOUD_ML_HP_METRIC_TAG"], "objective");
        assert_eq!(
            env["OMP_NUM_THREADS"], "2",
            "4 cores shared by 2 parallel trials"
        );
        let tf: Value = serde_json::from_str(env["TF_CONFIG"].as_str().unwrap()).unwrap();
        assert_eq!(tf["task"]["trial"], id);
    }
    // The same seed suggests the same trials.
    let again = trials_by_id(&run_job("b"));
    let first = trials_by_id(&job);
    assert_eq!(first, again);
}

fn trials_by_id(job: &Path) -> Vec<(String, Value)> {
    let mut t: Vec<(String, Value)> = trials(job)
        .iter()
        .map(|t| {
            (
                t["trialId"].as_str().unwrap().to_string(),
                t["hyperparameters"].clone(),
            )
        })
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

#[test]
fn grid_search_covers_its_grid_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (trainer, _) = python_trainer(tmp.path());
    let config = write_config(
        tmp.path(),
        "grid.yaml",
        "hyperparameters:
  hyperparameterMetricTag: objective
  algorithm: GRID_SEARCH
  maxTrials: 10
  maxParallelTrials: 2
  params:
    - {parameterName: n, type: INTEGER, minValue: 1, maxValue: 3}
    - {parameterName: act, type: CATEGORICAL, categoricalValues: [relu, tanh]}
",
    );
    let job = tmp.path().join("job");
    ok(&run(&mut tune(
        &config,
        &job,
        &[
            "--trainer",
            trainer.to_str().unwrap(),
            "--",
            "--mode=quadratic",
        ],
    )));
    let mut seen: Vec<String> = trials(&job)
        .iter()
        .map(|t| {
            format!(
                "{}-{}",
                t["hyperparameters"]["n"], t["hyperparameters"]["act"]
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "\"1\"-\"relu\"",
            "\"1\"-\"tanh\"",
            "\"2\"-\"relu\"",
            "\"2\"-\"tanh\"",
            "\"3\"-\"relu\"",
            "\"3\"-\"tanh\""
        ]
    );
}

#[test]
fn failed_trials_beyond_max_failed_trials_fail_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let (trainer, _) = python_trainer(tmp.path());
    let config = write_config(
        tmp.path(),
        "fail.yaml",
        "hyperparameters:
  hyperparameterMetricTag: objective
  algorithm: GRID_SEARCH
  maxTrials: 6
  maxFailedTrials: 2
  params:
    - {parameterName: n, type: INTEGER, minValue: 1, maxValue: 6}
",
    );
    let job = tmp.path().join("job");
    let out = run(&mut tune(
        &config,
        &job,
        &["--trainer", trainer.to_str().unwrap(), "--", "--mode=fail"],
    ));
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.lines().last().unwrap();
    assert!(
        last.contains("2 trials failed, maxFailedTrials is 2"),
        "{err}"
    );
    assert!(last.contains("odd sizes are not supported"), "{err}");
    // n = 1 and 3 failed with their reason; n = 2 succeeded; nothing ran after the second failure.
    let trials = trials(&job);
    assert_eq!(trials.len(), 3, "{trials:?}");
    let state = |n: &str| {
        trials
            .iter()
            .find(|t| t["hyperparameters"]["n"] == n)
            .map(|t| t["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state("1").as_deref(), Some("FAILED"));
    assert_eq!(state("2").as_deref(), Some("SUCCEEDED"));
    assert_eq!(state("3").as_deref(), Some("FAILED"));
    assert!(
        err.contains("Trial 1 (n=1) FAILED: the trainer exited with exit status: 3"),
        "{err}"
    );
}

/// A trial whose last report is NaN diverged: it fails, and an earlier, better report never
/// makes it the best.
#[test]
fn a_trial_whose_last_report_is_nan_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let (trainer, _) = python_trainer(tmp.path());
    let config = write_config(
        tmp.path(),
        "diverge.yaml",
        "hyperparameters:
  hyperparameterMetricTag: objective
  goal: MAXIMIZE
  algorithm: GRID_SEARCH
  maxTrials: 2
  maxFailedTrials: 2
  params:
    - {parameterName: n, type: INTEGER, minValue: 1, maxValue: 2}
",
    );
    let job = tmp.path().join("job");
    let out = run(&mut tune(
        &config,
        &job,
        &[
            "--trainer",
            trainer.to_str().unwrap(),
            "--",
            "--mode=diverge",
        ],
    ));
    ok(&out);
    let trials = trials(&job);
    assert_eq!(trials.len(), 2, "{trials:?}");
    assert_eq!(
        trials[0]["hyperparameters"]["n"], "2",
        "the best first: {trials:?}"
    );
    assert_eq!(trials[0]["state"], "SUCCEEDED");
    assert_eq!(trials[1]["state"], "FAILED", "{trials:?}");
    assert!(
        stderr(&out)
            .contains("its last report of objective was NaN (step 200): the trial diverged"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_median_rule_stops_a_trial_below_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let (python, _) = python_trainer(tmp.path());
    // Through a wrapper that is not replaced by the trainer: stopping a trial must reach the
    // trainer the wrapper started, not only the wrapper.
    let trainer = tmp.path().join("wrapper.sh");
    std::fs::write(
        &trainer,
        format!("#!/bin/sh\n{} \"$@\"\n", python.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&trainer, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = write_config(
        tmp.path(),
        "stop.yaml",
        "hyperparameters:
  hyperparameterMetricTag: objective
  algorithm: GRID_SEARCH
  enableTrialEarlyStopping: true
  maxTrials: 4
  params:
    - {parameterName: curve, type: CATEGORICAL, categoricalValues: [good1, good2, good3, bad]}
",
    );
    let job = tmp.path().join("job");
    ok(&run(&mut tune(
        &config,
        &job,
        &["--trainer", trainer.to_str().unwrap(), "--", "--mode=curve"],
    )));
    let trials = trials(&job);
    let bad = trials
        .iter()
        .find(|t| t["hyperparameters"]["curve"] == "bad")
        .unwrap();
    // Its 0.2 at step 100 is below the median (0.5) of the three finished curves at step 100.
    assert_eq!(bad["isTrialStoppedEarly"], true, "{bad}");
    assert_eq!(bad["state"], "SUCCEEDED");
    assert_eq!(bad["finalMetric"]["objectiveValue"], 0.2);
    assert_eq!(bad["finalMetric"]["trainingStep"], "100");
    let started: Value = serde_json::from_slice(
        &std::fs::read(
            job.join(bad["trialId"].as_str().unwrap())
                .join("trial.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let pid = started["pid"].as_u64().unwrap();
    // Gone, or a zombie that nobody has reaped yet.
    wait_until("the stopped trial's trainer is gone", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z'))
        })
    });
    for good in trials
        .iter()
        .filter(|t| t["hyperparameters"]["curve"] != "bad")
    {
        assert!(good.get("isTrialStoppedEarly").is_none(), "{good}");
        assert_eq!(good["finalMetric"]["trainingStep"], "500");
    }
    assert_eq!(
        output_of(&job)["trainingOutput"]["completedTrialCount"],
        "4"
    );
}

#[test]
fn a_killed_job_resumes_and_reruns_the_trial_it_was_running() {
    let tmp = tempfile::tempdir().unwrap();
    let (trainer, _) = python_trainer(tmp.path());
    let config = write_config(
        tmp.path(),
        "resume.yaml",
        "hyperparameters:
  hyperparameterMetricTag: objective
  algorithm: GRID_SEARCH
  maxTrials: 3
  params:
    - {parameterName: n, type: INTEGER, minValue: 1, maxValue: 3}
",
    );
    let first = tmp.path().join("first");
    // n = 2 hangs: the job is killed while it runs.
    let mut child = tune(
        &config,
        &first,
        &["--trainer", trainer.to_str().unwrap(), "--", "--mode=hang"],
    )
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    wait_until("trial 2 to be running", || {
        std::fs::read_to_string(first.join("hyperparameter_tuning.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|o| {
                o["trainingOutput"]["trials"].as_array().is_some_and(|l| {
                    l.iter()
                        .any(|t| t["trialId"] == "2" && t["state"] == "RUNNING")
                })
            })
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // Resumed (with a trainer that no longer hangs): trial 1 is history, n = 2 runs again.
    let second = tmp.path().join("second");
    let out = run(&mut tune(
        &config,
        &second,
        &[
            "--resume-from",
            first.to_str().unwrap(),
            "--trainer",
            trainer.to_str().unwrap(),
            "--",
            "--mode=quadratic",
        ],
    ));
    ok(&out);
    let trials = trials_by_id(&second);
    let n: Vec<(&str, &str)> = trials
        .iter()
        .map(|(id, h)| (id.as_str(), h["n"].as_str().unwrap()))
        .collect();
    assert_eq!(n, [("1", "1"), ("2", "2"), ("3", "3")]);
    assert_eq!(
        output_of(&second)["trainingOutput"]["completedTrialCount"],
        "3"
    );
}

#[test]
fn run_again_in_its_own_job_dir_each_interrupted_trial_keeps_its_id_and_values() {
    let tmp = tempfile::tempdir().unwrap();
    let (trainer, _) = python_trainer(tmp.path());
    let config = write_config(
        tmp.path(),
        "again.yaml",
        "hyperparameters:
  hyperparameterMetricTag: objective
  algorithm: GRID_SEARCH
  maxTrials: 3
  maxParallelTrials: 2
  params:
    - {parameterName: n, type: INTEGER, minValue: 1, maxValue: 3}
",
    );
    let job = tmp.path().join("job");
    let args = |mode: &str| {
        vec![
            "--trainer".to_string(),
            trainer.to_str().unwrap().to_string(),
            "--".to_string(),
            format!("--mode={mode}"),
        ]
    };
    let hang = args("hang-all");
    let hang: Vec<&str> = hang.iter().map(String::as_str).collect();
    let mut child = tune(&config, &job, &hang)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed with trials 1 and 2 running, each in its own folder.
    wait_until("trials 1 and 2 to have started", || {
        ["1", "2"]
            .iter()
            .all(|id| job.join(id).join("trial.json").is_file())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let quadratic = args("quadratic");
    let quadratic: Vec<&str> = quadratic.iter().map(String::as_str).collect();
    ok(&run(&mut tune(&config, &job, &quadratic)));
    // Each trial ran again under its own id, in its own folder, with its own values.
    let trials = trials_by_id(&job);
    let n: Vec<(&str, &str)> = trials
        .iter()
        .map(|(id, h)| (id.as_str(), h["n"].as_str().unwrap()))
        .collect();
    assert_eq!(n, [("1", "1"), ("2", "2"), ("3", "3")]);
    for (id, h) in &trials {
        let got: Value =
            serde_json::from_slice(&std::fs::read(job.join(id).join("trial.json")).unwrap())
                .unwrap();
        let flag = format!("--n={}", h["n"].as_str().unwrap());
        assert!(
            got["argv"].as_array().unwrap().iter().any(|a| a == &flag),
            "trial {id}: {got}"
        );
    }
}

/// Processes whose environment names a metric file in `job`'s tuning folder: its trials and
/// what they started.
fn trial_processes(job: &Path) -> Vec<u32> {
    let needle = format!("CLOUD_ML_HP_METRIC_FILE={}/", job.join("tuning").display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(e.path().join("environ")).ok()?;
            environ
                .split(|b| *b == 0)
                .any(|v| v.starts_with(needle.as_bytes()))
                .then_some(pid)
        })
        .collect()
}

#[test]
fn a_tuner_killed_outright_leaves_nothing_running_once_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let python = python_env("hypertune", "tests/python/requirements-hypertune.txt");
    // A wrapper that keeps running beside the trainer it starts (no exec): the trial's own
    // process dies with the tuner, the trainer does not.
    let wrapper = tmp.path().join("wrapper.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n{} {} \"$@\"\n",
            python.display(),
            root().join("tests/python/hypertune_trainer.py").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = write_config(
        tmp.path(),
        "leftovers.yaml",
        "hyperparameters:
  hyperparameterMetricTag: objective
  algorithm: GRID_SEARCH
  maxTrials: 2
  maxParallelTrials: 2
  params:
    - {parameterName: n, type: INTEGER, minValue: 1, maxValue: 2}
",
    );
    let job = std::path::absolute(tmp.path().join("job")).unwrap();
    let args = |mode: &str| {
        vec![
            "--trainer".to_string(),
            wrapper.to_str().unwrap().to_string(),
            "--".to_string(),
            format!("--mode={mode}"),
        ]
    };
    let hang = args("hang-all");
    let hang: Vec<&str> = hang.iter().map(String::as_str).collect();
    let mut child = tune(&config, &job, &hang)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("both trainers to have started", || {
        ["1", "2"]
            .iter()
            .all(|id| job.join(id).join("trial.json").is_file())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // The wrappers die with the tuner; the trainers they started outlive it.
    wait_until("only the trainers to be left", || {
        trial_processes(&job).len() == 2
    });
    let quadratic = args("quadratic");
    let quadratic: Vec<&str> = quadratic.iter().map(String::as_str).collect();
    let out = run(&mut tune(&config, &job, &quadratic));
    ok(&out);
    assert!(
        stderr(&out).contains("stopped 2 process(es) that an earlier run of this job left"),
        "{}",
        stderr(&out)
    );
    wait_until("no process of the job to be left", || {
        trial_processes(&job).is_empty()
    });
}

#[test]
fn an_invalid_config_is_one_line_before_any_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(
        tmp.path(),
        "bad.yaml",
        "trainingInput:
  hyperparameters:
    maxTrials: 4
    params:
      - {parameterName: lr, type: DOUBLE, minValue: 0, maxValue: 1, scaleType: UNIT_LOG_SCALE}
",
    );
    let job = tmp.path().join("job");
    let out = run(&mut tune(&config, &job, &["--", "--train-steps=10"]));
    assert_one_line_error(
        &out,
        "trainingInput.hyperparameters.params[0].minValue: 0: log scales need a strictly positive range",
    );
    assert!(!job.exists());

    // A study to resume that is not there is an error, not a fresh start.
    let good = write_config(
        tmp.path(),
        "good.yaml",
        "hyperparameters:
  maxTrials: 2
  params:
    - {parameterName: n, type: INTEGER, minValue: 1, maxValue: 3}
",
    );
    let missing = tmp.path().join("no-such-job");
    let out = run(&mut tune(
        &good,
        &job,
        &[
            "--resume-from",
            missing.to_str().unwrap(),
            "--",
            "--train-steps=10",
        ],
    ));
    assert_one_line_error(&out, "holds no hyperparameter_tuning.json");
    // resumePreviousJobId names a managed job; here the job-dir is what to give.
    let by_id = write_config(
        tmp.path(),
        "by_id.yaml",
        "hyperparameters:
  maxTrials: 2
  resumePreviousJobId: earlier_job
  params:
    - {parameterName: n, type: INTEGER, minValue: 1, maxValue: 3}
",
    );
    let out = run(&mut tune(&by_id, &job, &["--", "--train-steps=10"]));
    assert_one_line_error(&out, "give that job's job-dir as --resume-from");
    assert!(!job.exists());
    // mlengine train reports its metrics by name: Cloud ML Engine's default tag, which it never
    // reports, is refused before any trial rather than failing each one after its training.
    let no_tag = write_config(
        tmp.path(),
        "no_tag.yaml",
        "hyperparameters:
  goal: MAXIMIZE
  maxTrials: 2
  params:
    - {parameterName: first-layer-size, type: INTEGER, minValue: 4, maxValue: 8}
",
    );
    // A job's own job-dir is not an earlier job's; an empty job-dir is none.
    let own = tmp.path().join("own");
    std::fs::create_dir_all(&own).unwrap();
    let out = run(&mut tune(
        &good,
        &own,
        &[
            "--resume-from",
            own.to_str().unwrap(),
            "--",
            "--train-steps=10",
        ],
    ));
    assert_one_line_error(
        &out,
        "is this job's own --job-dir: run the job again without --resume-from",
    );
    let out = run(&mut tune(&good, Path::new(""), &["--", "--train-steps=10"]));
    assert_one_line_error(&out, "--job-dir must name a folder");
    // One tuner per job-dir: while another holds it, a second is refused.
    let tagged = write_config(
        tmp.path(),
        "tagged.yaml",
        "hyperparameters:
  hyperparameterMetricTag: auc
  maxTrials: 1
  params:
    - {parameterName: num-layers, type: INTEGER, minValue: 1, maxValue: 2}
",
    );
    let held = std::fs::File::create(own.join(".mlengine-job-dir.lock")).unwrap();
    held.try_lock().unwrap();
    let out = run(&mut tune(&tagged, &own, &["--", "--train-steps=10"]));
    assert_one_line_error(&out, "is in use by another run");
    drop(held);
    let out = run(&mut tune(&no_tag, &job, &["--", "--train-steps=10"]));
    assert_one_line_error(
        &out,
        "hyperparameterMetricTag \"training/hptuning/metric\" is not a metric that mlengine train reports; name one of: ",
    );
    assert!(!job.exists());
    // A named job (as the management API runs them) finding another job's trials in its
    // job-dir (two jobs queued with one jobDir) is refused rather than taking them as its own.
    let taken = tmp.path().join("taken");
    std::fs::create_dir_all(&taken).unwrap();
    let output = taken.join("hyperparameter_tuning.json");
    for (found, named) in [
        (json!("projects/p/jobs/first"), "job projects/p/jobs/first"),
        (Value::Null, "a job without a name"),
    ] {
        let doc = json!({"trainingOutput": {"trials": []}, "studyId": found});
        std::fs::write(&output, doc.to_string()).unwrap();
        let out = run(&mut tune(
            &tagged,
            &taken,
            &[
                "--study-id",
                "projects/p/jobs/second",
                "--",
                "--train-steps=10",
            ],
        ));
        assert_one_line_error(
            &out,
            &format!("holds the trials of {named}, not of projects/p/jobs/second"),
        );
        assert_eq!(std::fs::read_to_string(&output).unwrap(), doc.to_string());
    }
}

/// Katib's StdOut collector's default metric pattern (katib pkg/metricscollector/v1beta1/common),
/// applied with Python's `re`, which reads this pattern as Go's regexp does.
const KATIB_METRIC_PATTERN: &str = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)";

fn katib_metrics(text: &str, name: &str) -> Vec<f64> {
    let script = "import re, sys\n\
        pattern, name = sys.argv[1], sys.argv[2]\n\
        for line in sys.stdin:\n\
        \x20   for m in re.finditer(pattern, line):\n\
        \x20       if m.group(1) == name and m.group(2):\n\
        \x20           print(m.group(2))\n";
    let mut child = Command::new("python3")
        .args(["-c", script, KATIB_METRIC_PATTERN, name])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    stdout(&out).lines().map(|l| l.parse().unwrap()).collect()
}

#[test]
fn the_katib_experiment_runs_the_sample_search_and_reads_the_trainers_metric() {
    let experiment: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(
            root().join("deploy/kubernetes/jobs/katib-census-experiment.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let sample: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("models/census/hptuning_config.yaml")).unwrap(),
    )
    .unwrap();
    let h = &sample["trainingInput"]["hyperparameters"];
    let spec = &experiment["spec"];
    assert_eq!(experiment["apiVersion"], "kubeflow.org/v1beta1");
    assert_eq!(experiment["kind"], "Experiment");
    // The same objective and budget as the sample config.
    let tag = h["hyperparameterMetricTag"].as_str().unwrap();
    assert_eq!(spec["objective"]["objectiveMetricName"], tag);
    assert_eq!(
        spec["objective"]["type"].as_str().unwrap(),
        h["goal"].as_str().unwrap().to_lowercase()
    );
    assert_eq!(spec["maxTrialCount"], h["maxTrials"]);
    assert_eq!(spec["parallelTrialCount"], h["maxParallelTrials"]);
    let latest = spec["objective"]["metricStrategies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == tag && s["value"] == "latest");
    assert!(
        latest,
        "the trial's value must be its last evaluation, as HyperTune's"
    );
    // The same parameters, ranges and types.
    let params = h["params"].as_array().unwrap();
    let katib = spec["parameters"].as_array().unwrap();
    assert_eq!(katib.len(), params.len());
    for (p, k) in params.iter().zip(katib) {
        assert_eq!(k["name"], p["parameterName"]);
        let kind = match p["type"].as_str().unwrap().to_uppercase().as_str() {
            "INTEGER" => "int",
            "DOUBLE" => "double",
            other => panic!("the sample has a {other} parameter"),
        };
        assert_eq!(k["parameterType"], kind);
        for (field, bound) in [("minValue", "min"), ("maxValue", "max")] {
            let want = p[field].as_f64().unwrap();
            let got: f64 = k["feasibleSpace"][bound].as_str().unwrap().parse().unwrap();
            assert_eq!(got, want, "{}", k["name"]);
        }
    }
    // Every trial parameter is used in the template and refers to a parameter or the trial.
    let template = &spec["trialTemplate"];
    let container = &template["trialSpec"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], template["primaryContainerName"]);
    let command: Vec<&str> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let mut values = std::collections::HashMap::new();
    for tp in template["trialParameters"].as_array().unwrap() {
        let name = tp["name"].as_str().unwrap();
        let reference = tp["reference"].as_str().unwrap();
        let placeholder = format!("${{trialParameters.{name}}}");
        assert!(
            command.iter().any(|a| a.contains(&placeholder)),
            "{placeholder} is not used"
        );
        let value = match reference {
            "${trialSpec.Name}" => "census-hypertune-abc123".to_string(),
            _ => {
                let p = params
                    .iter()
                    .find(|p| p["parameterName"] == reference)
                    .unwrap_or_else(|| panic!("{reference} is not a parameter"));
                p["minValue"].to_string()
            }
        };
        values.insert(placeholder, value);
    }
    // The trial's command as Katib would run it (here on fixture data and a local job-dir, with
    // the parameters at their minimums): its output carries the objective in Katib's pattern.
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let (program, args) = command.split_first().unwrap();
    assert_eq!(*program, "mlengine");
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            let mut a = a.to_string();
            for (placeholder, value) in &values {
                a = a.replace(placeholder, value);
            }
            assert!(!a.contains("${"), "{a}");
            if let Some(rest) = a.strip_prefix("--train-files=") {
                assert!(rest.starts_with("s3://"));
                a = format!("--train-files={}", train.display());
            } else if a.starts_with("--eval-files=") {
                a = format!("--eval-files={}", eval.display());
            } else if let Some(rest) = a.strip_prefix("--job-dir=") {
                assert!(rest.ends_with("/census-hypertune-abc123"), "{rest}");
                a = format!("--job-dir={}", tmp.path().join("trial").display());
            } else if a.starts_with("--train-steps=") {
                a = "--train-steps=200".to_string();
            }
            a
        })
        .collect();
    let out = run(bin().args(&args));
    assert!(out.status.success(), "{}", stderr(&out));
    // Katib's collector reads stdout and stderr together.
    let text = format!("{}{}", stdout(&out), stderr(&out));
    let reported = katib_metrics(&text, tag);
    assert!(!reported.is_empty(), "no {tag}=... in {text}");
    let metrics: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("trial/eval_metrics.json")).unwrap())
            .unwrap();
    let last = *reported.last().unwrap();
    assert!(
        (last - metrics[tag].as_f64().unwrap()).abs() < 1e-4,
        "Katib would read {last}, the evaluation says {}",
        metrics[tag]
    );
}

/// On a terminal (here the pseudo-terminal of util-linux's `script`), a table of every trial is
/// redrawn in place as trials start and end, best first.
#[test]
fn on_a_terminal_the_trials_are_a_live_table() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let config = write_config(
        tmp.path(),
        "grid.yaml",
        "hyperparameters:
  goal: MAXIMIZE
  hyperparameterMetricTag: accuracy
  algorithm: GRID_SEARCH
  maxTrials: 3
  maxParallelTrials: 2
  params:
    - {parameterName: num-layers, type: INTEGER, minValue: 1, maxValue: 3}
",
    );
    let command = format!(
        "{} tune --config {} --job-dir {} -- --train-files={} --eval-files={} --train-steps=50",
        env!("CARGO_BIN_EXE_mlengine"),
        config.display(),
        tmp.path().join("job").display(),
        train.display(),
        eval.display()
    );
    let out = run(Command::new("script").args(["-qec", &command, "/dev/null"]));
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out).replace('\r', "");
    assert!(text.contains("TRIAL  STATE      accuracy"), "{text}");
    // Redrawn in place: the cursor goes back up over the table before each new one.
    assert!(text.contains("\x1b[J"), "{text}");
    // The last table: every trial ended, best first.
    let last = &text[text.rfind("TRIAL  STATE").unwrap()..];
    assert!(
        last.starts_with("TRIAL  STATE      accuracy     STEP    PARAMETERS   [3/3]"),
        "{last}"
    );
    let values: Vec<f64> = last
        .lines()
        .skip(1)
        .take(3)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f[1], "SUCCEEDED", "{l}");
            f[2].parse().unwrap()
        })
        .collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "{last}");
}

//! TensorBoard's event files, read back with TensorBoard's own reader (`EventAccumulator`, in
//! its own venv): a training run and its resumption against `eval_history.jsonl`, and a tuning
//! job's HParams experiment and sessions against its `trainingOutput`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::Value;

/// Every run under `logdir` as TensorBoard reads it (tests/python/tensorboard_read.py).
fn read_runs(logdir: &Path) -> Value {
    let python = python_env("tensorboard", "tests/python/requirements-tensorboard.txt");
    let out = run(std::process::Command::new(python)
        .arg(root().join("tests/python/tensorboard_read.py"))
        .arg(logdir));
    assert!(
        out.status.success(),
        "tensorboard_read.py: {}",
        stderr(&out)
    );
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn event_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("events.out.tfevents."))
        .collect();
    names.sort();
    names
}

fn steps(points: &Value) -> Vec<u64> {
    points
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_u64().unwrap())
        .collect()
}

/// Event files hold float32 values.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

#[test]
fn training_and_evaluation_curves_as_an_estimator_wrote_them_continuing_after_a_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let job = tmp.path().join("job");
    let train_to = |steps: &str| {
        let out = run(train_command(&train, &eval, &job)
            .args(["--train-steps", steps])
            .args(["--save-checkpoints-steps", "100"])
            .args(["--log-step-count-steps", "50"])
            .args(["--eval-delay-secs", "0", "--min-eval-frequency", "1"])
            .args(["--learning-rate", "0.04"]));
        assert!(out.status.success(), "{}", stderr(&out));
    };
    train_to("300");
    train_to("500");
    // One file per run in each folder, in the order they were written.
    assert_eq!(event_files(&job).len(), 2, "{:?}", event_files(&job));
    assert_eq!(event_files(&job.join("eval")).len(), 2);

    let runs = read_runs(&job);
    let names: BTreeSet<&str> = runs
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(names, BTreeSet::from([".", "eval"]), "{runs}");
    // Training: every --log-step-count-steps of both runs, on one curve.
    let train_run = &runs["."]["scalars"];
    let every_50: Vec<u64> = (1..=10).map(|i| i * 50).collect();
    for tag in ["loss", "learning_rate", "global_step/sec"] {
        assert_eq!(steps(&train_run[tag]), every_50, "{tag}: {train_run}");
    }
    for p in train_run["learning_rate"].as_array().unwrap() {
        assert!(close(p[1].as_f64().unwrap(), 0.04), "{p}");
    }
    for tag in ["loss", "global_step/sec"] {
        for p in train_run[tag].as_array().unwrap() {
            let v = p[1].as_f64().unwrap();
            assert!(v.is_finite() && v > 0.0, "{tag}: {p}");
        }
    }
    // Evaluation: every metric of every evaluation in eval_history.jsonl, at its global step.
    let history: Vec<Value> = std::fs::read_to_string(job.join("eval_history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let eval_steps: Vec<u64> = history
        .iter()
        .map(|h| h["global_step"].as_u64().unwrap())
        .collect();
    assert_eq!(eval_steps, [100, 200, 300, 400, 500]);
    let eval_run = &runs["eval"]["scalars"];
    let tags: BTreeSet<&str> = eval_run
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let want: BTreeSet<&str> = [
        "accuracy",
        "accuracy_baseline",
        "auc",
        "auc_precision_recall",
        "average_loss",
        "label/mean",
        "loss",
        "precision",
        "prediction/mean",
        "recall",
    ]
    .into();
    assert_eq!(tags, want);
    for tag in want {
        let points = eval_run[tag].as_array().unwrap();
        assert_eq!(steps(&eval_run[tag]), eval_steps, "{tag}");
        for (p, h) in points.iter().zip(&history) {
            let (got, want) = (p[1].as_f64().unwrap(), h[tag].as_f64().unwrap());
            assert!(close(got, want), "{tag} at {}: {got} against {want}", p[0]);
        }
    }
}

#[test]
fn a_tuning_job_is_an_hparams_experiment_with_a_session_per_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let config = tmp.path().join("hptuning_config.yaml");
    std::fs::write(
        &config,
        "trainingInput:
  hyperparameters:
    goal: MAXIMIZE
    hyperparameterMetricTag: auc
    algorithm: GRID_SEARCH
    maxTrials: 2
    maxParallelTrials: 2
    params:
      - {parameterName: num-layers, type: INTEGER, minValue: 1, maxValue: 2}
      - {parameterName: optimizer, type: CATEGORICAL, categoricalValues: [adagrad]}
",
    )
    .unwrap();
    let job = tmp.path().join("tuning");
    let out = run(tune(&config, &job, &["--"])
        .arg(format!("--train-files={}", train.display()))
        .arg(format!("--eval-files={}", eval.display()))
        .arg("--train-steps=100"));
    assert!(out.status.success(), "{}", stderr(&out));
    let trials = trials(&job);
    assert_eq!(trials.len(), 2);

    let runs = read_runs(&job);
    // The experiment, in the job-dir's own run: the parameters with their domains, and the
    // tuning metric first among the evaluation's metrics.
    let experiment = &runs["."]["hparams"]["_hparams_/experiment"]["experiment"];
    let infos = experiment["hparamInfos"].as_array().unwrap();
    assert_eq!(infos[0]["name"], "num-layers");
    assert_eq!(infos[0]["type"], "DATA_TYPE_FLOAT64");
    assert_eq!(infos[0]["domainInterval"]["minValue"], 1.0);
    assert_eq!(infos[0]["domainInterval"]["maxValue"], 2.0);
    assert_eq!(infos[1]["name"], "optimizer");
    assert_eq!(infos[1]["type"], "DATA_TYPE_STRING");
    assert_eq!(infos[1]["domainDiscrete"], serde_json::json!(["adagrad"]));
    let metric = &experiment["metricInfos"][0];
    assert_eq!(metric["name"]["group"], "eval");
    assert_eq!(metric["name"]["tag"], "auc");
    assert_eq!(metric["datasetType"], "DATASET_VALIDATION");
    // Each trial: a session with its values and its end, and the metric's curve in its eval run
    // ending at the value the tuner reported.
    for t in trials {
        let id = t["trialId"].as_str().unwrap();
        let session = &runs[id]["hparams"];
        let start = &session["_hparams_/session_start_info"]["sessionStartInfo"];
        let layers: f64 = t["hyperparameters"]["num-layers"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(start["hparams"]["num-layers"], layers, "{session}");
        assert_eq!(start["hparams"]["optimizer"], "adagrad");
        assert_eq!(start["groupName"], id);
        let end = &session["_hparams_/session_end_info"]["sessionEndInfo"];
        assert_eq!(end["status"], "STATUS_SUCCESS", "{session}");
        let auc = runs[format!("{id}/eval")]["scalars"]["auc"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()[1]
            .as_f64()
            .unwrap();
        let reported = t["finalMetric"]["objectiveValue"].as_f64().unwrap();
        assert!(close(auc, reported), "trial {id}: {auc} against {reported}");
    }
}

/// A trainer that reports only through TensorBoard events (written by TensorBoard's own writer)
/// is tuned all the same: its metric is the tag's last value in its evaluation events.
#[test]
fn a_trial_reporting_only_through_tensorboard_events_is_read_from_them() {
    let tmp = tempfile::tempdir().unwrap();
    let python = python_env("tensorboard", "tests/python/requirements-tensorboard.txt");
    let trainer = trainer_script(tmp.path(), &python, "tensorboard_trainer.py");
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        "hyperparameters:
  goal: MAXIMIZE
  hyperparameterMetricTag: objective
  algorithm: GRID_SEARCH
  maxTrials: 3
  maxParallelTrials: 3
  params:
    - {parameterName: x, type: DISCRETE, discreteValues: [0.1, 0.3, 0.5]}
",
    )
    .unwrap();
    let job = tmp.path().join("job");
    let out = run(tune(&config, &job, &[]).arg("--trainer").arg(&trainer));
    assert!(out.status.success(), "{}", stderr(&out));
    let trials = trials(&job);
    assert_eq!(trials.len(), 3);
    for t in &trials {
        assert_eq!(t["state"], "SUCCEEDED", "{t}");
        let x: f64 = t["hyperparameters"]["x"].as_str().unwrap().parse().unwrap();
        let want = -(x - 0.3) * (x - 0.3);
        let got = t["finalMetric"]["objectiveValue"].as_f64().unwrap();
        assert!(close(got, want), "x={x}: {got} against {want}");
        assert_eq!(t["finalMetric"]["trainingStep"], "20");
    }
    assert_eq!(trials[0]["hyperparameters"]["x"], "0.3");
}

/// A run killed after its event files got points past its last checkpoint leaves them behind;
/// the resumed run writes those steps again. Its files start with `SessionLog{START}` at its
/// first step, so TensorBoard's reader drops the orphans: every curve goes forward, once.
#[test]
fn a_resumed_run_s_session_start_drops_what_a_killed_run_left_past_its_checkpoint() {
    use mlengine::observability::tfevents::EventWriter;

    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let job = tmp.path().join("job");
    let train_to = |steps: &str| {
        let out = run(train_command(&train, &eval, &job)
            .args(["--train-steps", steps])
            .args(["--save-checkpoints-steps", "100"])
            .args(["--log-step-count-steps", "50"])
            .args(["--eval-delay-secs", "0", "--min-eval-frequency", "1"]));
        assert!(out.status.success(), "{}", stderr(&out));
    };
    train_to("300");
    // What the killed run (resumed from 300, killed at 400 before checkpointing it) flushed:
    // files named right after the first run's.
    let orphan = |folder: &Path, tag: &str, steps: &[u64]| {
        let scratch = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(scratch.path()).unwrap();
        w.session_start(301).unwrap();
        for step in steps {
            w.scalars(*step, &[(tag, 1e6)]).unwrap();
        }
        w.flush().unwrap();
        let after = format!("{}.killed", event_files(folder)[0]);
        std::fs::rename(w.path(), folder.join(after)).unwrap();
    };
    orphan(&job, "loss", &[350, 400]);
    orphan(&job.join("eval"), "accuracy", &[400]);
    // The resumed run's files sort after them (their names start with the second they open).
    let first: u64 = event_files(&job)[0]
        .split('.')
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    wait_until("the clock to pass the first run's second", || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            > first
    });
    train_to("500");
    assert_eq!(event_files(&job).len(), 3, "{:?}", event_files(&job));

    let runs = read_runs(&job);
    let every_50: Vec<u64> = (1..=10).map(|i| i * 50).collect();
    let loss = &runs["."]["scalars"]["loss"];
    assert_eq!(steps(loss), every_50, "{loss}");
    assert!(
        loss.as_array()
            .unwrap()
            .iter()
            .all(|p| p[1].as_f64().unwrap() < 1e5),
        "an orphaned point survived: {loss}"
    );
    let accuracy = &runs["eval"]["scalars"]["accuracy"];
    assert_eq!(steps(accuracy), [100, 200, 300, 400, 500], "{accuracy}");
    assert!(
        accuracy
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p[1].as_f64().unwrap() <= 1.0),
        "{accuracy}"
    );
}

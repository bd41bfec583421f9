//! `mlengine train` as a user runs it: exports, determinism, resume, and bad input.

mod common;

use common::*;

#[test]
fn train_exports_a_complete_version_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    let out = run(bin()
        .args(["train", "--train-steps", "25", "--train-files"])
        .arg(fixture_files(tmp.path()).0)
        .arg("--eval-files")
        .arg(tmp.path().join("adult.test"))
        .arg("--job-dir")
        .arg(&job));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Saving dict for global step 25: accuracy = "),
        "{text}"
    );
    assert!(text.contains("Exported model to "), "{text}");

    let versions = exported_versions(&job);
    assert_eq!(versions.len(), 1, "{versions:?}");
    let version = &versions[0];
    let name = version.file_name().unwrap().to_str().unwrap();
    assert!(
        name.chars().all(|c| c.is_ascii_digit()),
        "version dir {name}"
    );
    assert!(version.join("model.onnx").metadata().unwrap().len() > 10_000);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(version.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["signature"]["inputs"].as_array().unwrap().len(), 13);
    assert_eq!(meta["eval_metrics"]["global_step"], 25);
    assert!(meta["vocabularies"]["workclass"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "Private"));
    assert_eq!(meta["training"]["train_batch_size"], 40);

    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(job.join("eval_metrics.json")).unwrap()).unwrap();
    for key in [
        "accuracy",
        "accuracy_baseline",
        "auc",
        "auc_precision_recall",
        "average_loss",
        "loss",
        "precision",
        "recall",
        "label/mean",
        "prediction/mean",
        "global_step",
    ] {
        assert!(metrics.get(key).is_some(), "metrics lack {key}: {metrics}");
    }
    // The fixture's label depends on its features: 25 steps already beat the majority class.
    assert!(metrics["auc"].as_f64().unwrap() > 0.7, "{metrics}");

    // No temporary directory is left beside the version.
    let leftovers: Vec<_> = std::fs::read_dir(job.join("export/Servo"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn same_data_and_seed_give_a_byte_identical_model() {
    let tmp = tempfile::tempdir().unwrap();
    let a = train_fixture(
        &tmp.path().join("a"),
        tmp.path(),
        &["--num-epochs", "2", "--seed", "7"],
    );
    let b = train_fixture(
        &tmp.path().join("b"),
        tmp.path(),
        &["--num-epochs", "2", "--seed", "7"],
    );
    let c = train_fixture(
        &tmp.path().join("c"),
        tmp.path(),
        &["--num-epochs", "2", "--seed", "8"],
    );
    let bytes = |p: &std::path::Path| std::fs::read(p.join("model.onnx")).unwrap();
    assert_eq!(bytes(&a), bytes(&b), "same seed, different model.onnx");
    assert_ne!(bytes(&a), bytes(&c), "different seeds gave the same model");
}

#[test]
fn a_second_run_resumes_from_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let resumed = tmp.path().join("resumed");
    train_fixture(
        &resumed,
        tmp.path(),
        &["--train-steps", "17", "--save-checkpoints-steps", "5"],
    );
    let (train, eval, _) = fixture_files(tmp.path());
    let out = run(bin()
        .args([
            "train",
            "--train-steps",
            "40",
            "--save-checkpoints-steps",
            "5",
            "--train-files",
        ])
        .arg(&train)
        .arg("--eval-files")
        .arg(&eval)
        .arg("--job-dir")
        .arg(&resumed));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("resuming from the latest checkpoint"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("global step 40:"), "{}", stdout(&out));

    // Resuming at step 17 and going on to 40 gives exactly the model of one run to 40.
    let straight = train_fixture(
        &tmp.path().join("straight"),
        tmp.path(),
        &["--train-steps", "40"],
    );
    let last = exported_versions(&resumed).pop().unwrap();
    assert_eq!(
        std::fs::read(last.join("model.onnx")).unwrap(),
        std::fs::read(straight.join("model.onnx")).unwrap()
    );
    // Old checkpoints beyond --keep-checkpoint-max (5) are removed.
    let ckpts = std::fs::read_dir(&resumed)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("model.ckpt-")
        })
        .count();
    assert_eq!(ckpts, 5);

    // A checkpoint of another architecture is refused rather than silently mixed.
    let out = run(bin()
        .args([
            "train",
            "--train-steps",
            "50",
            "--num-layers",
            "2",
            "--train-files",
        ])
        .arg(&train)
        .arg("--eval-files")
        .arg(&eval)
        .arg("--job-dir")
        .arg(&resumed));
    assert_one_line_error(&out, "another job-dir");
}

#[test]
fn bad_input_is_one_line_and_leaves_no_export() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let malformed = tmp.path().join("bad.csv");
    let mut text = std::fs::read_to_string(&train).unwrap();
    text.push_str("41, Private, 1, Bachelors, thirteen, Divorced, Sales, Wife, White, Female, 0, 0, 40, Mexico, <=50K\n");
    std::fs::write(&malformed, text).unwrap();
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();

    let train_s = train.to_str().unwrap();
    let eval_s = eval.to_str().unwrap();
    let job = tmp.path().join("job");
    let job_s = job.to_str().unwrap();
    let unwritable = blocker.join("job");
    let with_data = |extra: &[&'static str]| -> Vec<&str> {
        let mut args = vec![
            "--train-files",
            train_s,
            "--eval-files",
            eval_s,
            "--job-dir",
            job_s,
        ];
        args.extend_from_slice(extra);
        args
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--train-files",
                "/nonexistent/adult.data",
                "--eval-files",
                eval_s,
                "--job-dir",
                job_s,
                "--train-steps",
                "5",
            ],
            "cannot read /nonexistent/adult.data",
        ),
        (
            vec![
                "--train-files",
                malformed.to_str().unwrap(),
                "--eval-files",
                eval_s,
                "--job-dir",
                job_s,
                "--train-steps",
                "5",
            ],
            ":401: malformed row: education_num",
        ),
        (
            vec![
                "--train-files",
                train_s,
                "--eval-files",
                eval_s,
                "--job-dir",
                job_s,
                "--train-steps",
                "0",
            ],
            "--train-steps must be at least 1",
        ),
        (
            vec![
                "--train-files",
                train_s,
                "--eval-files",
                eval_s,
                "--job-dir",
                job_s,
                "--num-epochs",
                "1",
                "--learning-rate=-1",
            ],
            "--learning-rate must be a positive number",
        ),
        (
            vec![
                "--train-files",
                train_s,
                "--eval-files",
                eval_s,
                "--job-dir",
                job_s,
                "--num-epochs",
                "1",
                "--train-batch-size",
                "0",
            ],
            "--train-batch-size must be at least 1",
        ),
        (
            vec![
                "--train-files",
                train_s,
                "--eval-files",
                eval_s,
                "--job-dir",
                job_s,
                "--num-epochs",
                "1",
                "--eval-steps",
                "0",
            ],
            "--eval-steps must be at least 1",
        ),
        (
            vec![
                "--train-files",
                train_s,
                "--eval-files",
                eval_s,
                "--job-dir",
                "",
                "--num-epochs",
                "1",
            ],
            "--job-dir must name a folder or a bucket path",
        ),
        (
            vec![
                "--train-files",
                train_s,
                "--eval-files",
                eval_s,
                "--job-dir",
                job_s,
                "--num-epochs",
                "1",
                "--scale-factor",
                "nan",
            ],
            "--scale-factor must be a positive number",
        ),
        (
            vec![
                "--train-files",
                train_s,
                "--eval-files",
                eval_s,
                "--job-dir",
                job_s,
                "--train-steps",
                "x",
            ],
            "invalid value 'x'",
        ),
        (
            vec![
                "--train-files",
                train_s,
                "--eval-files",
                eval_s,
                "--job-dir",
                job_s,
                "--no-such-flag",
            ],
            "unexpected argument '--no-such-flag'",
        ),
        (
            vec![
                "--train-files",
                train_s,
                "--eval-files",
                eval_s,
                "--job-dir",
                unwritable.to_str().unwrap(),
                "--train-steps",
                "5",
            ],
            "cannot create --job-dir",
        ),
        (
            with_data(&["--num-epochs", "1", "--scale-factor", "1e300"]),
            "give hidden layer 2",
        ),
        (
            with_data(&["--num-epochs", "1", "--num-layers", "1000000000"]),
            "--num-layers must be at most 1000",
        ),
        (
            with_data(&[
                "--num-epochs",
                "1",
                "--first-layer-size",
                "20000",
                "--num-layers",
                "3",
                "--scale-factor",
                "1",
            ]),
            "the hidden layers would hold",
        ),
        (
            vec![
                "--train-files",
                train_s,
                "--eval-files",
                eval_s,
                "--job-dir",
                "gcs://bucket/census",
                "--train-steps",
                "5",
            ],
            "unsupported storage scheme gcs://",
        ),
    ];
    for (args, needle) in cases {
        let out = run(bin().arg("train").args(&args));
        assert_error(&out, needle);
        assert!(
            exported_versions(&job).is_empty(),
            "export left behind by {args:?}"
        );
    }
    // A diverged model stops the run after its progress lines, its error the last line, and is
    // never exported (an evaluation of NaN scores used to spin forever).
    let out = run(bin().arg("train").args(with_data(&[
        "--train-steps",
        "50",
        "--optimizer",
        "sgd",
        "--learning-rate",
        "1e38",
    ])));
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: the loss is")
            && last.ends_with("training diverged; lower --learning-rate"),
        "{err}"
    );
    assert!(exported_versions(&job).is_empty());
}

#[test]
fn usage_errors_show_clap_s_whole_message() {
    // A missing flag is named, with the subcommand's usage.
    let out = run(bin().args(["train", "--train-steps", "5"]));
    assert_usage_error(&out, "the following required arguments were not provided");
    let err = stderr(&out);
    assert!(err.contains("--train-files"), "{err}");
    assert!(err.contains("Usage: mlengine train"), "{err}");
    // How long to train is required too, either way.
    let out = run(bin().args([
        "train",
        "--train-files",
        "a",
        "--eval-files",
        "b",
        "--job-dir",
        "c",
    ]));
    assert_usage_error(&out, "the following required arguments were not provided");
    assert!(
        stderr(&out).contains("<--train-steps <TRAIN_STEPS>|--num-epochs <NUM_EPOCHS>>"),
        "{}",
        stderr(&out)
    );
    // A misspelt flag gets clap's suggestion.
    let out = run(bin().args(["train", "--train-step", "5"]));
    assert_usage_error(&out, "unexpected argument '--train-step'");
    assert!(
        stderr(&out).contains("a similar argument exists: '--train-steps'"),
        "{}",
        stderr(&out)
    );
    // Possible values are listed.
    let out = run(bin().args(["train", "--optimizer", "rmsprop"]));
    assert_usage_error(&out, "invalid value 'rmsprop'");
    assert!(
        stderr(&out).contains("[possible values: adagrad, adam, sgd]"),
        "{}",
        stderr(&out)
    );
    // A misspelt subcommand gets one too.
    let out = run(bin().arg("trian"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("similar subcommand exists: 'train'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_flag_given_twice_takes_its_last_value_as_task_py_s_argparse_does() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    train_fixture(
        &job,
        tmp.path(),
        &["--train-steps", "1", "--train-steps", "3"],
    );
    assert_eq!(latest_checkpoint(&job), "model.ckpt-3.safetensors");
    // A list flag too: the second --train-files replaces the first (which does not exist).
    let (train, eval, _) = fixture_files(tmp.path());
    let out = run(train_command(
        &tmp.path().join("missing.csv"),
        &eval,
        &tmp.path().join("job2"),
    )
    .args(["--train-steps", "2", "--train-files"])
    .arg(&train));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// What a job-dir's checkpoint index names becomes a path: anything but a checkpoint file of the
/// folder is refused before it is read or removed.
#[test]
fn a_checkpoint_index_naming_other_files_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    train_fixture(&job, tmp.path(), &["--train-steps", "2"]);
    let victim = tmp.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let index_path = job.join("checkpoint.json");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    for (field, name) in [("all", "../victim.txt"), ("latest", "/etc/passwd")] {
        let mut bad = index.clone();
        match field {
            "all" => bad["all"].as_array_mut().unwrap().insert(0, name.into()),
            _ => bad["latest"] = name.into(),
        }
        std::fs::write(&index_path, bad.to_string()).unwrap();
        let out = run(train_command(&train, &eval, &job).args([
            "--train-steps",
            "6",
            "--save-checkpoints-steps",
            "1",
            "--keep-checkpoint-max",
            "1",
        ]));
        assert_one_line_error(
            &out,
            &format!("names {name:?}, which is not a checkpoint file"),
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    }
}

/// A checkpoint that a killed run wrote but never indexed, and temporary files it left, are
/// removed by the next checkpoint; resuming with another optimizer is refused.
#[test]
fn leftovers_of_a_killed_run_are_swept_and_the_optimizer_must_match() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    train_fixture(
        &job,
        tmp.path(),
        &["--train-steps", "2", "--optimizer", "adam"],
    );
    let left = [
        "model.ckpt-999.safetensors",
        ".model.ckpt-3.safetensors.tmp-4000000",
        ".checkpoint.json.tmp-4000000",
        ".tmpAb12Cd",
    ];
    for name in left {
        std::fs::write(job.join(name), "left by a killed run").unwrap();
    }
    let (train, eval, _) = fixture_files(tmp.path());
    let out = run(train_command(&train, &eval, &job).args(["--train-steps", "4"]));
    assert_one_line_error(
        &out,
        "holds a checkpoint trained with --optimizer adam, this run asks for adagrad",
    );
    let out =
        run(train_command(&train, &eval, &job).args(["--train-steps", "4", "--optimizer", "adam"]));
    assert!(out.status.success(), "{}", stderr(&out));
    for name in left {
        assert!(!job.join(name).exists(), "{name} is still there");
    }
    assert!(job.join("model.ckpt-4.safetensors").exists());
    // A second run while one holds the job-dir is refused (each would sweep the other's files).
    let held = std::fs::File::open(job.join(".mlengine-job-dir.lock")).unwrap();
    held.try_lock().unwrap();
    let out =
        run(train_command(&train, &eval, &job).args(["--train-steps", "6", "--optimizer", "adam"]));
    assert_one_line_error(&out, "is in use by another run");
    drop(held);
    let out =
        run(train_command(&train, &eval, &job).args(["--train-steps", "6", "--optimizer", "adam"]));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `checkpoint.json`'s latest checkpoint name.
fn latest_checkpoint(job: &std::path::Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(job.join("checkpoint.json")).unwrap()).unwrap();
    index["latest"].as_str().unwrap().to_string()
}

#[test]
fn epoch_runs_save_their_last_step_and_exports_never_roll_back() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    // 400 fixture rows in batches of 40: 10 steps an epoch, the last one not a multiple of
    // --save-checkpoints-steps.
    let first = train_fixture(
        &job,
        tmp.path(),
        &["--num-epochs", "2", "--save-checkpoints-steps", "7"],
    );
    assert_eq!(latest_checkpoint(&job), "model.ckpt-20.safetensors");
    let meta = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap()
    };
    assert_eq!(meta(&first)["global_step"], 20);

    // The same command again: nothing to train, and step 20 is not exported twice.
    let (train, eval, _) = fixture_files(tmp.path());
    let again = |extra: &[&str]| {
        run(bin()
            .arg("train")
            .arg("--train-files")
            .arg(&train)
            .arg("--eval-files")
            .arg(&eval)
            .arg("--job-dir")
            .arg(&job)
            .args(extra))
    };
    let out = again(&["--num-epochs", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("was already exported to"),
        "{}",
        stdout(&out)
    );
    assert_eq!(exported_versions(&job), vec![first.clone()]);
    // Fewer steps than the checkpoint holds: no export of an older model either.
    let out = again(&["--train-steps", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(exported_versions(&job), vec![first.clone()]);
    // One more epoch continues from step 20 and exports step 30.
    let out = again(&["--num-epochs", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(latest_checkpoint(&job), "model.ckpt-30.safetensors");
    let newest = exported_versions(&job).pop().unwrap();
    assert_eq!(meta(&newest)["global_step"], 30);

    // Without its checkpoints, a job-dir whose export is newer than the run refuses to export
    // an older model.
    for e in std::fs::read_dir(&job).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::remove_file(p).unwrap();
        }
    }
    let out = again(&["--train-steps", "5"]);
    assert_one_line_error(&out, "already holds an export of step 30");
    assert_eq!(exported_versions(&job).len(), 2);
}

#[test]
fn a_bucket_job_dir_is_written_to_the_bucket_and_resumes_from_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let s3 = common::moto::Moto::start();
    s3.tool(&["mb", "bucket"]);
    let job = "s3://bucket/jobs/census";
    // Staging folders of runs killed earlier (their locks free) are removed; a live run's
    // (its lock held, here by this test) is left alone.
    let staging = tmp.path().join("staging");
    for name in ["mlengine-job-dead", "mlengine-job-live"] {
        std::fs::create_dir_all(staging.join(name)).unwrap();
        std::fs::write(staging.join(name).join(".mlengine-job-dir.lock"), "").unwrap();
    }
    let live =
        std::fs::File::open(staging.join("mlengine-job-live/.mlengine-job-dir.lock")).unwrap();
    live.try_lock().unwrap();
    let train_to = |steps: &str| {
        run(s3
            .env(&mut bin())
            .env("TMPDIR", &staging)
            .current_dir(tmp.path())
            .args([
                "train",
                "--train-steps",
                steps,
                "--save-checkpoints-steps",
                "10",
            ])
            .arg("--train-files")
            .arg(&train)
            .arg("--eval-files")
            .arg(&eval)
            .args(["--job-dir", job]))
    };
    let out = train_to("17");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!staging.join("mlengine-job-dead").exists());
    assert!(staging.join("mlengine-job-live").exists());
    // The run's own staging folders went with it.
    let left: Vec<_> = std::fs::read_dir(&staging)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["mlengine-job-live"], "{left:?}");
    drop(live);
    assert!(
        stdout(&out).contains("Exported model to s3://bucket/jobs/census/export/Servo/"),
        "{}",
        stdout(&out)
    );
    // Nothing went to a local folder named after the URI.
    assert!(!tmp.path().join("s3:").exists());
    let keys: Vec<String> = s3
        .tool(&["ls", "bucket", "jobs/census/"])
        .lines()
        .map(String::from)
        .collect();
    for want in [
        "jobs/census/checkpoint.json",
        "jobs/census/model.ckpt-17.safetensors",
        "jobs/census/model.ckpt-10.safetensors",
        "jobs/census/eval_metrics.json",
        "jobs/census/eval_history.jsonl",
    ] {
        assert!(keys.iter().any(|k| k == want), "{want} not in {keys:?}");
    }
    let exported: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("jobs/census/export/Servo/"))
        .collect();
    assert_eq!(exported.len(), 2, "{exported:?}");
    assert!(exported.iter().any(|k| k.ends_with("/model.onnx")));
    assert!(exported.iter().any(|k| k.ends_with("/model.json")));
    assert!(
        !keys.iter().any(|k| k.contains(".tmp")),
        "a temporary object was left: {keys:?}"
    );

    // A second run resumes from the bucket's checkpoint and gives exactly the model of a
    // straight local run.
    let out = train_to("40");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("resuming from the latest checkpoint in s3://bucket/jobs/census"),
        "{}",
        stderr(&out)
    );
    let uri = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("Exported model to "))
        .unwrap()
        .to_string();
    let key = format!("{}/model.onnx", uri.strip_prefix("s3://bucket/").unwrap());
    let resumed = tmp.path().join("resumed.onnx");
    s3.tool(&["download", "bucket", &key, resumed.to_str().unwrap()]);
    let straight = train_fixture(
        &tmp.path().join("straight"),
        tmp.path(),
        &["--train-steps", "40"],
    );
    assert_eq!(
        std::fs::read(&resumed).unwrap(),
        std::fs::read(straight.join("model.onnx")).unwrap()
    );
    let history = s3.tool(&["get", "bucket", "jobs/census/eval_history.jsonl"]);
    assert!(history.lines().count() >= 2, "{history}");
}

#[test]
fn ctrl_c_checkpoints_the_last_step_and_says_how_to_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let job = tmp.path().join("job");
    let child = bin()
        .args([
            "train",
            "--train-steps",
            "100000000",
            "--save-checkpoints-steps",
            "50",
        ])
        .arg("--train-files")
        .arg(&train)
        .arg("--eval-files")
        .arg(&eval)
        .arg("--job-dir")
        .arg(&job)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the first checkpoint", || {
        job.join("checkpoint.json").is_file()
    });
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("training interrupted; step "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("run the same command again to resume"),
        "{line}"
    );
    // The step it names is the one checkpointed.
    let step: String = line["training interrupted; step ".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert_eq!(
        latest_checkpoint(&job),
        format!("model.ckpt-{step}.safetensors")
    );
    assert!(exported_versions(&job).is_empty());
}

#[test]
fn tf_config_parameter_servers_evaluators_and_workers_outside_mpi_have_nothing_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    // A worker that no MPI launcher started would train alone into the master's job-dir.
    for (kind, why) in [
        ("ps", "parameter"),
        ("evaluator", "parameter"),
        ("worker", "no MPI launcher started it"),
    ] {
        let job = tmp.path().join(kind);
        let out = run(train_command(&train, &eval, &job)
            .args(["--train-steps", "10"])
            .env(
                "TF_CONFIG",
                format!(
                    r#"{{"cluster": {{"master": ["m:2222"], "worker": ["w:2222"]}},
                        "task": {{"type": "{kind}", "index": 0}}}}"#
                ),
            ));
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
        assert!(!job.exists(), "a {kind} task wrote its job-dir");
    }
}

/// TensorFlow's convention: a cluster without a chief or master has worker 0 as its chief, so
/// it trains (alone, outside MPI) and the other workers have nothing to do.
#[test]
fn tf_config_without_a_chief_or_master_makes_worker_0_the_chief() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let tf_config = |index: &str| {
        format!(
            r#"{{"cluster": {{"worker": ["w0:2222", "w1:2222"]}},
                "task": {{"type": "worker", "index": {index}}}}}"#
        )
    };
    let job = tmp.path().join("worker0");
    let out = run(train_command(&train, &eval, &job)
        .args(["--train-steps", "10"])
        .env("TF_CONFIG", tf_config("0")));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Saving dict for global step 10"),
        "{}",
        stdout(&out)
    );
    assert_eq!(exported_versions(&job).len(), 1);
    // The index as a number or, as some launchers write it, a string.
    for index in ["1", "\"1\""] {
        let job = tmp.path().join("worker1");
        let out = run(train_command(&train, &eval, &job)
            .args(["--train-steps", "10"])
            .env("TF_CONFIG", tf_config(index)));
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("worker 0 trains alone as the chief"),
            "{index}: {}",
            stderr(&out)
        );
        assert!(!job.exists(), "worker 1 ({index}) wrote its job-dir");
    }
}

/// With --eval-steps the final evaluation reads as many batches as the periodic ones (the
/// first ones: the same metrics as an eval file holding only those rows); a finished job run
/// again evaluates its last step but records it once.
#[test]
fn the_final_evaluation_takes_eval_steps_and_is_recorded_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, eval_rows) = fixture_files(tmp.path());
    let first = tmp.path().join("first.test");
    std::fs::write(
        &first,
        mlengine::census::fixture::to_uci_csv(&eval_rows[..50], true),
    )
    .unwrap();
    let metrics = |job: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(job.join("eval_metrics.json")).unwrap()).unwrap()
    };
    let steps = ["--train-steps", "20", "--eval-batch-size", "25"];
    let limited = tmp.path().join("limited");
    let out = run(train_command(&train, &eval, &limited)
        .args(steps)
        .args(["--eval-steps", "2"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let whole = tmp.path().join("whole");
    let out = run(train_command(&train, &first, &whole).args(steps));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(metrics(&limited), metrics(&whole));

    // Again, with nothing left to train: the evaluation is shown, the history keeps one line
    // and the eval events one point at step 20.
    let out = run(train_command(&train, &eval, &limited)
        .args(steps)
        .args(["--eval-steps", "2"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Saving dict for global step 20"),
        "{}",
        stdout(&out)
    );
    let history = std::fs::read_to_string(limited.join("eval_history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 1, "{history}");
    let points = mlengine::observability::tfevents::read_scalars(&limited.join("eval"), "accuracy");
    assert_eq!(
        points.iter().map(|p| p.0).collect::<Vec<_>>(),
        [20],
        "{points:?}"
    );
}

/// A build without MPI started by mpirun would train N copies that never meet: it refuses.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_to_be_one_of_several_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let job = tmp.path().join("job");
    let out = run(train_command(&train, &eval, &job)
        .args(["--train-steps", "10"])
        .env("OMPI_COMM_WORLD_SIZE", "2"));
    assert_one_line_error(&out, "built without MPI");
    let out =
        run(train_command(&train, &eval, &job).args(["--train-steps", "10", "--distributed"]));
    assert_one_line_error(&out, "--distributed needs an mlengine built with MPI");
}

/// The MPIJob in deploy/: as many ranks as worker slots, and a `train` command line that
/// mlengine accepts (it fails only at reaching the example bucket, never at parsing).
#[test]
fn the_mpijob_manifest_runs_a_train_command_mlengine_accepts() {
    let job: serde_json::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("deploy/kubernetes/jobs/mpijob-census-train.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(job["apiVersion"], "kubeflow.org/v2beta1");
    assert_eq!(job["kind"], "MPIJob");
    let spec = &job["spec"];
    let launcher = &spec["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0];
    assert_eq!(launcher["command"][0], "mpirun");
    let args: Vec<&str> = launcher["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let np: u64 = args[args.iter().position(|a| *a == "-np").unwrap() + 1]
        .parse()
        .unwrap();
    let slots = spec["slotsPerWorker"].as_u64().unwrap();
    let workers = spec["mpiReplicaSpecs"]["Worker"]["replicas"]
        .as_u64()
        .unwrap();
    assert_eq!(np, slots * workers);
    let program = args.iter().position(|a| a.ends_with("/mlengine")).unwrap();
    let out = run(bin()
        .args(&args[program + 1..])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("s3://my-bucket"), "{}", stderr(&out));
}

/// A trainer given Cloud ML Engine's environment without CLOUD_ML_TRIAL_ID takes its trial from
/// TF_CONFIG's task.trial, as the samples did.
#[test]
fn a_tuning_trial_is_named_by_tf_config_when_cloud_ml_trial_id_is_unset() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let metrics = tmp.path().join("metrics");
    let out = run(train_command(&train, &eval, &tmp.path().join("job"))
        .args(["--train-steps", "10"])
        .env("CLOUD_ML_HP_METRIC_FILE", &metrics)
        .env("CLOUD_ML_HP_METRIC_TAG", "accuracy")
        .env_remove("CLOUD_ML_TRIAL_ID")
        .env(
            "TF_CONFIG",
            r#"{"cluster": {}, "task": {"type": "master", "index": 0, "trial": "7"}}"#,
        ));
    assert!(out.status.success(), "{}", stderr(&out));
    let report = std::fs::read_to_string(&metrics).unwrap();
    let last: serde_json::Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    assert_eq!(last["trial"], "7", "{report}");
}

/// A metric file that cannot be written is named before any training, not after it.
#[test]
fn an_unwritable_hypertune_metric_file_is_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let job = tmp.path().join("job");
    let out = run(train_command(&train, &eval, &job)
        .args(["--train-steps", "2"])
        .env("CLOUD_ML_HP_METRIC_FILE", "/proc/no-such/metric")
        .env("CLOUD_ML_HP_METRIC_TAG", "auc"));
    assert_one_line_error(
        &out,
        "cannot create the folder of CLOUD_ML_HP_METRIC_FILE /proc/no-such/metric",
    );
    assert!(!job.join("checkpoint.json").exists());
}

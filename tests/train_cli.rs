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
            ],
            "one of --train-steps or --num-epochs is required",
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
    ];
    for (args, needle) in cases {
        let out = run(bin().arg("train").args(&args));
        assert_error(&out, needle);
        assert!(
            exported_versions(&job).is_empty(),
            "export left behind by {args:?}"
        );
    }
}

#[test]
fn usage_errors_show_clap_s_whole_message() {
    // A missing flag is named, with the subcommand's usage.
    let out = run(bin().args(["train", "--train-steps", "5"]));
    assert_usage_error(&out, "the following required arguments were not provided");
    let err = stderr(&out);
    assert!(err.contains("--train-files"), "{err}");
    assert!(err.contains("Usage: mlengine train"), "{err}");
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

//! The exported model against the trainer: `onnx.checker` (full check), and Python onnxruntime,
//! the Rust runtime and the trainer's own forward pass agreeing within 1e-5 on every row of
//! `adult.test` (the fixture's eval rows when the census data is absent).

mod common;

use common::*;
use mlengine::census::csv;
use mlengine::codec::instances::decode_instances;
use mlengine::runtime::{load_model, SessionConfig};
use mlengine::tensor::TensorData;
use mlengine::trainer::checkpoint::restore_network;

fn floats(v: &serde_json::Value) -> Vec<f64> {
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<f64>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            x => out.push(x.as_f64().unwrap()),
        }
    }
    walk(v, &mut out);
    out
}

/// The bits of elements `from..to` of a float or int64 output.
fn bits(data: &TensorData, from: usize, to: usize) -> Vec<u64> {
    match data {
        TensorData::F32(v) => v[from..to].iter().map(|x| u64::from(x.to_bits())).collect(),
        TensorData::I64(v) => v[from..to].iter().map(|&x| x as u64).collect(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn python_onnxruntime_rust_runtime_and_trainer_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    let (train, eval) = match census_dir() {
        Some(d) => (d.join("adult.data"), d.join("adult.test")),
        None => {
            eprintln!("census data absent: checking parity on the fixture");
            let (t, e, _) = fixture_files(tmp.path());
            (t, e)
        }
    };
    let out = run(bin()
        .args(["train", "--train-steps", "400", "--train-files"])
        .arg(&train)
        .arg("--eval-files")
        .arg(&eval)
        .arg("--job-dir")
        .arg(&job));
    assert!(out.status.success(), "{}", stderr(&out));
    let version = exported_versions(&job).pop().unwrap();
    let model = version.join("model.onnx");

    let rows = csv::read_local_files(&[&eval]).unwrap();
    if census_dir().is_some() {
        assert_eq!(rows.len(), 16_281);
    }
    // The trainer's forward pass from its checkpoint.
    let (network, state) = restore_network(&job).unwrap();
    let trainer_logits = network.predict(&state.spec.encode(&rows), 1024).unwrap();

    // The Rust runtime on raw JSON instances (leading spaces as in the UCI files).
    let jsonl = mlengine::census::fixture::to_json_instances(&rows);
    let instances: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut session = load_model(&model, None, SessionConfig::default()).unwrap();
    let inputs = decode_instances(session.signature(), &instances).unwrap();
    let outputs = session.run(&inputs, &[]).unwrap();
    let get = |name: &str| -> Vec<f64> {
        let t = &outputs.iter().find(|(n, _)| n == name).unwrap().1;
        match &t.data {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            other => panic!("unexpected {other:?}"),
        }
    };
    let (r_logits, r_probs, r_logistic, r_classes) = (
        get("logits"),
        get("probabilities"),
        get("logistic"),
        get("classes"),
    );
    assert_eq!(r_logits.len(), rows.len());

    // A row's answer does not depend on the rows batched with it, bit for bit: every row alone,
    // and the rows in uneven batches, give exactly the all-rows run's outputs.
    let all_rows = outputs.clone();
    let mut start = 0;
    for (k, size) in [1usize, 2, 3, 7, 64, 1].iter().cycle().enumerate() {
        if start >= instances.len() {
            break;
        }
        // Alternate batch sizes, and run every row alone in the first 2,000 rows' span.
        let size = if start < 2000 { 1 } else { *size + k % 5 };
        let end = (start + size).min(instances.len());
        let inputs = decode_instances(session.signature(), &instances[start..end]).unwrap();
        let part = session.run(&inputs, &[]).unwrap();
        for ((name, whole), (_, piece)) in all_rows.iter().zip(&part) {
            let row_len = whole.row_len();
            assert!(
                bits(&whole.data, start * row_len, end * row_len)
                    == bits(&piece.data, 0, piece.data.len()),
                "{name}: rows {start}..{end} run apart differ from the same rows run together"
            );
        }
        start = end;
    }

    // Python: onnx.checker (full_check) and onnxruntime.
    let python = python_env("onnx", "tests/python/requirements-onnx.txt");
    let inst_path = tmp.path().join("instances.jsonl");
    std::fs::write(&inst_path, &jsonl).unwrap();
    let py_out = tmp.path().join("py.json");
    let out = run(std::process::Command::new(&python)
        .arg(root().join("tests/python/onnx_reference.py"))
        .arg(&model)
        .arg(&inst_path)
        .arg(&py_out));
    assert!(
        out.status.success(),
        "python reference failed: {}",
        stderr(&out)
    );
    let py: serde_json::Value = serde_json::from_slice(&std::fs::read(&py_out).unwrap()).unwrap();
    assert_eq!(py["checker"], "ok");

    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * a.abs().max(1.0);
    let mut worst = 0.0f64;
    for i in 0..rows.len() {
        let t = trainer_logits[i] as f64;
        let p1 = 1.0 / (1.0 + (-t).exp());
        assert!(
            close(t, r_logits[i]),
            "row {i}: trainer logit {t} vs runtime {}",
            r_logits[i]
        );
        assert!(
            close(p1, r_logistic[i]),
            "row {i}: trainer logistic {p1} vs runtime {}",
            r_logistic[i]
        );
        assert!(close(1.0 - p1, r_probs[2 * i]), "row {i}: P(<=50K)");
        assert!(close(p1, r_probs[2 * i + 1]), "row {i}: P(>50K)");
        if (p1 - 0.5).abs() > 1e-5 {
            assert_eq!(
                r_classes[i],
                f64::from(u8::from(p1 > 0.5)),
                "row {i}: class"
            );
        }
        worst = worst.max((t - r_logits[i]).abs());
    }
    eprintln!("largest |trainer - runtime| logit difference: {worst:e}");
    for name in ["logits", "probabilities", "logistic", "classes"] {
        let p = floats(&py["outputs"][name]);
        let r = get(name);
        assert_eq!(p.len(), r.len(), "{name}");
        for (i, (a, b)) in p.iter().zip(&r).enumerate() {
            assert!(close(*a, *b), "{name}[{i}]: python {a} vs rust {b}");
        }
    }

    // Whitespace in a categorical value reads alike in the trainer and the graph: spaces around
    // it are trimmed, anything else (a tab, a no-break space) is part of the value, and a space
    // inside makes it unknown.
    let workclass = mlengine::census::schema::categorical_index("workclass").unwrap();
    let variants = [
        "Private",
        "Private  ",
        "\tPrivate",
        "\u{a0}Private",
        "Private\u{3000}",
        "Pri vate",
    ];
    let probe: Vec<csv::CensusRow> = variants
        .iter()
        .map(|v| {
            let mut row = rows[0].clone();
            row.categorical[workclass] = v.to_string();
            row
        })
        .collect();
    let trainer = network.predict(&state.spec.encode(&probe), 1024).unwrap();
    let probe_json: Vec<serde_json::Value> = mlengine::census::fixture::to_json_instances(&probe)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let inputs = decode_instances(session.signature(), &probe_json).unwrap();
    let outputs = session.run(&inputs, &[]).unwrap();
    let TensorData::F32(logits) = &outputs.iter().find(|(n, _)| n == "logits").unwrap().1.data
    else {
        panic!("logits are not floats");
    };
    for (i, v) in variants.iter().enumerate() {
        let (t, r) = (trainer[i] as f64, logits[i] as f64);
        assert!(
            close(t, r),
            "workclass {v:?}: trainer logit {t} vs runtime {r}"
        );
    }
}

#[test]
fn census_accuracy_of_the_reference_and_sample_commands() {
    let Some(data) = census_dir() else {
        eprintln!("skipped: ../shared/data/census is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let train = data.join("adult.data");
    let eval = data.join("adult.test");
    let metrics = |job: &std::path::Path, args: &[&str]| -> serde_json::Value {
        let out = run(bin()
            .arg("train")
            .args(args)
            .arg("--train-files")
            .arg(&train)
            .arg("--eval-files")
            .arg(&eval)
            .arg("--job-dir")
            .arg(job));
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&std::fs::read(job.join("eval_metrics.json")).unwrap()).unwrap()
    };
    // The census sample's own command: --train-steps 1000, defaults otherwise.
    let sample = metrics(&tmp.path().join("sample"), &["--train-steps", "1000"]);
    assert_eq!(sample["examples"], 16_281);
    assert!(
        sample["accuracy"].as_f64().unwrap() >= 0.845,
        "sample command: {sample}"
    );

    // The README's reference command (the one that trained models/census).
    let reference = metrics(
        &tmp.path().join("reference"),
        &mlengine::trainer::REFERENCE_ARGS,
    );
    assert!(
        reference["accuracy"].as_f64().unwrap() >= 0.855,
        "reference: {reference}"
    );
    assert!(
        reference["auc"].as_f64().unwrap() >= 0.908,
        "reference: {reference}"
    );
}

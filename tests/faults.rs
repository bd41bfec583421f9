//! Faults, each ending in a clear error with nothing half-published: a version folder removed
//! while the version loads, the object store gone in the middle of mirroring a version, and a full
//! disk while `train` exports and while `batch-predict` writes. The server keeps serving its last
//! good version throughout. (SIGKILL during a version creation and during a job, and a restart:
//! tests/control_plane.rs.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::moto::Moto;
use common::slow::{busy_value, slow_model};
use common::*;
use mlengine::census::fixture;
use serde_json::{json, Value};

const VERTEX: &str = "/v1/projects/p/locations/l/endpoints/census:predict";

/// The state of `version` in TF Serving's model status, if listed.
fn version_state(server: &Server, model: &str, version: u64) -> Option<String> {
    let (_, text) = server.get(&format!("/v1/models/{model}"));
    let status: Value = serde_json::from_str(&text).ok()?;
    status["model_version_status"]
        .as_array()?
        .iter()
        .find(|v| v["version"] == json!(version.to_string()))
        .and_then(|v| v["state"].as_str().map(String::from))
}

#[test]
fn a_version_folder_removed_while_it_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("slow");
    slow_model(&base.join("1/model.onnx"));
    let server = Server::start(&[
        "--model-base-path",
        base.to_str().unwrap(),
        "--model-name",
        "slow",
        "--file-system-poll-wait-seconds",
        "1",
    ]);
    let predict = "/v1/models/slow:predict";
    let busy = busy_value(&server, predict, 3.0);
    // Version 2 warms up with a run that lasts seconds: it stays LOADING while its folder goes.
    let staging = base.join(".staging-2");
    slow_model(&staging.join("model.onnx"));
    std::fs::write(staging.join("warmup.jsonl"), format!("{busy}\n")).unwrap();
    std::fs::rename(&staging, base.join("2")).unwrap();
    wait_until("version 2 to be loading", || {
        version_state(&server, "slow", 2).as_deref() == Some("LOADING")
    });
    std::fs::remove_dir_all(base.join("2")).unwrap();
    // Every request is answered while version 2 finishes or fails and goes, until version 1
    // serves alone again.
    let mut answered = 0;
    wait_until("version 1 to serve alone", || {
        let (status, text) = server.post(predict, r#"{"instances": [1.0]}"#);
        assert_eq!(status, 200, "a request failed: {text}");
        answered += 1;
        let two = version_state(&server, "slow", 2);
        version_state(&server, "slow", 1).as_deref() == Some("AVAILABLE")
            && !matches!(two.as_deref(), Some("LOADING" | "AVAILABLE"))
    });
    assert!(answered > 0);
    let (status, text) = server.post(
        "/v1/models/slow/versions/1:predict",
        r#"{"instances": [2.0]}"#,
    );
    assert_eq!(status, 200, "{text}");
    let (status, _) = server.post(
        "/v1/models/slow/versions/2:predict",
        r#"{"instances": [2.0]}"#,
    );
    assert_eq!(status, 404);
}

/// Files under `dir` whose name is `name`, at any depth.
fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_name() == name {
            found.push(path.clone());
        }
        if path.is_dir() {
            found.extend(find_named(&path, name));
        }
    }
    found
}

fn file_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        file_count(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn the_object_store_gone_in_the_middle_of_mirroring() {
    let tmp = tempfile::tempdir().unwrap();
    let mut moto = Moto::start();
    moto.tool(&["mb", "bucket"]);
    let v1 = bundled_version();
    moto.tool(&["putdir", "bucket", "models/census/1", v1.to_str().unwrap()]);
    // The mirror lives in the server's temporary directory: point that where the test can look.
    let server_tmp = tmp.path().join("server-tmp");
    std::fs::create_dir_all(&server_tmp).unwrap();
    let log = tmp.path().join("server.log");
    let mut cmd = Server::command(&[
        "--model-name",
        "census",
        "--model-base-path",
        "s3://bucket/models/census",
        "--file-system-poll-wait-seconds",
        "1",
    ]);
    cmd.env("TMPDIR", &server_tmp)
        .stderr(std::fs::File::create(&log).unwrap());
    moto.env(&mut cmd);
    let server = Server::spawn_with_stderr(cmd);
    let served = |server: &Server| {
        let (status, answer) = server.post_json(VERTEX, &json!({"instances": [census_instance()]}));
        assert_eq!(status, 200, "{answer}");
        answer["deployedModelId"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(served(&server), "1");
    // Version 2: the model and a hundred 256 KiB assets, the model uploaded last (as exports do).
    let v2 = tmp.path().join("v2");
    std::fs::create_dir_all(v2.join("assets")).unwrap();
    for f in ["model.onnx", "model.json"] {
        std::fs::copy(v1.join(f), v2.join(f)).unwrap();
    }
    for i in 0..100 {
        std::fs::write(
            v2.join(format!("assets/blob-{i:03}")),
            vec![i as u8; 256 << 10],
        )
        .unwrap();
    }
    moto.tool(&["putdir", "bucket", "models/census/2", v2.to_str().unwrap()]);
    let mut partial = None;
    wait_until("the mirror to be part-way through version 2", || {
        partial = find_named(&server_tmp, ".download-2")
            .into_iter()
            .find(|d| file_count(d) > 0);
        partial.is_some()
    });
    moto.kill();
    let partial = partial.unwrap();
    assert!(
        file_count(&partial) < 102,
        "version 2 was already whole when the store went"
    );
    wait_until("the server to report the failed mirror", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("cannot mirror versions")
    });
    // Nothing half-published: no version 2 beside the partial download, version 1 still served.
    let mirror = partial.parent().unwrap();
    assert!(
        !mirror.join("2").exists(),
        "a partial version 2 was published"
    );
    assert!(mirror.join("1/model.onnx").is_file());
    for _ in 0..20 {
        assert_eq!(served(&server), "1");
    }
    assert_eq!(version_state(&server, "census", 2), None);
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("cannot mirror versions"))
        .unwrap();
    assert!(
        line.contains("s3://bucket/models/census") || line.contains("127.0.0.1"),
        "{line}"
    );
}

/// A small tmpfs, unmounted when dropped; `None` where this machine does not let a test mount one
/// (not root), said on stderr.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root): no full-disk test");
            return None;
        }
        Some(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    fn grow(&self, bytes: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Bytes a tree takes on a tmpfs: whole 4 KiB pages per file.
fn pages_bytes(dir: &Path, filter: &dyn Fn(&Path) -> bool) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            total += pages_bytes(&path, filter);
        } else if filter(&path) {
            total += e.metadata().unwrap().len().div_ceil(4096) * 4096;
        }
    }
    total
}

#[test]
fn a_full_disk_while_train_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (train, eval, _) = fixture_files(&data);
    let train_cmd = |job_dir: &Path| {
        let mut cmd = bin();
        cmd.arg("train")
            .arg("--train-files")
            .arg(&train)
            .arg("--eval-files")
            .arg(&eval)
            .arg("--job-dir")
            .arg(job_dir)
            .args(["--train-steps", "20"]);
        cmd
    };
    // What this run writes, measured on a roomy disk: the export, and everything else.
    let roomy = tmp.path().join("roomy");
    assert!(run(&mut train_cmd(&roomy)).status.success());
    let export = pages_bytes(&roomy.join("export"), &|_| true);
    let rest = pages_bytes(&roomy, &|p: &Path| !p.starts_with(roomy.join("export")));
    // Room for the checkpoint and the rest, and for half the export.
    let Some(disk) = Tmpfs::mount(&tmp.path().join("full"), rest + 16384 + export / 2) else {
        return;
    };
    let job = disk.dir.join("job");
    let out = run(&mut train_cmd(&job));
    assert!(!out.status.success(), "train succeeded on a full disk");
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("No space left on device"), "{err}");
    assert!(
        last.contains("export"),
        "the error does not say what failed: {last}"
    );
    // The checkpoint is whole and no version was published, not even in part.
    assert!(job.join("model.ckpt-20.safetensors").is_file(), "{err}");
    assert!(
        exported_versions(&job).is_empty(),
        "{:?}",
        exported_versions(&job)
    );
    // With room again, the same command exports step 20 from the checkpoint.
    disk.grow(64 << 20);
    let out = run(&mut train_cmd(&job));
    assert!(out.status.success(), "{}", stderr(&out));
    let versions = exported_versions(&job);
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert!(versions[0].join("model.onnx").is_file());
    let meta: Value =
        serde_json::from_slice(&std::fs::read(versions[0].join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["global_step"], 20);
}

#[test]
fn a_full_disk_while_batch_predict_writes() {
    let tmp = tempfile::tempdir().unwrap();
    // A predictions file of about 300 KB fills a 64 KiB disk when the shard is completed; one of
    // about 10 MB fills a 1 MiB disk while it is still being written (past the 8 MiB buffer).
    for (rows, disk_size) in [(3_000, 64u64 << 10), (100_000, 1 << 20)] {
        let input = tmp.path().join(format!("instances-{rows}.json"));
        std::fs::write(&input, fixture::to_json_instances(&fixture::rows(rows, 5))).unwrap();
        let Some(disk) = Tmpfs::mount(&tmp.path().join(format!("full-{rows}")), disk_size) else {
            return;
        };
        let output = disk.dir.join("predictions");
        let out = run(bin()
            .arg("batch-predict")
            .arg("--model-dir")
            .arg(root().join("models/census/export/Servo"))
            .arg("--input-paths")
            .arg(&input)
            .arg("--output-path")
            .arg(&output)
            .args(["--data-format", "JSON"]));
        assert!(
            !out.status.success(),
            "batch-predict succeeded on a full disk"
        );
        let err = stderr(&out);
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains("No space left on device"), "{err}");
        assert!(last.contains(output.to_str().unwrap()), "{err}");
        // Nothing that looks complete, nor any temporary file or folder, is left.
        let left: Vec<String> = std::fs::read_dir(&output)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "{rows} rows: left behind: {left:?}");
    }
}

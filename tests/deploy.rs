//! deploy/: the manifests and the Dockerfile checked offline (deploy/validate.py with kustomize,
//! Kubernetes' and the CRDs' schemas, hadolint, and the binary's own `--help`), a validator that
//! finds planted mistakes, the layouts KServe's storage initializer leaves in /mnt/models, the
//! image's FROM-scratch file system run under chroot, and `mlengine health`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn kustomize() -> PathBuf {
    let out = run(&mut Command::new(
        root().join("scripts/install-kustomize.sh"),
    ));
    assert!(out.status.success(), "install-kustomize: {}", stderr(&out));
    PathBuf::from(stdout(&out).trim())
}

/// Runs deploy/validate.py on `deploy` (a copy of the project's deploy/ or the folder itself).
fn validate(deploy: &Path) -> (bool, Value) {
    let python = python_env("deploy", "tests/python/requirements-deploy.txt");
    let hadolint = python.with_file_name("hadolint");
    let out = run(Command::new(&python)
        .arg(root().join("deploy/validate.py"))
        .arg("--root")
        .arg(deploy)
        .arg("--mlengine")
        .arg(env!("CARGO_BIN_EXE_mlengine"))
        .arg("--kustomize")
        .arg(kustomize())
        .arg("--hadolint")
        .arg(hadolint));
    let report: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("validate.py: {e}: {}{}", stdout(&out), stderr(&out)));
    (out.status.success(), report)
}

#[test]
fn every_manifest_validates_offline() {
    let (ok, report) = validate(&root().join("deploy"));
    assert!(ok, "{report:#}");
    assert_eq!(report["problems"], json!([]));
    let checked = &report["checked"];
    let renders: Vec<&str> = checked["renders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for r in [
        "base",
        "overlays/cpu",
        "overlays/cuda",
        "overlays/control-plane",
        "kserve",
        "jobs",
        "base+components/auth-tls",
        "base+components/models-from-bucket",
        "base+components/models-from-volume",
        "base+components/monitoring",
    ] {
        assert!(renders.contains(&r), "{r} not rendered: {renders:?}");
    }
    for kind in [
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PersistentVolumeClaim",
        "ClusterServingRuntime",
        "InferenceService",
        "Job",
        "MPIJob",
        "Experiment",
    ] {
        assert!(
            checked["objects"][kind].as_u64().unwrap_or(0) > 0,
            "no {kind} checked: {checked:#}"
        );
    }
    // Every rendered Deployment and the KServe runtime run `serve`, and were compared with it.
    assert!(
        checked["serve_containers"].as_u64().unwrap() >= 9,
        "{checked:#}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn the_validator_finds_planted_mistakes() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    copy_dir(&root().join("deploy"), &deploy);
    // A flag the server does not have, a drain longer than the pod's grace, a field Kubernetes
    // does not know, a field KServe's CRD does not know, a gRPC port the runtime does not listen
    // on, an image without a shell for Katib, and a Dockerfile hadolint rejects.
    for (file, from, to) in [
        (
            "kubernetes/base/deployment.yaml",
            "--request-timeout-ms=10000",
            "--request-timeout=10000",
        ),
        (
            "kubernetes/base/deployment.yaml",
            "terminationGracePeriodSeconds: 40",
            "terminationGracePeriodSeconds: 20",
        ),
        (
            "kubernetes/base/hpa.yaml",
            "averageUtilization: 70",
            "averageUtilisation: 70",
        ),
        (
            "kubernetes/kserve/inferenceservice-rest.yaml",
            "storageUri:",
            "storageURI:",
        ),
        (
            "kubernetes/kserve/inferenceservice-grpc.yaml",
            "containerPort: 9000",
            "containerPort: 8500",
        ),
        (
            "kubernetes/jobs/katib-census-experiment.yaml",
            "image: mlengine:jobs",
            "image: mlengine:latest",
        ),
        ("image/Dockerfile", "WORKDIR /src\n", "RUN cd /src\n"),
        // Hardening lost by the MPI launcher and the batch job.
        (
            "kubernetes/jobs/mpijob-census-train.yaml",
            "runAsNonRoot: true",
            "runAsNonRoot: false",
        ),
        (
            "kubernetes/jobs/batch-predict-indexed-job.yaml",
            "allowPrivilegeEscalation: false",
            "allowPrivilegeEscalation: true",
        ),
    ] {
        edit(&deploy.join(file), from, to);
    }
    let (ok, report) = validate(&deploy);
    assert!(!ok, "{report:#}");
    let problems = report["problems"].to_string();
    for needle in [
        "mlengine serve has no flag --request-timeout",
        "terminationGracePeriodSeconds 20 is not longer than --shutdown-grace-seconds 30",
        "averageUtilisation",
        "storageURI",
        "h2c port 8500 is not the runtime's --grpc-port 9000",
        "needs a shell",
        "DL3003",
        "MPIJob/census-train Launcher container launcher: securityContext: runAsNonRoot is not true",
        "Job/census-batch-predict container batch-predict: securityContext: \
         allowPrivilegeEscalation is not false",
    ] {
        assert!(problems.contains(needle), "{needle:?} not in {problems}");
    }
}

/// Serves `base` as KServe's runtime does (`--model-base-path=/mnt/models`) and returns the
/// versions it reports once the model is ready, after checking one prediction.
fn serve_kserve_layout(base: &Path) -> Vec<String> {
    let server = Server::start(&[
        "--model-name",
        "census",
        "--model-base-path",
        base.to_str().unwrap(),
    ]);
    wait_until("the model to be ready", || {
        server.get("/v2/models/census/ready").0 == 200
    });
    let (status, body) = server.post_json(
        "/v1/models/census:predict",
        &json!({"instances": [census_instance()]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"][0]["classes"], json!(0), "{body}");
    let (status, meta) = server.get("/v2/models/census");
    assert_eq!(status, 200, "{meta}");
    let meta: Value = serde_json::from_str(&meta).unwrap();
    meta["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn kserve_mnt_models_layouts_are_served() {
    let version = bundled_version();
    // A storageUri naming one exported version: its files straight in /mnt/models.
    let flat = tempfile::tempdir().unwrap();
    copy_dir(&version, flat.path());
    assert_eq!(serve_kserve_layout(flat.path()), vec!["1"]);
    // A storageUri naming an export/Servo prefix: numeric version folders.
    let numeric = tempfile::tempdir().unwrap();
    let name = version.file_name().unwrap().to_str().unwrap().to_string();
    copy_dir(&version, &numeric.path().join(&name));
    assert_eq!(serve_kserve_layout(numeric.path()), vec![name]);
    // A folder with neither is refused as a model with no versions, never served empty.
    let empty = tempfile::tempdir().unwrap();
    let server = Server::start(&[
        "--model-name",
        "census",
        "--model-base-path",
        empty.path().to_str().unwrap(),
    ]);
    assert_ne!(server.get("/v2/models/census/ready").0, 200);
}

#[test]
fn health_exits_zero_only_for_a_ready_server() {
    let server = Server::start(&["--model-base-path", "models/census/export/Servo"]);
    let url = format!("http://{}/v2/health/ready", server.addr);
    wait_until("the server to be ready", || {
        run(bin().args(["health", "--url", &url])).status.success()
    });
    let out = run(bin().args(["health", "--url", &url]));
    assert!(stdout(&out).contains("200"), "{}", stdout(&out));
    // A bare address, as the other commands take a server: http, and readiness.
    let out = run(bin().args(["health", "--url", &server.addr]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("/v2/health/ready: 200"),
        "{}",
        stdout(&out)
    );
    // A missing route answers 404: not healthy.
    let out = run(bin().args([
        "health",
        "--url",
        &format!("http://{}/v2/health/nothing", server.addr),
    ]));
    assert_one_line_error(&out, "answered 404");
    drop(server);
    // Nobody listening: one line and a failure, within the timeout.
    let out = run(bin().args(["health", "--url", &url, "--timeout-seconds", "2"]));
    assert_one_line_error(&out, "cannot reach");
    let out = run(bin().args(["health", "--timeout-seconds", "0"]));
    assert_one_line_error(&out, "--timeout-seconds");
}

/// The environment's search path: chroot itself is found on it, and inside the image nothing
/// but /usr/local/bin exists on it.
const IMAGE_PATH: &str = "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The CPU image's whole file system (deploy/image/rootfs.sh, what the Dockerfile's FROM-scratch
/// stage copies) runs the server on its own: chroot into it and serve the bundled model with
/// the image's own command, then ask it with the image's health check.
#[test]
fn the_scratch_image_file_system_serves_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    let out = run(Command::new(root().join("deploy/image/rootfs.sh"))
        .arg(&rootfs)
        .arg(env!("CARGO_BIN_EXE_mlengine"))
        .arg(root().join(".ort/cpu/lib"))
        .arg("10001"));
    assert!(out.status.success(), "rootfs.sh: {}", stderr(&out));
    assert!(rootfs
        .join("opt/mlengine/models/census/1/model.onnx")
        .is_file());
    assert!(!rootfs.join("bin/sh").exists(), "the image has no shell");
    let mut chroot = Command::new("chroot");
    chroot
        .arg("--userspec=10001:10001")
        .arg(&rootfs)
        .env_clear()
        .env("PATH", IMAGE_PATH)
        .env("ORT_DYLIB_PATH", "/opt/mlengine/lib/libonnxruntime.so")
        .args([
            "/usr/local/bin/mlengine",
            "serve",
            "--model-base-path=/opt/mlengine/models/census",
        ])
        .args(LOOPBACK_ANY_PORT);
    let server = Server::spawn(chroot);
    let url = format!("http://{}/v2/health/ready", server.addr);
    wait_until("the chrooted server to be ready", || {
        run(Command::new("chroot")
            .arg("--userspec=10001:10001")
            .arg(&rootfs)
            .env_clear()
            .env("PATH", IMAGE_PATH)
            .args(["/usr/local/bin/mlengine", "health", "--url", &url]))
        .status
        .success()
    });
    let (status, body) = server.post_json(
        "/v1/models/census:predict",
        &json!({"instances": [census_instance()]}),
    );
    assert_eq!(status, 200, "{body}");
}

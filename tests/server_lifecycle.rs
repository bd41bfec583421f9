//! Versions coming and going under a live server: hot swaps under load, versions that fail to
//! load, deleted versions, and SIGTERM during load.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const VERTEX: &str = "/v1/projects/p/locations/l/endpoints/census:predict";

fn served_version(server: &Server) -> Option<String> {
    let (status, text) = server.post(
        VERTEX,
        &json!({"instances": [census_instance()]}).to_string(),
    );
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&text).ok()?;
    v["deployedModelId"].as_str().map(String::from)
}

fn wait_for_version(server: &Server, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if served_version(server).as_deref() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "version {want} was never served; status: {}",
        server.get("/v1/models/census").1
    );
}

fn status(server: &Server) -> Vec<Value> {
    let (_, text) = server.get("/v1/models/census");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["model_version_status"].as_array().unwrap().clone()
}

#[test]
fn twenty_swaps_under_load_fail_no_request() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("Servo");
    let model = bundled_version().join("model.onnx");
    publish_version(&base, 1, &model);
    let server = Server::start(&[
        "--model-base-path",
        base.to_str().unwrap(),
        "--file-system-poll-wait-seconds",
        "0.05",
    ]);
    let addr = server.addr.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (addr, stop, failures, seen, ok) = (
                addr.clone(),
                stop.clone(),
                failures.clone(),
                seen.clone(),
                ok.clone(),
            );
            std::thread::spawn(move || {
                let body = json!({"instances": [census_instance()]}).to_string();
                while !stop.load(Ordering::Relaxed) {
                    match http(&addr, "POST", VERTEX, &[], body.as_bytes()) {
                        Ok((200, text)) => {
                            let v: Value = serde_json::from_str(&text).unwrap();
                            seen.lock()
                                .unwrap()
                                .insert(v["deployedModelId"].as_str().unwrap().to_string());
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((status, text)) => {
                            failures.lock().unwrap().push(format!("{status} {text}"))
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    wait_for_version(&server, "1");
    for n in 2..=21u64 {
        publish_version(&base, n, &model);
        wait_for_version(&server, &n.to_string());
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests, first: {:?}",
        failures.len(),
        failures.first()
    );
    let seen = seen.lock().unwrap();
    eprintln!(
        "{} requests answered during 20 swaps, by {} versions",
        ok.load(Ordering::Relaxed),
        seen.len()
    );
    assert!(seen.contains("21") && seen.len() > 2, "{seen:?}");
    // latest:1 serves only the newest version.
    let available: Vec<Value> = status(&server)
        .into_iter()
        .filter(|s| s["state"] == "AVAILABLE")
        .collect();
    assert_eq!(available.len(), 1, "{available:?}");
    assert_eq!(available[0]["version"], "21");
}

#[test]
fn broken_versions_never_replace_a_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("Servo");
    let model = bundled_version().join("model.onnx");
    publish_version(&base, 1, &model);
    let server = Server::start(&[
        "--model-base-path",
        base.to_str().unwrap(),
        "--file-system-poll-wait-seconds",
        "0.05",
    ]);
    wait_for_version(&server, "1");

    // A corrupt model file.
    std::fs::create_dir(base.join("2")).unwrap();
    std::fs::write(base.join("2/model.onnx"), b"this is not an ONNX model").unwrap();
    // A half-written version: the directory exists, its model file does not yet.
    std::fs::create_dir(base.join("3")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(&server);
        let failed: Vec<&Value> = s
            .iter()
            .filter(|v| v["status"]["error_code"] != "OK")
            .collect();
        if failed.len() == 2 {
            assert!(
                failed[0]["status"]["error_message"]
                    .as_str()
                    .unwrap()
                    .contains("cannot load"),
                "{failed:?}"
            );
            assert!(
                failed[1]["status"]["error_message"]
                    .as_str()
                    .unwrap()
                    .contains("has no model.onnx"),
                "{failed:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "failures never reported: {s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(served_version(&server).as_deref(), Some("1"));
    let (_, metrics) = server.get("/metrics");
    assert!(
        metrics.contains("mlengine_model_version_load_failed{model=\"census\",version=\"2\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mlengine_model_load_failures_total{model=\"census\"}"),
        "{metrics}"
    );

    // A half-copied model file in version 3 still fails; v1 keeps serving.
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(base.join("3/model.onnx"), &bytes[..bytes.len() / 2]).unwrap();
    wait_until("version 3's new files to fail to load", || {
        status(&server).iter().any(|v| {
            v["version"] == "3"
                && v["status"]["error_message"]
                    .as_str()
                    .is_some_and(|m| m.contains("cannot load"))
        })
    });
    assert_eq!(served_version(&server).as_deref(), Some("1"));

    // Fixing version 2's files makes it load (v3 is still broken, so v2 is the newest good one).
    std::fs::write(base.join("2/model.onnx"), &bytes).unwrap();
    wait_for_version(&server, "2");

    // Deleting versions falls back to the newest remaining good one.
    std::fs::remove_dir_all(base.join("3")).unwrap();
    std::fs::remove_dir_all(base.join("2")).unwrap();
    wait_for_version(&server, "1");
    let versions: Vec<String> = status(&server)
        .iter()
        .map(|s| s["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions, ["1"], "deleted versions left the status list");
}

#[test]
fn sigterm_during_load_finishes_in_flight_requests() {
    let mut server = Server::start(&["--file-system-poll-wait-seconds", "0"]);
    let addr = server.addr.clone();
    let counts = Arc::new(Mutex::new((0usize, 0usize, Vec::<String>::new())));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, counts) = (addr.clone(), counts.clone());
            std::thread::spawn(move || {
                let body = json!({"instances": vec![census_instance(); 50]}).to_string();
                loop {
                    match http(
                        &addr,
                        "POST",
                        "/v1/projects/p/models/census:predict",
                        &[],
                        body.as_bytes(),
                    ) {
                        Ok((200, text)) => {
                            let v: Value =
                                serde_json::from_str(&text).expect("complete JSON answer");
                            assert_eq!(v["predictions"].as_array().unwrap().len(), 50);
                            counts.lock().unwrap().0 += 1;
                        }
                        Ok((status, text)) => {
                            counts.lock().unwrap().2.push(format!("{status} {text}"))
                        }
                        // Refused, reset before a single response byte, or a broken pipe while
                        // the request was still being written (the reset came before the body
                        // was sent): the connection was still in the kernel's accept queue when
                        // the listener closed, so the server never saw a whole request.
                        // Everything it accepted must complete.
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::ConnectionReset
                                    | std::io::ErrorKind::BrokenPipe
                            ) =>
                        {
                            counts.lock().unwrap().1 += 1;
                            return;
                        }
                        Err(e) => counts.lock().unwrap().2.push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    // SIGTERM once the clients are in full swing.
    wait_until("the clients' first answers", || {
        counts.lock().unwrap().0 >= 8
    });
    let exit = server.terminate();
    for c in clients {
        c.join().unwrap();
    }
    assert!(exit.success(), "exit status {exit:?}");
    let (ok, unaccepted, lost) = &*counts.lock().unwrap();
    eprintln!(
        "{ok} requests answered, {unaccepted} never accepted (reset in the accept queue), {} lost",
        lost.len()
    );
    assert!(*ok > 0);
    assert!(lost.is_empty(), "requests lost during shutdown: {lost:?}");
}

/// The `run-<model>-…` threads of a server process: its session workers.
fn session_worker_threads(server: &Server) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.child.id())).expect("tasks");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("run-census"))
        .count()
}

/// The scheduling policy of each session worker of a server process (`sched_setscheduler`'s
/// numbers, from field 41 of `/proc/<pid>/task/<tid>/stat`: 0 normal, 3 batch).
fn session_worker_policies(server: &Server) -> Vec<i64> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.child.id())).expect("tasks");
    tasks
        .filter_map(|t| {
            let path = t.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            comm.starts_with("run-census")
                .then(|| proc_stat_field(&path.join("stat"), 41))
                .flatten()
        })
        .collect()
}

/// Session workers do not preempt the HTTP threads where they share cores with them
/// (`SCHED_BATCH`, see src/runtime/scheduling.rs), keep the default policy where each thread has a
/// core, and `--worker-scheduling` overrides either.
#[test]
fn session_workers_take_the_batch_policy_where_threads_outnumber_cores() {
    const NORMAL: i64 = 0;
    const BATCH: i64 = 3;
    let pinned = |extra: &[&str]| {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", "0", env!("CARGO_BIN_EXE_mlengine"), "serve"])
            .args(LOOPBACK_ANY_PORT)
            .args(["--model-base-path", "models/census/export/Servo"])
            .args(extra);
        cmd
    };
    let expect = |server: &Server, policy: i64, workers: usize| {
        wait_until(&format!("{workers} workers under policy {policy}"), || {
            session_worker_policies(server) == vec![policy; workers]
        });
    };
    // One core for an HTTP thread and a worker: batch.
    let server = Server::spawn(pinned(&[]));
    expect(&server, BATCH, 1);
    let (code, body) = server.post_json(
        "/v1/models/census:predict",
        &json!({"instances": [census_instance()]}),
    );
    assert_eq!(code, 200, "{body}");
    drop(server);
    let mut cmd = pinned(&[]);
    cmd.env("MLENGINE_WORKER_SCHEDULING", "normal");
    let server = Server::spawn(cmd);
    expect(&server, NORMAL, 1);
    drop(server);
    // Unpinned: the rule applied to every core this test may use (normal from two cores up).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan = mlengine::server::threads::ThreadPlan::for_cores(cores);
    let derived = match plan.worker_scheduling() {
        mlengine::runtime::scheduling::WorkerScheduling::Batch => BATCH,
        mlengine::runtime::scheduling::WorkerScheduling::Normal => NORMAL,
    };
    let args = ["--model-base-path", "models/census/export/Servo"];
    let server = Server::start(&args);
    expect(&server, derived, plan.workers);
    drop(server);
    // More workers than the cores leave room for: batch.
    let workers = cores.to_string();
    let server = Server::start(&[&args[..], &["--workers", &workers]].concat());
    expect(&server, BATCH, cores);
    drop(server);
    let server = Server::start(&[&args[..], &["--worker-scheduling", "batch"]].concat());
    expect(&server, BATCH, plan.workers);
    drop(server);
    let mut cmd = Server::command(&args);
    cmd.args(["--worker-scheduling", "fifo"]);
    assert_usage_error(&run(&mut cmd), "fifo");
}

#[test]
fn thread_defaults_follow_the_cores_the_process_may_use() {
    let threads = |server: &Server| {
        ["cores", "http", "session_workers", "intra_op"]
            .map(|kind| metric(server, &format!("mlengine_threads{{kind=\"{kind}\"}}")) as usize)
    };
    // Pinned to one CPU (as taskset, a cpuset or a CPU quota of 1 would): one thread of each.
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0", env!("CARGO_BIN_EXE_mlengine"), "serve"])
        .args(LOOPBACK_ANY_PORT)
        .args(["--model-base-path", "models/census/export/Servo"]);
    let pinned = Server::spawn(cmd);
    assert_eq!(threads(&pinned), [1, 1, 1, 1]);
    assert_eq!(session_worker_threads(&pinned), 1);
    drop(pinned);
    // Unpinned: the rule applied to every core this test may use.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan = mlengine::server::threads::ThreadPlan::for_cores(cores);
    let server = Server::start(&["--model-base-path", "models/census/export/Servo"]);
    assert_eq!(threads(&server), [cores, plan.http, plan.workers, 1]);
    assert_eq!(session_worker_threads(&server), plan.workers);
    drop(server);
    // Flags (and their environment variables) override the derived counts.
    let mut cmd = Server::command(&["--model-base-path", "models/census/export/Servo"]);
    cmd.args(["--workers", "3"])
        .env("MLENGINE_HTTP_THREADS", "2");
    let server = Server::spawn(cmd);
    assert_eq!(threads(&server), [cores, 2, 3, 1]);
    assert_eq!(session_worker_threads(&server), 3);
}

/// `--cpu-latency-us` holds the kernel's CPU wake-up latency request while the server runs, and
/// the kernel drops it however the server ends, SIGKILL included (src/server/cpu_latency.rs).
/// Where the request cannot be made (no device, not root), the server does not start, with one
/// line naming the flag.
#[test]
fn the_cpu_latency_bound_is_held_while_serving_and_dropped_with_the_process() {
    use mlengine::server::cpu_latency::{current, DEVICE};
    let args = [
        "--model-base-path",
        "models/census/export/Servo",
        "--cpu-latency-us",
        "0",
    ];
    let writable = std::fs::File::options().write(true).open(DEVICE).is_ok();
    if !writable {
        let mut cmd = Server::command(&args);
        assert_one_line_error(&run(&mut cmd), "--cpu-latency-us");
        return;
    }
    // As an unprivileged user (where this tree lets one run the binary): refused in one line.
    let unprivileged = |extra: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_mlengine"))
            .args(extra);
        cmd
    };
    let runs = unprivileged(&["--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        let mut cmd = unprivileged(&["serve"]);
        cmd.args(LOOPBACK_ANY_PORT).args(args);
        assert_one_line_error(&run(&mut cmd), "--cpu-latency-us");
    }
    let before = current().expect("the kernel's bound");
    assert!(
        before > 0,
        "another process holds a bound of 0 µs, so this test cannot see the server's"
    );
    let mut server = Server::start(&args);
    wait_until("the server's bound of 0 µs", || current().ok() == Some(0));
    let (code, body) = server.post_json(
        "/v1/models/census:predict",
        &json!({"instances": [census_instance()]}),
    );
    assert_eq!(code, 200, "{body}");
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("wait");
    wait_until("the bound from before the server", || {
        current().ok() == Some(before)
    });
    let mut cmd = Server::command(&[&args[..2], &["--cpu-latency-us", "-1"]].concat());
    assert_usage_error(&run(&mut cmd), "-1");
}

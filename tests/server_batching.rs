//! Dynamic batching and admission control over real sockets: merged runs answer exactly what
//! single runs answer, a full queue refuses at once, expired and cancelled requests are dropped
//! unrun, a flood of requests leaves memory bounded by the queue, and a lone client's small
//! requests run in place.
//!
//! Most tests use a deliberately slow model whose run time a request chooses (its value is the
//! number of MatMuls run in a loop), to keep the single worker busy while the test queues requests
//! behind it. The busy run's length is calibrated on the machine at the start of each test and
//! lasts seconds, long against every wait in between; each step waits for the state it needs (the
//! queue and in-flight gauges), never for time. Nothing here asserts a duration.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::slow::{busy_value, slow_model};
use common::*;
use mlengine::api::grpc::proto::inference::{
    grpc_inference_service_client::GrpcInferenceServiceClient, infer_parameter::ParameterChoice,
    model_infer_request::InferInputTensor, InferParameter, InferTensorContents, ModelInferRequest,
};
use serde_json::{json, Value};

const SLOW_PREDICT: &str = "/v1/models/slow:predict";
const QUEUED: &str = r#"mlengine_queue_size{model="slow",version="1"}"#;
const INFLIGHT: &str = r#"mlengine_inflight_requests{model="slow",version="1"}"#;
const RUNS: &str = r#"mlengine_batch_size_count{model="slow"}"#;
/// How long the run that keeps the worker busy lasts, in seconds.
const BUSY_SECONDS: f64 = 3.0;

/// A server of the slow model (one worker) and the request value that keeps it busy for about
/// `BUSY_SECONDS` on this machine.
struct Slow {
    server: Server,
    busy: f64,
}

impl std::ops::Deref for Slow {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

fn slow_server(tmp: &std::path::Path, extra: &[&str]) -> Slow {
    let base = tmp.join("slow");
    slow_model(&base.join("1/model.onnx"));
    let mut args = vec![
        "--model-base-path",
        base.to_str().unwrap(),
        "--model-name",
        "slow",
        "--file-system-poll-wait-seconds",
        "0",
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let busy = busy_value(&server, SLOW_PREDICT, BUSY_SECONDS);
    Slow { server, busy }
}

/// Sends a request on a thread; its status is the thread's result.
fn send(server: &Server, x: f64) -> std::thread::JoinHandle<u16> {
    let addr = server.addr.clone();
    std::thread::spawn(move || {
        let body = format!(r#"{{"instances": [{x}]}}"#);
        http(&addr, "POST", SLOW_PREDICT, &[], body.as_bytes())
            .unwrap()
            .0
    })
}

/// A request that keeps the worker busy for seconds, answered on a thread; returns once the
/// worker has taken it (nothing queued, one request in flight).
fn occupy(slow: &Slow) -> std::thread::JoinHandle<u16> {
    let handle = send(slow, slow.busy);
    wait_until("the worker to take the busy request", || {
        metric(slow, INFLIGHT) == 1.0 && metric(slow, QUEUED) == 0.0
    });
    handle
}

#[test]
fn full_queue_refuses_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    // One batch of one request may wait: the queue holds 1 x 1.
    let slow = slow_server(
        tmp.path(),
        &["--max-batch-size", "1", "--max-enqueued-batches", "1"],
    );
    let running = occupy(&slow);
    let queued = send(&slow, 2.0);
    wait_metric(&slow, QUEUED, 1.0);
    let (status, text) = slow.post(SLOW_PREDICT, r#"{"instances": [3.0]}"#);
    assert_eq!(status, 429, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("queue is full"),
        "{text}"
    );
    // gRPC refuses with RESOURCE_EXHAUSTED while the queue is still full.
    let code = rt().block_on(async {
        let mut client = GrpcInferenceServiceClient::new(channel(&slow).await);
        client
            .model_infer(slow_request(4.0))
            .await
            .unwrap_err()
            .code()
    });
    assert_eq!(code, tonic::Code::ResourceExhausted);
    assert_eq!(metric(&slow, QUEUED), 1.0, "refused requests never queue");
    assert_eq!(running.join().unwrap(), 200);
    assert_eq!(queued.join().unwrap(), 200);
    wait_metric(&slow, INFLIGHT, 0.0);
}

fn slow_request(x: f32) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "slow".into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                fp32_contents: vec![x],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn requests_past_their_deadline_are_answered_and_never_run() {
    let tmp = tempfile::tempdir().unwrap();
    let slow = slow_server(tmp.path(), &["--max-batch-size", "1"]);
    let runs_before = metric(&slow, RUNS);
    let running = occupy(&slow);

    // Three requests with a 100 ms deadline, at once, while the worker is busy for seconds.
    // REST: the timeout header.
    let rest = {
        let addr = slow.addr.clone();
        std::thread::spawn(move || {
            http(
                &addr,
                "POST",
                SLOW_PREDICT,
                &[("X-Request-Timeout-Ms", "100")],
                br#"{"instances": [2.0]}"#,
            )
            .unwrap()
        })
    };
    // KServe v2 JSON: Triton's `timeout` parameter, in microseconds.
    let kserve = {
        let addr = slow.addr.clone();
        std::thread::spawn(move || {
            let body = json!({"parameters": {"timeout": 100_000},
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [3.0]}]});
            http(
                &addr,
                "POST",
                "/v2/models/slow/infer",
                &[],
                body.to_string().as_bytes(),
            )
            .unwrap()
        })
    };
    // gRPC: grpc-timeout. tonic's own channel enforces the timeout on the client side (and
    // reports CANCELLED), so the call goes through a plain HTTP/2 client to see the server's
    // answer.
    let status = rt().block_on(async {
        let http2 =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<tonic::body::Body>();
        let origin: tonic::codegen::http::Uri =
            format!("http://{}", slow.grpc_addr).parse().unwrap();
        let mut client = GrpcInferenceServiceClient::with_origin(http2, origin);
        let mut request = tonic::Request::new(slow_request(4.0));
        request
            .metadata_mut()
            .insert("grpc-timeout", "100m".parse().unwrap());
        client.model_infer(request).await.unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("deadline"), "{status:?}");
    // gRPC: Triton's `timeout` request parameter (tritonclient.grpc's `infer(timeout=...)`),
    // in microseconds, as KServe v2 JSON takes it.
    let status = rt().block_on(async {
        let mut client = GrpcInferenceServiceClient::new(channel(&slow).await);
        let mut request = slow_request(6.0);
        request.parameters.insert(
            "timeout".into(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::Int64Param(100_000)),
            },
        );
        client.model_infer(request).await.unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    let (code, text) = rest.join().unwrap();
    assert_eq!(code, 504, "{text}");
    assert!(text.contains("deadline"), "{text}");
    let (code, text) = kserve.join().unwrap();
    assert_eq!(code, 504, "{text}");
    // A malformed timeout is the client's error.
    let (status, text) = http(
        &slow.addr,
        "POST",
        SLOW_PREDICT,
        &[("X-Request-Timeout-Ms", "soon")],
        br#"{"instances": [2.0]}"#,
    )
    .unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("x-request-timeout-ms"), "{text}");

    assert_eq!(running.join().unwrap(), 200);
    // The worker reaches the three expired requests after the busy run and drops them.
    wait_metric(
        &slow,
        r#"mlengine_requests_dropped_total{model="slow",reason="deadline"}"#,
        4.0,
    );
    wait_metric(&slow, INFLIGHT, 0.0);
    assert_eq!(
        metric(&slow, RUNS),
        runs_before + 1.0,
        "only the busy request ran"
    );
    // Timeouts that mean "none": Triton's 0, and more milliseconds than the clock counts.
    let body = json!({"parameters": {"timeout": 0},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [3.0]}]});
    let (status, text) = http(
        &slow.addr,
        "POST",
        "/v2/models/slow/infer",
        &[],
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    // ... and a request with time to spare runs.
    for timeout in ["1e22", "60000"] {
        let (status, text) = http(
            &slow.addr,
            "POST",
            SLOW_PREDICT,
            &[("X-Request-Timeout-Ms", timeout)],
            br#"{"instances": [2.0]}"#,
        )
        .unwrap();
        assert_eq!(status, 200, "{timeout}: {text}");
    }
    assert_eq!(metric(&slow, RUNS), runs_before + 4.0);
}

#[test]
fn requests_whose_client_left_are_dropped_unrun() {
    let tmp = tempfile::tempdir().unwrap();
    let slow = slow_server(tmp.path(), &["--max-batch-size", "1"]);
    let runs_before = metric(&slow, RUNS);
    let running = occupy(&slow);
    // A REST client that gives up: sends its request, waits until it is queued, then closes the
    // connection.
    {
        let body = br#"{"instances": [2.0]}"#;
        let mut stream = std::net::TcpStream::connect(&slow.addr).unwrap();
        write!(
            stream,
            "POST {SLOW_PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(body).unwrap();
        wait_metric(&slow, QUEUED, 1.0);
    }
    // A gRPC client that gives up: the call is dropped (RST_STREAM) once it is queued.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let call = runtime.spawn({
        let grpc = slow.grpc_addr.clone();
        async move {
            let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut client = GrpcInferenceServiceClient::new(channel);
            let _ = client.model_infer(slow_request(3.0)).await;
        }
    });
    wait_metric(&slow, QUEUED, 2.0);
    call.abort();
    let _ = runtime.block_on(call);
    assert_eq!(running.join().unwrap(), 200);
    wait_metric(
        &slow,
        r#"mlengine_requests_dropped_total{model="slow",reason="cancelled"}"#,
        2.0,
    );
    wait_metric(&slow, INFLIGHT, 0.0);
    assert_eq!(
        metric(&slow, RUNS),
        runs_before + 1.0,
        "only the busy request ran"
    );
}

/// Resident set (current, peak) of a process in KiB, from /proc.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_flood_is_refused_with_memory_bounded_by_the_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let slow = slow_server(
        tmp.path(),
        &["--max-batch-size", "4", "--max-enqueued-batches", "2"],
    );
    let server = &slow.server;
    let (before, _) = rss_kib(server.child.id());
    let runs_before = metric(server, RUNS);
    let rows_before = metric(server, r#"mlengine_batch_size_sum{model="slow"}"#);
    // The flood arrives while the worker is busy for seconds: the queue (2 batches of 4) fills,
    // and the requests waiting in it are taken in merged batches afterwards.
    let running = occupy(&slow);
    let statuses: Arc<[AtomicUsize; 600]> = Arc::new(std::array::from_fn(|_| AtomicUsize::new(0)));
    // 64 clients, 10 requests each, of a 64 KiB body (one instance and a padding field).
    let body = Arc::new(json!({"instances": [1.0], "padding": "x".repeat(64 * 1024)}).to_string());
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (addr, statuses, body) = (server.addr.clone(), statuses.clone(), body.clone());
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let status = http(&addr, "POST", SLOW_PREDICT, &[], body.as_bytes())
                        .map_or(599, |(s, _)| s as usize);
                    statuses[status.min(599)].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let count = |s: usize| statuses[s].load(Ordering::Relaxed);
    let total: usize = (0..600).map(count).sum();
    assert_eq!(total, 64 * 10);
    assert_eq!(
        count(200) + count(429),
        total,
        "only answers and refusals: 200 x {}, 429 x {}, other {:?}",
        count(200),
        count(429),
        (0..600)
            .filter(|&s| s != 200 && s != 429 && count(s) > 0)
            .map(|s| (s, count(s)))
            .collect::<Vec<_>>()
    );
    assert!(count(429) > 0, "the flood never filled the queue");
    assert!(count(200) > 0);
    // Queued requests were merged, and their merged answers split back (or they would be 500s).
    assert_eq!(running.join().unwrap(), 200);
    let runs = metric(server, RUNS) - runs_before;
    let rows = metric(server, r#"mlengine_batch_size_sum{model="slow"}"#) - rows_before;
    assert!(
        rows > runs,
        "no run merged several requests: {rows} rows in {runs} runs"
    );
    let (_, peak) = rss_kib(server.child.id());
    // At most 8 queued requests, 4 in the running batch and 64 bodies being read: far below
    // 64 MiB over the resident set before the flood.
    assert!(
        peak < before + 64 * 1024,
        "peak RSS {peak} KiB against {before} KiB before the flood"
    );
    // Still serving.
    let (status, text) = server.post(SLOW_PREDICT, r#"{"instances": [1.0]}"#);
    assert_eq!(status, 200, "{text}");
}

/// Census instances: the UCI test file when present, else the generated fixture.
fn census_instances(tmp: &std::path::Path) -> Vec<Value> {
    let rows = match census_dir() {
        Some(d) => mlengine::census::csv::read_local_files(&[d.join("adult.test")]).unwrap(),
        None => fixture_files(tmp).2,
    };
    mlengine::census::fixture::to_json_instances(&rows)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every request's answer text, sent from 16 threads at once.
fn answers(server: &Server, requests: &[String]) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(requests.to_vec());
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (addr, next, requests) = (server.addr.clone(), next.clone(), requests.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = requests.get(i) else {
                        return out;
                    };
                    let (status, text) = http(
                        &addr,
                        "POST",
                        "/v1/models/census:predict",
                        &[],
                        body.as_bytes(),
                    )
                    .unwrap();
                    assert_eq!(status, 200, "{text}");
                    out.push((i, text));
                }
            })
        })
        .collect();
    let mut all: Vec<(usize, String)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    all.into_iter().map(|(_, text)| text).collect()
}

#[test]
fn batched_answers_equal_unbatched_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let instances = census_instances(tmp.path());
    // Requests of one to three instances.
    let mut requests = Vec::new();
    let mut i = 0;
    while i < instances.len() {
        let n = 1 + requests.len() % 3;
        let end = (i + n).min(instances.len());
        requests.push(json!({"instances": &instances[i..end]}).to_string());
        i = end;
    }
    let model = bundled_version();
    let base = model.parent().unwrap().to_str().unwrap();
    let alone = Server::start(&[
        "--model-base-path",
        base,
        "--file-system-poll-wait-seconds",
        "0",
        "--max-batch-size",
        "1",
        "--max-enqueued-batches",
        "256",
    ]);
    let merged = Server::start(&[
        "--model-base-path",
        base,
        "--file-system-poll-wait-seconds",
        "0",
        "--max-batch-size",
        "64",
        "--batch-timeout-micros",
        "2000",
    ]);
    let a = answers(&alone, &requests);
    let b = answers(&merged, &requests);
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "request {k}: batched answer differs from unbatched");
    }
    let rows_per_run = |s: &Server| {
        metric(s, r#"mlengine_batch_size_sum{model="census"}"#)
            / metric(s, r#"mlengine_batch_size_count{model="census"}"#)
    };
    // Unbatched: each request ran alone (2 rows on average).
    assert!(
        rows_per_run(&alone) <= 2.0 + 1e-9,
        "{}",
        rows_per_run(&alone)
    );
    // Batched: requests were merged, or the comparison above proved nothing.
    assert!(
        rows_per_run(&merged) > 4.0,
        "requests were not merged: {} rows per run",
        rows_per_run(&merged)
    );
    eprintln!(
        "{} requests; rows per run: {:.2} unbatched, {:.2} batched",
        requests.len(),
        rows_per_run(&alone),
        rows_per_run(&merged)
    );
}

/// With the server to itself (one HTTP/1.1 connection, nothing else in flight), a small request
/// runs on the thread that received it once the version's small runs have proven quick; a second
/// connection, REST or gRPC, sends requests to the worker again, and closing it brings runs in
/// place back. Every run counts as quick here (a minute), so the test never depends on this
/// machine's speed; the answers are the same either way.
#[test]
fn the_only_connection_runs_small_requests_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, here) = in_place_server();
    let instances = census_instances(tmp.path());
    let body = json!({"instances": &instances[..2]}).to_string();
    let answer = |client: &mut KeepAlive| {
        let (status, text) = client.post("/v1/models/census:predict", &body);
        assert_eq!(status, 200, "{text}");
        text
    };
    let mut only = KeepAlive::connect(&server.addr);
    let reference = answer(&mut only);
    for _ in 1..20 {
        assert_eq!(answer(&mut only), reference);
    }
    // The first eight small runs (the warm-up's among them) prove the model quick on the worker,
    // so at most 13 ran in place; a few more may have gone to the worker while the server had
    // not yet counted the start-up's readiness connection closed.
    let in_place = metric(&server, &here);
    assert!(
        (6.0..=13.0).contains(&in_place),
        "{in_place} of 20 requests ran in place"
    );
    eprintln!("{in_place} of 20 requests ran in place");
    assert_eq!(
        metric(&server, r#"mlengine_batch_size_count{model="census"}"#),
        20.0,
        "every run is counted once, wherever it ran"
    );

    // Ten requests on `only` while another connection is open: none may run in place.
    let none_in_place_beside = |what: &str, only: &mut KeepAlive| {
        let before = metric(&server, &here);
        for _ in 0..10 {
            assert_eq!(answer(only), reference);
        }
        assert_eq!(metric(&server, &here), before, "ran in place beside {what}");
        before
    };

    // A second HTTP/1.1 connection, accepted (it has had an answer) and kept open.
    let mut other = KeepAlive::connect(&server.addr);
    assert_eq!(answer(&mut other), reference);
    let before = none_in_place_beside("another connection", &mut only);
    drop(other);
    wait_until("requests to run in place again", || {
        assert_eq!(answer(&mut only), reference);
        metric(&server, &here) > before
    });

    // A gRPC connection, which may carry many calls at once.
    let rt = rt();
    let _grpc = rt.block_on(async {
        let mut client = GrpcInferenceServiceClient::new(channel(&server).await);
        client
            .server_live(mlengine::api::grpc::proto::inference::ServerLiveRequest {})
            .await
            .unwrap();
        client
    });
    none_in_place_beside("a gRPC connection", &mut only);
}

#[test]
fn sigterm_finishes_queued_grpc_calls_before_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut slow = slow_server(tmp.path(), &["--max-batch-size", "1"]);
    let running = occupy(&slow);
    // A KServe call and a TF Serving call, each on its own connection, queued behind the busy
    // run when SIGTERM arrives: both must be answered in full before the server exits.
    let grpc_addr = slow.grpc_addr.clone();
    let calls = std::thread::spawn(move || {
        rt().block_on(async move {
            let connect = || async {
                tonic::transport::Channel::from_shared(format!("http://{grpc_addr}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap()
            };
            let mut first = GrpcInferenceServiceClient::new(connect().await);
            let mut second = GrpcInferenceServiceClient::new(connect().await);
            let (a, b) = tokio::join!(
                first.model_infer(slow_request(2.0)),
                second.model_infer(slow_request(3.0))
            );
            [a, b].map(|answer| {
                answer.map(|r| {
                    let r = r.into_inner();
                    (r.model_name, r.outputs.len())
                })
            })
        })
    });
    wait_metric(&slow, QUEUED, 2.0);
    let exit = slow.server.terminate();
    assert!(exit.success(), "exit status {exit:?}");
    assert_eq!(running.join().unwrap(), 200);
    for answer in calls.join().unwrap() {
        let (model, outputs) = answer.expect("a queued gRPC call is answered during the drain");
        assert_eq!(model, "slow");
        assert_eq!(outputs, 1);
    }
}

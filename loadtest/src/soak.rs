//! The soak: a server under steady mixed load for a long time (REST and gRPC, good requests and
//! bad ones), a new version published every so often, its memory sampled throughout. It reports
//! per minute: good requests, their p99, good requests that failed (the goal: none), bad requests
//! answered with anything but a client error, and the server's resident memory over time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::client::{connect, Conn, Outcome, Protocol, Target};
use crate::data::{build_bodies, grpc_frame, Row};
use crate::proto::tensorflow::serving::{ModelSpec, PredictRequest};
use crate::proto::tensorflow::{tensor_shape_proto::Dim, DataType, TensorProto, TensorShapeProto};
use crate::result::new_histogram;
use crate::rss::tree_rss_mib;

pub struct SoakConfig {
    pub rest: String,
    pub grpc: String,
    pub model: String,
    pub rows: Vec<Row>,
    pub duration: Duration,
    /// Closed-loop connections per good stream (REST, gRPC); one more each sends bad requests.
    pub connections: usize,
    /// Publishes a copy of `publish_from` under `publish_to` every `publish_every`, the first
    /// after half an interval, so that the first swap is part of the warm-up minute that the
    /// memory goal leaves out.
    pub publish_from: Option<PathBuf>,
    pub publish_to: Option<PathBuf>,
    pub publish_every: Duration,
    pub pids: Vec<u32>,
}

/// One stream's minute.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct StreamMinute {
    pub requests: u64,
    /// Good requests: any answer but success. Bad requests: any answer but a client error.
    pub wrong: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Up to five distinct wrong answers, for the report.
    pub examples: Vec<String>,
}

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Minute {
    pub minute: u64,
    pub rest: StreamMinute,
    pub grpc: StreamMinute,
    pub bad_rest: StreamMinute,
    pub bad_grpc: StreamMinute,
    pub rss_mib: f64,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Publish {
    pub at_s: f64,
    pub version: u64,
    /// Seconds until the server reported it AVAILABLE; None if it never did.
    pub available_after_s: Option<f64>,
}

#[derive(Serialize, Deserialize)]
pub struct SoakResult {
    pub duration_s: f64,
    pub connections: usize,
    pub minutes: Vec<Minute>,
    /// (seconds, MiB) every 5 s.
    pub rss: Vec<(f64, f64)>,
    pub publishes: Vec<Publish>,
}

/// Between two bad requests of one connection: about 200 a second per stream.
const BAD_PAUSE: Duration = Duration::from_millis(5);

#[derive(Clone, Copy)]
enum Stream {
    Rest,
    Grpc,
    BadRest,
    BadGrpc,
}

struct Bucket {
    requests: u64,
    wrong: u64,
    histogram: Histogram<u64>,
    examples: Vec<String>,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            requests: 0,
            wrong: 0,
            histogram: new_histogram(),
            examples: Vec::new(),
        }
    }

    fn summary(&self) -> StreamMinute {
        let h = &self.histogram;
        let at = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        StreamMinute {
            requests: self.requests,
            wrong: self.wrong,
            p50_us: at(0.5),
            p99_us: at(0.99),
            max_us: if h.is_empty() { 0 } else { h.max() },
            examples: self.examples.clone(),
        }
    }
}

/// Per minute, per stream.
type Buckets = Mutex<Vec<[Bucket; 4]>>;

fn record(buckets: &Buckets, minute: usize, stream: Stream, us: u64, wrong: Option<String>) {
    let Ok(mut b) = buckets.lock() else { return };
    while b.len() <= minute {
        b.push([Bucket::new(), Bucket::new(), Bucket::new(), Bucket::new()]);
    }
    let bucket = &mut b[minute][stream as usize];
    bucket.requests += 1;
    let _ = bucket.histogram.record(us.max(1));
    if let Some(w) = wrong {
        bucket.wrong += 1;
        if bucket.examples.len() < 5 && !bucket.examples.contains(&w) {
            bucket.examples.push(w);
        }
    }
}

/// Whether an answer is what the stream expects; the wrong answer's name otherwise.
fn judge(stream: Stream, outcome: &Outcome) -> Option<String> {
    let client_error =
        |s: &str| s.starts_with("http 4") || s.starts_with("grpc 3 ") || s.starts_with("grpc 5 ");
    match (stream, outcome) {
        (Stream::Rest | Stream::Grpc, Outcome::Ok) => None,
        (Stream::BadRest | Stream::BadGrpc, Outcome::Failed(s)) if client_error(s) => None,
        (_, Outcome::Ok) => Some("success for a bad request".into()),
        (_, Outcome::Rejected) => Some("rejected (overload)".into()),
        (_, Outcome::Failed(s)) => Some(s.clone()),
        (_, Outcome::Transport(s)) => Some(format!("transport: {s}")),
    }
}

/// Bad requests: each must get a client error naming what is wrong, and cost nothing else.
fn bad_rest_bodies() -> Vec<Bytes> {
    [
        r#"{"instances": [{"age": "twenty-five"}]}"#,
        r#"{"instances": [{"age": 25, "workclass": 7}]}"#,
        r#"{"instances": "#,
        r#"{"instances": [], "inputs": {}}"#,
        r#"{"signature_name": "nope", "instances": [{"age": 1}]}"#,
        "\u{feff}not json at all",
    ]
    .iter()
    .map(|s| Bytes::from(s.to_string()))
    .collect()
}

fn bad_grpc_bodies(model: &str) -> Vec<Bytes> {
    let shape = |d: i64| {
        Some(TensorShapeProto {
            dim: vec![Dim {
                size: d,
                name: String::new(),
            }],
            ..Default::default()
        })
    };
    let spec = Some(ModelSpec {
        name: model.into(),
        ..Default::default()
    });
    let request = |name: &str, tensor: TensorProto| PredictRequest {
        model_spec: spec.clone(),
        inputs: [(name.to_string(), tensor)].into_iter().collect(),
        ..Default::default()
    };
    [
        request(
            "age",
            TensorProto {
                dtype: DataType::DtString as i32,
                tensor_shape: shape(1),
                string_val: vec![b"x".to_vec()],
                ..Default::default()
            },
        ),
        request(
            "age",
            TensorProto {
                dtype: DataType::DtInt64 as i32,
                tensor_shape: shape(1 << 40),
                int64_val: vec![1],
                ..Default::default()
            },
        ),
        request(
            "nosuch",
            TensorProto {
                dtype: DataType::DtFloat as i32,
                tensor_shape: shape(1),
                float_val: vec![1.0],
                ..Default::default()
            },
        ),
    ]
    .iter()
    .map(grpc_frame)
    .collect()
}

async fn client(
    target: Target,
    bodies: Arc<Vec<Bytes>>,
    stream: Stream,
    first: usize,
    start: Instant,
    end: Instant,
    buckets: Arc<Buckets>,
) {
    let mut conn: Option<Conn> = None;
    let mut i = first;
    while Instant::now() < end {
        if conn.is_none() {
            match connect(&target).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    let minute = (start.elapsed().as_secs() / 60) as usize;
                    record(&buckets, minute, stream, 0, Some(format!("connect: {e}")));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let body = bodies[i % bodies.len()].clone();
        i += 1;
        let sent = Instant::now();
        let outcome =
            match tokio::time::timeout(Duration::from_secs(30), c.send(&target, body)).await {
                Ok(o) => o,
                Err(_) => Outcome::Transport("timed out".into()),
            };
        let us = sent.elapsed().as_micros() as u64;
        if matches!(outcome, Outcome::Transport(_)) {
            conn = None;
        }
        let minute = (sent.duration_since(start).as_secs() / 60) as usize;
        record(&buckets, minute, stream, us, judge(stream, &outcome));
        if matches!(stream, Stream::BadRest | Stream::BadGrpc) {
            // Bad requests are a steady trickle beside the good load, not half of it.
            tokio::time::sleep(BAD_PAUSE).await;
        }
    }
}

/// The highest version number under a base path.
fn latest_version(base: &Path) -> u64 {
    std::fs::read_dir(base)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Copies the version folder in under the next number: written beside, then renamed, so the
/// server never sees half a version. Versions more than three behind are removed.
fn publish(from: &Path, base: &Path) -> Result<u64> {
    let version = latest_version(base) + 1;
    let staging = base.join(format!(".staging-{version}"));
    copy_dir(from, &staging)?;
    std::fs::rename(&staging, base.join(version.to_string()))?;
    for old in 1..version.saturating_sub(3) {
        let _ = std::fs::remove_dir_all(base.join(old.to_string()));
    }
    Ok(version)
}

/// Whether TF Serving's REST model status lists `version` as AVAILABLE.
async fn available(rest: &str, model: &str, version: u64) -> bool {
    let Ok(target) = Target::new(rest, Protocol::Cloudml, &format!("/v1/models/{model}")) else {
        return false;
    };
    let Ok(text) = crate::client::get_text(&target).await else {
        return false;
    };
    let Ok(status) = serde_json::from_str::<Value>(&text) else {
        return false;
    };
    status["model_version_status"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["version"] == json!(version.to_string()) && v["state"] == "AVAILABLE")
}

pub async fn soak(cfg: SoakConfig) -> Result<SoakResult> {
    if cfg.rows.is_empty() {
        bail!("no census rows to send");
    }
    let rest_path = Protocol::Cloudml.default_path(&cfg.model);
    let grpc_path = Protocol::GrpcTfserving.default_path(&cfg.model);
    let rest = Target::new(&cfg.rest, Protocol::Cloudml, &rest_path)?;
    let grpc = Target::new(&cfg.grpc, Protocol::GrpcTfserving, &grpc_path)?;
    let good_rest = Arc::new(build_bodies(Protocol::Cloudml, &cfg.model, &cfg.rows, 1)?);
    let good_grpc = Arc::new(build_bodies(
        Protocol::GrpcTfserving,
        &cfg.model,
        &cfg.rows,
        1,
    )?);
    let bad_rest = Arc::new(bad_rest_bodies());
    let bad_grpc = Arc::new(bad_grpc_bodies(&cfg.model));
    let buckets: Arc<Buckets> = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let end = start + cfg.duration;
    let mut workers = Vec::new();
    for c in 0..cfg.connections.max(1) {
        let first = c * cfg.rows.len() / cfg.connections.max(1);
        for (target, bodies, stream) in [
            (&rest, &good_rest, Stream::Rest),
            (&grpc, &good_grpc, Stream::Grpc),
        ] {
            workers.push(tokio::spawn(client(
                target.clone(),
                Arc::clone(bodies),
                stream,
                first,
                start,
                end,
                Arc::clone(&buckets),
            )));
        }
    }
    for (target, bodies, stream) in [
        (&rest, &bad_rest, Stream::BadRest),
        (&grpc, &bad_grpc, Stream::BadGrpc),
    ] {
        workers.push(tokio::spawn(client(
            target.clone(),
            Arc::clone(bodies),
            stream,
            0,
            start,
            end,
            Arc::clone(&buckets),
        )));
    }

    let mut rss = Vec::new();
    let mut publishes: Vec<Publish> = Vec::new();
    let mut next_sample = start;
    let mut next_publish = start + cfg.publish_every / 2;
    let mut pending: Option<(u64, Instant)> = None;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_sample {
            rss.push((
                now.duration_since(start).as_secs_f64(),
                tree_rss_mib(&cfg.pids),
            ));
            next_sample += Duration::from_secs(5);
        }
        if let (Some(from), Some(to)) = (&cfg.publish_from, &cfg.publish_to) {
            if now >= next_publish {
                let version = publish(from, to).context("cannot publish a version")?;
                publishes.push(Publish {
                    at_s: now.duration_since(start).as_secs_f64(),
                    version,
                    available_after_s: None,
                });
                pending = Some((version, now));
                next_publish += cfg.publish_every;
            }
        }
        if let Some((version, at)) = pending {
            if available(&cfg.rest, &cfg.model, version).await {
                if let Some(p) = publishes.last_mut() {
                    p.available_after_s = Some(at.elapsed().as_secs_f64());
                }
                pending = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for w in workers {
        let _ = w.await;
    }
    let buckets = std::mem::take(
        &mut *buckets
            .lock()
            .map_err(|_| anyhow!("results lock poisoned"))?,
    );
    let minutes = buckets
        .iter()
        .enumerate()
        .map(|(m, b)| {
            let rss_mib = rss
                .iter()
                .rev()
                .find(|(t, _)| *t < (m as f64 + 1.0) * 60.0)
                .map_or(0.0, |(_, v)| *v);
            Minute {
                minute: m as u64,
                rest: b[0].summary(),
                grpc: b[1].summary(),
                bad_rest: b[2].summary(),
                bad_grpc: b[3].summary(),
                rss_mib,
            }
        })
        .collect();
    Ok(SoakResult {
        duration_s: start.elapsed().as_secs_f64(),
        connections: cfg.connections,
        minutes,
        rss,
        publishes,
    })
}

/// How the run measured against the goals.
pub struct Verdict {
    /// Resident memory at the end of the first minute, at the end, and at its peak after it.
    pub base_mib: f64,
    pub end_mib: f64,
    pub peak_mib: f64,
    pub peak_at_s: f64,
    /// The larger of the peak and the end, against the sample at one minute (the goal's measure).
    pub growth_pct: f64,
    /// The end against the sample at one minute, and the slope of a least-squares line through
    /// the samples after the first minute: whether memory keeps rising, apart from transient
    /// peaks.
    pub level_pct: f64,
    pub trend_mib_per_hour: f64,
    pub good: u64,
    pub good_failed: u64,
    pub bad: u64,
    pub bad_misanswered: u64,
}

pub fn verdict(r: &SoakResult) -> Verdict {
    let samples: Vec<(f64, f64)> = r.rss.iter().copied().filter(|(t, _)| *t >= 60.0).collect();
    let base_mib = samples.first().map_or(0.0, |s| s.1);
    let end_mib = samples.last().map_or(0.0, |s| s.1);
    let (peak_at_s, peak_mib) =
        samples
            .iter()
            .copied()
            .fold((0.0, 0.0), |best, s| if s.1 > best.1 { s } else { best });
    let pct = |mib: f64| {
        if base_mib > 0.0 {
            (mib - base_mib) / base_mib * 100.0
        } else {
            0.0
        }
    };
    let sum = |f: &dyn Fn(&Minute) -> u64| r.minutes.iter().map(f).sum::<u64>();
    Verdict {
        base_mib,
        end_mib,
        peak_mib,
        peak_at_s,
        growth_pct: pct(peak_mib.max(end_mib)),
        level_pct: pct(end_mib),
        trend_mib_per_hour: slope(&samples) * 3600.0,
        good: sum(&|m| m.rest.requests + m.grpc.requests),
        good_failed: sum(&|m| m.rest.wrong + m.grpc.wrong),
        bad: sum(&|m| m.bad_rest.requests + m.bad_grpc.requests),
        bad_misanswered: sum(&|m| m.bad_rest.wrong + m.bad_grpc.wrong),
    }
}

/// The least-squares slope of `points` (0 for fewer than two distinct times).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mean = |f: fn(&(f64, f64)) -> f64| points.iter().map(f).sum::<f64>() / n;
    let (mt, mv) = (mean(|p| p.0), mean(|p| p.1));
    let sxx: f64 = points.iter().map(|p| (p.0 - mt).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

/// The resident memory plot and the p99-per-minute plot.
pub fn plots(r: &SoakResult) -> (String, String) {
    let rss: Vec<(f64, f64)> = r.rss.iter().map(|(t, v)| (t / 60.0, *v)).collect();
    let memory = crate::svg::line_plot(
        "Server resident memory (process tree)",
        "minutes",
        "MiB",
        &[("mlengine serve".into(), rss)],
    );
    let p99 = |f: &dyn Fn(&Minute) -> &StreamMinute| -> Vec<(f64, f64)> {
        r.minutes
            .iter()
            .filter(|m| f(m).requests > 0)
            .map(|m| (m.minute as f64 + 1.0, f(m).p99_us as f64 / 1000.0))
            .collect()
    };
    let latency = crate::svg::line_plot(
        "p99 latency of good requests, per minute",
        "minute",
        "ms",
        &[
            ("REST (Cloud ML)".into(), p99(&|m| &m.rest)),
            ("gRPC (TF Serving)".into(), p99(&|m| &m.grpc)),
        ],
    );
    (memory, latency)
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// The Markdown report; `memory_svg` and `latency_svg` are the plots' file names beside it.
pub fn render(r: &SoakResult, machine: &str, memory_svg: &str, latency_svg: &str) -> String {
    let v = verdict(r);
    let yes = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut s = String::new();
    s.push_str("# Soak: steady mixed load with a version published every minute\n\n");
    s.push_str(&format!(
        "{machine}\n\n{:.0} minutes; {} closed-loop connections each for good REST (Cloud ML \
         `:predict`) and good gRPC (TF Serving `Predict`) requests of one census row, and one \
         connection each sending bad requests (wrong types, malformed JSON, an unknown signature, \
         a `[2^40]` shape, an unknown input). Written by `loadtest/soak/run.sh`.\n\n",
        r.duration_s / 60.0,
        r.connections
    ));
    s.push_str(
        "The first version is published after half an interval, inside the first minute, so \
         that the first swap is part of the warm-up; memory growth is the larger of the peak and \
         the end after the first minute, against the sample at one minute.\n\n",
    );
    s.push_str("## Goals\n\n| goal | measured | |\n|---|---|---|\n");
    s.push_str(&format!(
        "| memory grows < 5% after the first minute | {:.1} MiB at 1 min, {:.1} MiB at the end, \
         peak {:.1} MiB: {:+.1}% | {} |\n",
        v.base_mib,
        v.end_mib,
        v.peak_mib,
        v.growth_pct,
        yes(v.growth_pct < 5.0)
    ));
    s.push_str(&format!(
        "| no good request fails | {} of {} failed | {} |\n",
        v.good_failed,
        v.good,
        yes(v.good_failed == 0)
    ));
    s.push_str(&format!(
        "| every bad request gets a client error | {} of {} answered otherwise | {} |\n\n",
        v.bad_misanswered,
        v.bad,
        yes(v.bad_misanswered == 0)
    ));
    s.push_str(&format!(
        "Memory apart from its peak: the end is {:+.1}% of the sample at one minute, and a \
         least-squares line through the samples after the first minute rises {:+.2} MiB per \
         hour. The peak was at {:.1} min.\n\n",
        v.level_pct,
        v.trend_mib_per_hour,
        v.peak_at_s / 60.0
    ));
    let available: Vec<f64> = r
        .publishes
        .iter()
        .filter_map(|p| p.available_after_s)
        .collect();
    let mut sorted = available.clone();
    sorted.sort_by(f64::total_cmp);
    s.push_str(&format!(
        "Versions published: {}; served (AVAILABLE in the model status) {}; time to available: \
         median {:.1} s, max {:.1} s.\n\n",
        r.publishes.len(),
        available.len(),
        sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        sorted.last().copied().unwrap_or(0.0)
    ));
    s.push_str(&format!(
        "![resident memory]({memory_svg})\n\n![p99 per minute]({latency_svg})\n\n"
    ));
    s.push_str(
        "## Per minute\n\n| minute | REST req | REST p50 / p99 / max ms | gRPC req | gRPC p50 / p99 / \
         max ms | good failed | bad req | bad misanswered | RSS MiB |\n|---:|---:|---|---:|---|\
         ---:|---:|---:|---:|\n",
    );
    for m in &r.minutes {
        s.push_str(&format!(
            "| {} | {} | {} / {} / {} | {} | {} / {} / {} | {} | {} | {} | {:.1} |\n",
            m.minute + 1,
            m.rest.requests,
            ms(m.rest.p50_us),
            ms(m.rest.p99_us),
            ms(m.rest.max_us),
            m.grpc.requests,
            ms(m.grpc.p50_us),
            ms(m.grpc.p99_us),
            ms(m.grpc.max_us),
            m.rest.wrong + m.grpc.wrong,
            m.bad_rest.requests + m.bad_grpc.requests,
            m.bad_rest.wrong + m.bad_grpc.wrong,
            m.rss_mib
        ));
    }
    let examples: Vec<String> = r
        .minutes
        .iter()
        .flat_map(|m| {
            let minute = m.minute + 1;
            [&m.rest, &m.grpc, &m.bad_rest, &m.bad_grpc]
                .into_iter()
                .flat_map(move |x| {
                    x.examples
                        .iter()
                        .map(move |e| format!("minute {minute}: {e}"))
                })
        })
        .take(20)
        .collect();
    if !examples.is_empty() {
        s.push_str("\n## Wrong answers (first 20)\n\n");
        for e in examples {
            s.push_str(&format!("- {e}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(m: u64, good: u64, failed: u64) -> Minute {
        let stream = |requests, wrong| StreamMinute {
            requests,
            wrong,
            p50_us: 300,
            p99_us: 2_000,
            max_us: 9_000,
            examples: if wrong > 0 {
                vec!["http 500".into()]
            } else {
                vec![]
            },
        };
        Minute {
            minute: m,
            rest: stream(good, failed),
            grpc: stream(good, 0),
            bad_rest: stream(10, 0),
            bad_grpc: stream(10, 0),
            rss_mib: 50.0,
        }
    }

    #[test]
    fn verdict_measures_growth_after_the_first_minute() {
        let r = SoakResult {
            duration_s: 180.0,
            connections: 2,
            minutes: vec![minute(0, 100, 0), minute(1, 100, 1), minute(2, 100, 0)],
            // Growth inside the first minute does not count; after it, 50 → 53 is 6%.
            rss: vec![
                (0.0, 20.0),
                (30.0, 45.0),
                (60.0, 50.0),
                (120.0, 53.0),
                (175.0, 51.0),
            ],
            publishes: vec![Publish {
                at_s: 60.0,
                version: 2,
                available_after_s: Some(1.5),
            }],
        };
        let v = verdict(&r);
        assert_eq!((v.base_mib, v.peak_mib, v.end_mib), (50.0, 53.0, 51.0));
        assert_eq!(v.peak_at_s, 120.0);
        assert!((v.growth_pct - 6.0).abs() < 1e-9);
        assert!((v.level_pct - 2.0).abs() < 1e-9);
        // Through (60, 50), (120, 53), (175, 51): Sxy / Sxx = 37 / 3970 MiB per second.
        assert!((v.trend_mib_per_hour - 3600.0 * 37.0 / 3970.0).abs() < 1e-9);
        assert_eq!(
            (v.good, v.good_failed, v.bad, v.bad_misanswered),
            (600, 1, 60, 0)
        );
        let md = render(&r, "machine", "m.svg", "l.svg");
        assert!(md.contains("+6.0% | **missed**"), "{md}");
        assert!(
            md.contains("end is +2.0% of the sample at one minute"),
            "{md}"
        );
        assert!(md.contains("rises +33.55 MiB per hour"), "{md}");
        assert!(md.contains("1 of 600 failed | **missed**"), "{md}");
        assert!(md.contains("minute 2: http 500"), "{md}");
        let (memory, latency) = plots(&r);
        assert!(memory.contains("<polyline") && latency.contains("<polyline"));
    }

    #[test]
    fn answers_are_judged_by_stream() {
        assert_eq!(judge(Stream::Rest, &Outcome::Ok), None);
        assert!(judge(Stream::Grpc, &Outcome::Failed("grpc 14 UNAVAILABLE".into())).is_some());
        assert_eq!(
            judge(Stream::BadRest, &Outcome::Failed("http 400".into())),
            None
        );
        assert_eq!(
            judge(
                Stream::BadGrpc,
                &Outcome::Failed("grpc 3 INVALID_ARGUMENT".into())
            ),
            None
        );
        assert!(judge(Stream::BadRest, &Outcome::Ok).is_some());
        assert!(judge(Stream::BadRest, &Outcome::Failed("http 500".into())).is_some());
    }
}

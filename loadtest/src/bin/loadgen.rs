//! `loadgen`: the serving benchmark's load generator (`run`), readiness timer (`wait-ready`),
//! memory probe (`rss`) and report writer (`report`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use hyper::header::HeaderValue;
use hyper::Uri;

use mlengine_loadtest::client::{get_status, parse_target, Protocol, Target};
use mlengine_loadtest::result::{distribution, Latency, RunResult};
use mlengine_loadtest::rss::{parse_pids, tree_rss_mib, Sampler};
use mlengine_loadtest::run::{run, RunConfig};
use mlengine_loadtest::{data, parse_duration, report};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for mlengine's serving benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send census predictions to a server (closed loop, or open loop with --rate) and record
    /// latencies, throughput, errors and the server's memory.
    Run(Box<RunArgs>),
    /// Poll a GET URL until it answers 200; print the milliseconds since --since-epoch-ms (or
    /// since this command started).
    WaitReady(WaitArgs),
    /// Record the resident memory of process trees once (the idle-rss scenario).
    Rss(RssArgs),
    /// Write the Markdown report (and SVG plots) of a results directory.
    Report(ReportArgs),
    /// Write one request body (the first --batch rows; gRPC bodies framed) to a file, for
    /// standard load generators (wrk, h2load) to send as it is.
    Body(BodyArgs),
    /// Steady mixed load (REST and gRPC, good and bad requests) for a long time, publishing a new
    /// version every so often; writes a report of memory, p99 per minute and errors.
    Soak(Box<SoakArgs>),
    /// Write a soak's report and plots again from its soak.json (after the report changes).
    SoakReport(SoakReportArgs),
}

#[derive(Args)]
struct SoakReportArgs {
    /// The folder holding soak.json; the report and plots are written beside it
    #[arg(long)]
    dir: PathBuf,
    /// One line about the machine, for the report
    #[arg(long, default_value = "")]
    machine: String,
}

#[derive(Args)]
struct BodyArgs {
    #[arg(long, value_enum)]
    protocol: Protocol,
    #[arg(long, default_value = "census")]
    model: String,
    #[arg(long, default_value = "../shared/data/census/adult.test")]
    data: PathBuf,
    /// Rows in the request
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct SoakArgs {
    /// http://HOST:PORT of the REST port
    #[arg(long)]
    rest: String,
    /// HOST:PORT of the gRPC port
    #[arg(long)]
    grpc: String,
    #[arg(long, default_value = "census")]
    model: String,
    #[arg(long, default_value = "../shared/data/census/adult.test")]
    data: PathBuf,
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    duration: Duration,
    /// Closed-loop connections for each good stream (REST, gRPC)
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// A version folder to publish copies of
    #[arg(long, requires = "publish_to")]
    publish_from: Option<PathBuf>,
    /// The served base path the copies go to, numbered after the highest there
    #[arg(long, requires = "publish_from")]
    publish_to: Option<PathBuf>,
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    publish_every: Duration,
    /// The server's process (its tree's VmRSS is sampled every 5 s)
    #[arg(long, required = true)]
    pid: Vec<String>,
    /// Tokio worker threads
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// One line about the machine, for the report
    #[arg(long, default_value = "")]
    machine: String,
    /// Folder for soak.json, the report (soak.md) and its plots
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    /// http://HOST:PORT (for gRPC protocols: the gRPC address)
    #[arg(long)]
    target: String,
    #[arg(long, value_enum, default_value = "cloudml")]
    protocol: Protocol,
    /// REST path (default: from --protocol and --model)
    #[arg(long)]
    path: Option<String>,
    #[arg(long, default_value = "census")]
    model: String,
    /// UCI census file whose rows become the requests
    #[arg(long, default_value = "../shared/data/census/adult.test")]
    data: PathBuf,
    /// Instances per request
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Concurrent connections (closed loop: clients; open loop: the pool; default 32 / 64)
    #[arg(long)]
    connections: Option<usize>,
    /// Open loop: requests per second at constant intervals
    #[arg(long)]
    rate: Option<f64>,
    /// Measured window
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Not recorded
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Per request; longer counts as a transport error
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Open loop: most requests waiting for a free connection; arrivals beyond are dropped
    #[arg(long, default_value_t = 10_000)]
    max_outstanding: usize,
    /// Wait for requests in flight after the window, at most this long
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain: Duration,
    /// Tokio worker threads (1: a current-thread runtime)
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Process(es) whose tree's VmRSS is sampled every 100 ms (repeatable or comma list)
    #[arg(long)]
    pid: Vec<String>,
    #[arg(long, default_value = "")]
    label: String,
    #[arg(long, default_value = "adhoc")]
    scenario: String,
    /// Result JSON file
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct WaitArgs {
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Epoch milliseconds to count from (when the server was spawned)
    #[arg(long)]
    since_epoch_ms: Option<u64>,
}

#[derive(Args)]
struct RssArgs {
    #[arg(long, required = true)]
    pid: Vec<String>,
    #[arg(long, default_value = "")]
    label: String,
    #[arg(long, default_value = "idle-rss")]
    scenario: String,
    /// Readiness time to record with it (from wait-ready)
    #[arg(long)]
    ready_ms: Option<f64>,
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct ReportArgs {
    /// Folder of result JSON files (and optional machine.txt, notes.md, ort-bench.json)
    #[arg(long)]
    results: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Where the SVG plots go (default: the results folder)
    #[arg(long)]
    svg_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => cmd_run(*args),
        Command::WaitReady(args) => cmd_wait_ready(args),
        Command::Rss(args) => cmd_rss(args),
        Command::Soak(args) => cmd_soak(*args),
        Command::SoakReport(args) => cmd_soak_report(&args),
        Command::Body(args) => cmd_body(&args),
        Command::Report(args) => {
            let svg_dir = args.svg_dir.unwrap_or_else(|| args.results.clone());
            report::write_report(&args.results, &args.out, &svg_dir).map(|line| println!("{line}"))
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cmd_soak(args: SoakArgs) -> Result<()> {
    use mlengine_loadtest::soak;
    if args.duration.is_zero() || args.publish_every.is_zero() {
        bail!("--duration and --publish-every must be positive");
    }
    let cfg = soak::SoakConfig {
        rest: args.rest,
        grpc: args.grpc,
        model: args.model,
        rows: data::read_rows(&args.data)?,
        duration: args.duration,
        connections: args.connections.max(1),
        publish_from: args.publish_from,
        publish_to: args.publish_to,
        publish_every: args.publish_every,
        pids: parse_pids(&args.pid)?,
    };
    let result = runtime(args.threads)?.block_on(soak::soak(cfg))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let path = args.out.join("soak.json");
    std::fs::write(&path, serde_json::to_string_pretty(&result)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    write_soak_report(&result, &args.out, &args.machine)
}

fn cmd_soak_report(args: &SoakReportArgs) -> Result<()> {
    let path = args.dir.join("soak.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let result: mlengine_loadtest::soak::SoakResult = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a soak result", path.display()))?;
    write_soak_report(&result, &args.dir, &args.machine)
}

/// soak.md and its plots in `dir`, and the verdict as one line on stdout.
fn write_soak_report(
    result: &mlengine_loadtest::soak::SoakResult,
    dir: &std::path::Path,
    machine: &str,
) -> Result<()> {
    use mlengine_loadtest::soak;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    let (memory, latency) = soak::plots(result);
    write("soak-memory.svg", memory)?;
    write("soak-p99.svg", latency)?;
    write(
        "soak.md",
        soak::render(result, machine, "soak-memory.svg", "soak-p99.svg"),
    )?;
    let v = soak::verdict(result);
    println!(
        "soak: {:.0} min, memory {:+.1}% after the first minute ({:.1} -> {:.1} MiB, peak {:.1}; \
         level {:+.1}%, trend {:+.2} MiB/h), {} of {} good requests failed, {} of {} bad \
         requests misanswered, {} versions published",
        result.duration_s / 60.0,
        v.growth_pct,
        v.base_mib,
        v.end_mib,
        v.peak_mib,
        v.level_pct,
        v.trend_mib_per_hour,
        v.good_failed,
        v.good,
        v.bad_misanswered,
        v.bad,
        result.publishes.len()
    );
    Ok(())
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    Ok(rt)
}

fn now_rfc3339ish() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("unix:{secs}")
}

fn write_json(path: &PathBuf, result: &RunResult) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(result)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

fn cmd_run(args: RunArgs) -> Result<()> {
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of requests per second");
        }
    }
    if args.duration.is_zero() {
        bail!("--duration must be positive");
    }
    let connections = args
        .connections
        .unwrap_or(if args.rate.is_some() { 64 } else { 32 });
    if connections == 0 {
        bail!("--connections must be at least 1");
    }
    let pids = parse_pids(&args.pid)?;
    let path = args
        .path
        .clone()
        .unwrap_or_else(|| args.protocol.default_path(&args.model));
    let target = Target::new(&args.target, args.protocol, &path)?;
    let rows = data::read_rows(&args.data)?;
    let bodies = Arc::new(data::build_bodies(
        args.protocol,
        &args.model,
        &rows,
        args.batch,
    )?);
    drop(rows);

    let sampler = (!pids.is_empty()).then(|| Sampler::start(pids.clone()));
    let started_at = now_rfc3339ish();
    let config = RunConfig {
        target,
        bodies,
        connections,
        rate: args.rate,
        warmup: args.warmup,
        duration: args.duration,
        timeout: args.timeout,
        max_outstanding: args.max_outstanding,
        drain: args.drain,
    };
    let output = runtime(args.threads)?.block_on(run(config));
    let rss = sampler.map(Sampler::stop);
    let output = output?;
    let rec = &output.recorder;
    let window = args.duration.as_secs_f64();
    let errors: u64 = rec.errors.values().sum();
    let transport: u64 = rec.transport_errors.values().sum();
    let result = RunResult {
        label: if args.label.is_empty() {
            args.protocol.name().to_string()
        } else {
            args.label.clone()
        },
        scenario: args.scenario.clone(),
        protocol: args.protocol.name().into(),
        target: args.target.clone(),
        path,
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        }
        .into(),
        connections: connections as u64,
        rate: args.rate,
        batch: args.batch as u64,
        threads: args.threads as u64,
        warmup_s: args.warmup.as_secs_f64(),
        duration_s: window,
        requests: rec.ok.len() + rec.rejected.len() + errors + transport,
        ok: rec.ok.len(),
        rejected: rec.rejected.len(),
        errors,
        transport_errors: transport,
        errors_by_kind: rec.errors.clone(),
        transport_errors_by_kind: rec.transport_errors.clone(),
        dropped: output.dropped,
        unfinished: output.unfinished,
        throughput_rps: ((rec.ok.len() as f64 / window) * 10.0).round() / 10.0,
        latency: Latency::of(&rec.ok),
        rejected_latency: Latency::of(&rec.rejected),
        service_latency: args.rate.map(|_| Latency::of(&rec.service)),
        rejected_service_latency: args.rate.map(|_| Latency::of(&rec.rejected_service)),
        percentiles: distribution(&rec.ok),
        rss,
        ready_ms: None,
        started_at,
    };
    println!("{}", result.summary_line());
    if let Some(out) = &args.out {
        write_json(out, &result)?;
    }
    Ok(())
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn cmd_wait_ready(args: WaitArgs) -> Result<()> {
    let start = Instant::now();
    let start_epoch = epoch_ms();
    let (addr, authority) = parse_target(&args.url)?;
    let path_start = args
        .url
        .strip_prefix("http://")
        .unwrap_or(&args.url)
        .find('/');
    let path = match path_start {
        Some(i) => &args.url.strip_prefix("http://").unwrap_or(&args.url)[i..],
        None => "/",
    };
    let uri: Uri = path
        .parse()
        .with_context(|| format!("--url {}: invalid path", args.url))?;
    let host = HeaderValue::from_str(&authority)
        .with_context(|| format!("--url {}: invalid host", args.url))?;
    let rt = runtime(1)?;
    let mut last = String::from("no answer");
    while start.elapsed() < args.timeout {
        match rt.block_on(get_status(addr, &host, &uri)) {
            Ok(200) => {
                let since = args.since_epoch_ms.unwrap_or(start_epoch);
                println!("{}", epoch_ms().saturating_sub(since));
                return Ok(());
            }
            Ok(status) => last = format!("answered {status}"),
            Err(e) => last = e.root_cause().to_string(),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!(
        "{} not ready within {:?} (last: {last})",
        args.url,
        args.timeout
    )
}

fn cmd_rss(args: RssArgs) -> Result<()> {
    let pids = parse_pids(&args.pid)?;
    let mib = (tree_rss_mib(&pids) * 10.0).round() / 10.0;
    if mib == 0.0 {
        bail!("no process {pids:?}");
    }
    let result = RunResult {
        label: args.label.clone(),
        scenario: args.scenario.clone(),
        mode: "idle".into(),
        ready_ms: args.ready_ms,
        rss: Some(mlengine_loadtest::result::Rss {
            pids,
            samples: 1,
            start_mib: mib,
            peak_mib: mib,
            final_mib: mib,
        }),
        started_at: now_rfc3339ish(),
        ..RunResult::default()
    };
    println!(
        "{} idle RSS {mib:.1} MiB{}",
        args.label,
        args.ready_ms
            .map_or(String::new(), |r| format!(", ready after {r:.0} ms"))
    );
    if let Some(out) = &args.out {
        write_json(out, &result)?;
    }
    Ok(())
}

fn cmd_body(args: &BodyArgs) -> Result<()> {
    let rows = data::read_rows(&args.data)?;
    let bodies = data::build_bodies(args.protocol, &args.model, &rows, args.batch)?;
    let Some(first) = bodies.first() else {
        bail!("{} holds no rows", args.data.display());
    };
    std::fs::write(&args.out, first)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(())
}

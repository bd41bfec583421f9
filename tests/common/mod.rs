//! Helpers shared by the integration tests: the built binary, fixture files, the census data
//! when present, and the Python reference environment.
#![allow(dead_code)]

pub mod moto;
pub mod slow;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mlengine::census::{csv::CensusRow, fixture};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mlengine"))
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/data/census` (or `$MLENGINE_CENSUS_DATA`) when it holds the UCI files.
pub fn census_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MLENGINE_CENSUS_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data/census"));
    (dir.join("adult.data").is_file() && dir.join("adult.test").is_file()).then_some(dir)
}

/// Writes the synthetic train and eval files into `dir` (UCI data and test forms).
pub fn fixture_files(dir: &Path) -> (PathBuf, PathBuf, Vec<CensusRow>) {
    let train_rows = fixture::rows(400, 11);
    let eval_rows = fixture::rows(200, 12);
    let train = dir.join("adult.data");
    let eval = dir.join("adult.test");
    std::fs::write(&train, fixture::to_uci_csv(&train_rows, false)).unwrap();
    std::fs::write(&eval, fixture::to_uci_csv(&eval_rows, true)).unwrap();
    (train, eval, eval_rows)
}

/// `mlengine train` on these files into `job_dir`; add the run's other flags.
pub fn train_command(train: &Path, eval: &Path, job_dir: &Path) -> Command {
    let mut cmd = bin();
    cmd.arg("train")
        .arg("--train-files")
        .arg(train)
        .arg("--eval-files")
        .arg(eval)
        .arg("--job-dir")
        .arg(job_dir);
    cmd
}

/// `mlengine tune --config CONFIG --job-dir JOB_DIR EXTRA...`.
pub fn tune(config: &Path, job_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.arg("tune")
        .arg("--config")
        .arg(config)
        .arg("--job-dir")
        .arg(job_dir)
        .args(extra);
    cmd
}

/// A tuning job's `hyperparameter_tuning.json`.
pub fn output_of(job_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(job_dir.join("hyperparameter_tuning.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Its trials.
pub fn trials(job_dir: &Path) -> Vec<serde_json::Value> {
    output_of(job_dir)["trainingOutput"]["trials"]
        .as_array()
        .unwrap()
        .clone()
}

/// An executable `trainer.sh` in `dir` that runs `tests/python/SCRIPT` with `python`, for
/// `mlengine tune --trainer`.
pub fn trainer_script(dir: &Path, python: &Path, script: &str) -> PathBuf {
    let path = dir.join("trainer.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec {} {} \"$@\"\n",
            python.display(),
            root().join("tests/python").join(script).display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Trains on the fixture into `job_dir` and returns the exported version directory.
pub fn train_fixture(job_dir: &Path, data_dir: &Path, extra: &[&str]) -> PathBuf {
    let (train, eval, _) = fixture_files(data_dir);
    let out = run(bin()
        .arg("train")
        .arg("--train-files")
        .arg(&train)
        .arg("--eval-files")
        .arg(&eval)
        .arg("--job-dir")
        .arg(job_dir)
        .args(extra));
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    exported_versions(job_dir)
        .pop()
        .expect("an exported version")
}

/// Version directories under `<job-dir>/export/Servo`, ascending.
pub fn exported_versions(job_dir: &Path) -> Vec<PathBuf> {
    let base = job_dir.join("export").join("Servo");
    let mut out: Vec<PathBuf> = match std::fs::read_dir(&base) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => return vec![],
    };
    out.sort();
    out
}

/// The Python interpreter of a project venv made by `scripts/python-env.sh`.
pub fn python_env(name: &str, requirements: &str) -> PathBuf {
    let out = Command::new(root().join("scripts/python-env.sh"))
        .arg(name)
        .arg(root().join(requirements))
        .output()
        .expect("run scripts/python-env.sh");
    assert!(out.status.success(), "python env {name}: {}", stderr(&out));
    PathBuf::from(stdout(&out).trim())
}

/// Asserts that a failed command printed exactly one non-empty line to stderr.
pub fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        stdout(out)
    );
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err}");
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
}

/// Asserts a usage error as clap words it, whole: exit status 2, `error: ` and what is wrong
/// (naming `needle`), and where the help is.
pub fn assert_usage_error(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "stdout: {}", stdout(out));
    let err = stderr(out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
    assert!(err.contains("--help"), "{err}");
}

/// A command's error, whichever of the two forms it takes: a usage error (clap's whole
/// message, exit status 2) when the needle is one of clap's, otherwise exactly one line.
pub fn assert_error(out: &Output, needle: &str) {
    let clap = [
        "invalid value",
        "unexpected argument",
        "required arguments",
        "unrecognized subcommand",
    ];
    if clap.iter().any(|c| needle.contains(c)) {
        assert_usage_error(out, needle);
    } else {
        assert_one_line_error(out, needle);
    }
}

/// `serve` flags for loopback and ports the system chooses (the bound addresses are printed).
pub const LOOPBACK_ANY_PORT: [&str; 6] = [
    "--host",
    "127.0.0.1",
    "--rest-port",
    "0",
    "--grpc-port",
    "0",
];

/// A running `mlengine serve` on a free loopback port; stopped when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub addr: String,
    pub grpc_addr: String,
}

impl Server {
    /// Starts the server with `args` (plus loopback host and port 0) and waits for its address.
    pub fn start(args: &[&str]) -> Server {
        Server::spawn(Server::command(args))
    }

    /// `mlengine serve` with `args` on loopback ports chosen by the system, not started.
    pub fn command(args: &[&str]) -> Command {
        let mut cmd = bin();
        cmd.arg("serve").args(LOOPBACK_ANY_PORT).args(args);
        cmd
    }

    /// Starts a prepared `mlengine serve` command and waits for its addresses.
    pub fn spawn(mut cmd: Command) -> Server {
        cmd.stderr(std::process::Stdio::inherit());
        Server::spawn_with_stderr(cmd)
    }

    /// Starts the server with `args` (plus loopback host and port 0), its log written to `log`.
    pub fn start_logging_to(args: &[&str], log: &Path) -> Server {
        let mut cmd = Server::command(args);
        cmd.stderr(std::fs::File::create(log).expect("log file"));
        Server::spawn_with_stderr(cmd)
    }

    /// Starts a prepared `mlengine serve` command whose stderr is already directed.
    pub fn spawn_with_stderr(mut cmd: Command) -> Server {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn mlengine serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = std::io::BufReader::new(stdout);
        let mut read = |prefix: &str| {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read address");
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
                .to_string()
        };
        let addr = read("REST listening on ");
        let grpc_addr = read("gRPC listening on ");
        Server {
            child,
            addr,
            grpc_addr,
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait")
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http(&self.addr, "GET", path, &[], b"").expect("GET")
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        http(&self.addr, "POST", path, &[], body.as_bytes()).expect("POST")
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let (status, text) = self.post(path, &body.to_string());
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: {status} {text:?}: {e}"));
        (status, value)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 client (one request per connection), enough for tests that must see every
/// status and body exactly.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let (status, head, body) = http_bytes(addr, method, path, headers, body)?;
    let body = String::from_utf8_lossy(&body);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body.into_owned()
    };
    Ok((status, body))
}

/// One HTTP/1.1 exchange on its own connection: the status, the response's header block and its
/// body as sent (not dechunked, not decoded).
pub fn http_bytes(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // An error before any byte keeps its kind (refused, reset); after a partial answer it
            // is a broken response.
            Err(e) if raw.is_empty() => return Err(e),
            Err(e) => {
                return Err(std::io::Error::other(format!(
                    "response broken after {} bytes: {e}",
                    raw.len()
                )))
            }
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "no HTTP header in {:?}",
                String::from_utf8_lossy(&raw)
            ))
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    Ok((status, head, raw[split + 4..].to_vec()))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The bundled model's version directory.
pub fn bundled_version() -> PathBuf {
    let base = root().join("models/census/export/Servo");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    versions.sort();
    versions.pop().expect("a bundled version")
}

/// Publishes `model.onnx` as version `n` under `base` atomically (copy aside, then rename).
pub fn publish_version(base: &Path, n: u64, model: &Path) {
    let tmp = base.join(format!(".tmp-{n}"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(model, tmp.join("model.onnx")).unwrap();
    std::fs::rename(&tmp, base.join(n.to_string())).unwrap();
}

/// The census sample's prediction instance.
pub fn census_instance() -> serde_json::Value {
    serde_json::json!({"age": 25, "workclass": " Private", "education": " 11th", "education_num": 7,
        "marital_status": " Never-married", "occupation": " Machine-op-inspct", "relationship": " Own-child",
        "race": " Black", "gender": " Male", "capital_gain": 0, "capital_loss": 0, "hours_per_week": 40,
        "native_country": " United-States"})
}

/// Field `n` (numbered from 1, as proc(5) does) of a `/proc/<pid>[/task/<tid>]/stat` file, read
/// past the command's closing parenthesis (a command may hold spaces and parentheses).
pub fn proc_stat_field(stat_file: &Path, n: usize) -> Option<i64> {
    let stat = std::fs::read_to_string(stat_file).ok()?;
    // The fields after the parenthesis start at field 3.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(n.checked_sub(3)?)?
        .parse()
        .ok()
}

/// The bundled census model served with every run counted as quick for runs in place (a
/// minute), so that a test of runs in place never depends on the machine's speed; and the
/// series counting its runs in place.
pub fn in_place_server() -> (Server, String) {
    let model = bundled_version();
    let version = model.file_name().unwrap().to_str().unwrap();
    let server = Server::start(&[
        "--model-base-path",
        model.parent().unwrap().to_str().unwrap(),
        "--file-system-poll-wait-seconds",
        "0",
        "--in-place-max-run-micros",
        "60000000",
    ]);
    let here =
        format!(r#"mlengine_request_thread_runs_total{{model="census",version="{version}"}}"#);
    (server, here)
}

/// Polls `state` until it holds, failing with `what` after a generous bound: tests wait for a
/// state (a metric, a file, a status), never for a stretch of time.
pub fn wait_until(what: &str, mut state: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !state() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A metric's value from the server's exposition text (0 when the series is absent).
pub fn metric(server: &Server, name_and_labels: &str) -> f64 {
    let (_, text) = server.get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until a metric has the value `want`.
pub fn wait_metric(server: &Server, name_and_labels: &str, want: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while metric(server, name_and_labels) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "{name_and_labels} never reached {want}; metrics:\n{}",
            server.get("/metrics").1
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A single-threaded tokio runtime for a test's gRPC client.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A connected gRPC channel to the server's gRPC port.
pub async fn channel(server: &Server) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// One HTTP/1.1 connection kept open across requests (where `http` opens one per request).
pub struct KeepAlive {
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl KeepAlive {
    pub fn connect(addr: &str) -> KeepAlive {
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        KeepAlive {
            reader: std::io::BufReader::new(stream),
        }
    }

    /// POSTs a JSON body and reads the answer (hyper sends small answers with Content-Length).
    pub fn post(&mut self, path: &str, body: &str) -> (u16, String) {
        use std::io::{BufRead, Read, Write};
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .expect("send");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("content-length");
                }
            }
        }
        let mut answer = vec![0; length];
        self.reader.read_exact(&mut answer).expect("body");
        (status, String::from_utf8(answer).expect("UTF-8 body"))
    }
}

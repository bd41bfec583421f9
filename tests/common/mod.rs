//! Helpers shared by the integration tests: the built binary, fixture files, the census data
//! when present, and the Python reference environment.
#![allow(dead_code)]

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

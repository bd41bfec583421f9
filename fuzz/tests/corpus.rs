//! The seeds and every past finding, replayed through the fuzz targets without instrumentation,
//! as part of the test command.

use std::path::{Path, PathBuf};

use mlengine_fuzz::seeds::{same, seeds};
use mlengine_fuzz::TARGETS;

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// `fuzz/seeds/` holds what `seeds()` makes (the fuzz script starts from those files);
/// `MLENGINE_BLESS=1` rewrites them.
#[test]
fn seed_files_are_the_real_requests() {
    for (target, _) in TARGETS {
        let dir = dir("seeds", target);
        let made = seeds(target);
        assert!(!made.is_empty(), "{target} has no seeds");
        if std::env::var_os("MLENGINE_BLESS").is_some() {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &made {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
        let on_disk = files(&dir);
        assert_eq!(
            on_disk.len(),
            made.len(),
            "{}: run with MLENGINE_BLESS=1",
            dir.display()
        );
        for (name, bytes) in &made {
            let file = std::fs::read(dir.join(name)).unwrap_or_default();
            assert!(
                same(target, &file, bytes),
                "{target}/{name} differs: run with MLENGINE_BLESS=1"
            );
        }
    }
}

#[test]
fn seeds_and_findings_replay_without_a_panic() {
    let mut replayed = 0;
    for (target, run) in TARGETS {
        for kind in ["seeds", "regressions"] {
            for file in files(&dir(kind, target)) {
                let bytes = std::fs::read(&file).unwrap();
                let result = std::panic::catch_unwind(|| run(&bytes));
                assert!(result.is_ok(), "{} panicked", file.display());
                replayed += 1;
            }
        }
    }
    assert!(replayed >= TARGETS.len());
}

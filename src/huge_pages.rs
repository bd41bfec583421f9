//! Transparent huge pages, off for the server and on for everything else.
//!
//! In 30-minute soaks the server's memory stepped up 2 MiB (+4%) at fixed times, unrelated to its
//! load, and decayed again: khugepaged collapsing partly used 2 MiB ranges of mimalloc's arena,
//! which mimalloc marks `MADV_HUGEPAGE`, filling up to 511 untouched small pages each. A server of
//! 50 MiB gains nothing from huge pages' TLB reach (throughput did not move measurably without
//! them), so it runs without, in two parts:
//! - mimalloc is built with `no_thp` (Cargo.toml): it never asks for huge pages. It reserves its
//!   arena before `main`, too early for anything here.
//! - `PR_SET_THP_DISABLE` covers the rest of the process on kernels whose THP mode is `always`
//!   (glibc's arenas, ONNX Runtime's memory): `main` turns huge pages off first thing and every
//!   command but `serve` turns them back on (`cmd::run`). The setting survives fork and exec, so
//!   the server's jobs turn them back on too (`control::jobs::command`). On kernels without it,
//!   nothing changes.

/// Before anything is allocated.
pub fn off() {
    set(true);
}

/// For training and the other commands, and in a job's child between fork and exec.
pub fn on() {
    set(false);
}

fn set(disable: bool) {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call on this process's own memory settings; async-signal-safe.
    unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            libc::c_ulong::from(disable),
            0,
            0,
            0,
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = disable;
}

//! Scheduling policies: session workers beside the threads that receive requests, and jobs
//! (src/control/jobs/command.rs) that only take the CPU serving leaves.
//!
//! Linux lets a thread that wakes up preempt the one running on its core. When a session worker
//! shares a core with the HTTP thread that queues its jobs (one usable core, or more threads than
//! cores), the first job of a burst wakes the worker, the worker preempts the HTTP thread at once,
//! and runs the one or few requests queued so far; the HTTP thread reads the rest of the burst
//! only afterwards. Each run then costs its fixed part (ONNX Runtime's per-run work, two context
//! switches) for a handful of rows. `SCHED_BATCH` exempts the worker from wake-up preemption: it
//! runs once the HTTP thread blocks or its time slice ends, with whatever queued meanwhile. Where
//! a core is idle, the worker starts there at once as before, so nothing waits that would not have.
//! Measured on one core with the clients on another (README, "Threads"): 1.2-2× the requests
//! per second, with batches of 30-50 rows instead of 6-14. Where each thread has a core there is
//! nothing to gain, so `serve` picks the policy from its thread plan (src/server/threads.rs).

use std::sync::atomic::{AtomicBool, Ordering};

/// The scheduling policy of session workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerScheduling {
    /// Linux's `SCHED_BATCH`: no wake-up preemption of the threads that receive requests.
    Batch,
    /// The default policy (`SCHED_OTHER`), as any thread gets.
    #[default]
    Normal,
}

impl std::str::FromStr for WorkerScheduling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "batch" => Ok(WorkerScheduling::Batch),
            "normal" => Ok(WorkerScheduling::Normal),
            _ => Err(format!("unknown worker scheduling {s:?}: batch or normal")),
        }
    }
}

/// Sets the calling thread's policy. A sandbox or platform that refuses it leaves the thread as
/// it was: that costs throughput on shared cores, never correctness, so it is reported once per
/// process rather than failing a model's load.
pub fn apply_to_this_thread(policy: WorkerScheduling) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    let kernel = match policy {
        WorkerScheduling::Batch => Policy::Batch,
        WorkerScheduling::Normal => Policy::Other,
    };
    if let Err(e) = set_this_thread(kernel) {
        if !REPORTED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "session workers keep the default scheduling policy ({policy:?} refused: {e})"
            );
        }
    }
}

/// The kernel's policies that need no privilege.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_OTHER`, every thread's default.
    Other,
    /// `SCHED_BATCH`: no wake-up preemption.
    Batch,
    /// `SCHED_IDLE`: only the CPU nothing else wants.
    Idle,
}

/// Sets the calling thread's policy: one system call, so safe between fork and exec.
#[cfg(target_os = "linux")]
pub fn set_this_thread(policy: Policy) -> std::io::Result<()> {
    let policy = match policy {
        Policy::Other => libc::SCHED_OTHER,
        Policy::Batch => libc::SCHED_BATCH,
        Policy::Idle => libc::SCHED_IDLE,
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `param` is a valid sched_param for the call.
    match unsafe { libc::sched_setscheduler(0, policy, &param) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(not(target_os = "linux"))]
pub fn set_this_thread(policy: Policy) -> std::io::Result<()> {
    match policy {
        Policy::Other => Ok(()),
        _ => Err(std::io::Error::other("scheduling policies are Linux's")),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The calling thread's policy as the kernel reports it.
    fn this_thread_policy() -> libc::c_int {
        // SAFETY: pid 0 names the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn a_thread_takes_each_policy_and_back() {
        std::thread::spawn(|| {
            assert_eq!(this_thread_policy(), libc::SCHED_OTHER);
            apply_to_this_thread(WorkerScheduling::Batch);
            assert_eq!(this_thread_policy(), libc::SCHED_BATCH);
            apply_to_this_thread(WorkerScheduling::Normal);
            assert_eq!(this_thread_policy(), libc::SCHED_OTHER);
        })
        .join()
        .expect("the thread ran");
    }

    #[test]
    fn policies_parse_by_name() {
        assert_eq!("batch".parse(), Ok(WorkerScheduling::Batch));
        assert_eq!("NORMAL".parse(), Ok(WorkerScheduling::Normal));
        assert!("fifo".parse::<WorkerScheduling>().is_err());
    }
}

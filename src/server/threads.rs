//! The server's default thread counts, from the cores this process may use.
//!
//! `std::thread::available_parallelism` counts the CPUs in the process's affinity mask (taskset,
//! cpusets) capped by its cgroup CPU quota (v1 or v2: a container's CPU limit), which is what the
//! server can actually run on; the machine's core count is not.
//!
//! A census request costs about twice as much on the HTTP side (accept, parse, encode, answer) as
//! in ONNX Runtime, and a run of a few rows gains nothing from intra-op threads, so the cores are
//! split between tokio threads and session workers with one ONNX Runtime thread each. On one or
//! two cores the split is one of each, as measured (README, "Threads").

use crate::runtime::scheduling::WorkerScheduling;

/// Threads the server starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadPlan {
    /// Cores the counts were derived from.
    pub cores: usize,
    /// Tokio threads answering REST and gRPC.
    pub http: usize,
    /// Session workers per model version.
    pub workers: usize,
    /// ONNX Runtime intra-op threads per session.
    pub intra_op: usize,
}

impl ThreadPlan {
    /// The defaults on `cores` usable cores: two thirds of them (rounded) for HTTP, the rest for
    /// session workers, at least one of each.
    pub fn for_cores(cores: usize) -> Self {
        let cores = cores.max(1);
        let http = ((cores * 2 + 1) / 3).clamp(1, cores.saturating_sub(1).max(1));
        ThreadPlan {
            cores,
            http,
            workers: cores.saturating_sub(http).max(1),
            intra_op: 1,
        }
    }

    /// The defaults for the cores this process may use now.
    pub fn for_this_process() -> Self {
        Self::for_cores(usable_cores())
    }

    /// The session workers' policy unless `--worker-scheduling` says: `SCHED_BATCH` where the
    /// threads that run requests outnumber the cores, so that a worker shares a core with an HTTP
    /// thread and would preempt it (src/runtime/scheduling.rs); the default policy elsewhere. Where
    /// each thread has a core there is no such preemption to avoid, and the measurements with the
    /// clients on the server's two cores disagree from run to run (0.65 to 1.47 of the default
    /// policy's req/s per round; README, "Threads"), so the workers keep every thread's policy.
    pub fn worker_scheduling(&self) -> WorkerScheduling {
        if self.http + self.workers * self.intra_op > self.cores {
            WorkerScheduling::Batch
        } else {
            WorkerScheduling::Normal
        }
    }
}

/// Cores this process may use: its affinity mask capped by its cgroup quota (1 if unknown).
pub fn usable_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(cores: usize) -> (usize, usize, usize) {
        let p = ThreadPlan::for_cores(cores);
        (p.http, p.workers, p.intra_op)
    }

    #[test]
    fn workers_take_the_batch_policy_only_where_threads_outnumber_cores() {
        let policy = |cores, http, workers| {
            ThreadPlan {
                cores,
                http,
                workers,
                intra_op: 1,
            }
            .worker_scheduling()
        };
        assert_eq!(
            ThreadPlan::for_cores(1).worker_scheduling(),
            WorkerScheduling::Batch
        );
        for cores in 2..=64 {
            let plan = ThreadPlan::for_cores(cores);
            assert_eq!(
                plan.worker_scheduling(),
                WorkerScheduling::Normal,
                "{cores}"
            );
        }
        assert_eq!(policy(2, 1, 2), WorkerScheduling::Batch);
        assert_eq!(policy(4, 2, 2), WorkerScheduling::Normal);
    }

    #[test]
    fn one_and_two_cores_keep_one_thread_of_each_kind() {
        assert_eq!(counts(0), (1, 1, 1));
        assert_eq!(counts(1), (1, 1, 1));
        assert_eq!(counts(2), (1, 1, 1));
    }

    #[test]
    fn more_cores_split_two_thirds_to_http_and_never_oversubscribe() {
        assert_eq!(counts(3), (2, 1, 1));
        assert_eq!(counts(4), (3, 1, 1));
        assert_eq!(counts(8), (5, 3, 1));
        assert_eq!(counts(16), (11, 5, 1));
        for cores in 2..=256 {
            let (http, workers, intra) = counts(cores);
            assert_eq!(http + workers * intra, cores, "{cores} cores");
        }
    }
}

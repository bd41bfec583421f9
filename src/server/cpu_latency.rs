//! `--cpu-latency-us`: a Linux PM QoS request that keeps idle CPUs out of sleep states slower to
//! wake from than the bound, held for as long as the server runs.
//!
//! Why: a request on an otherwise quiet server finds its core asleep. On virtual machines without
//! guest halt polling (CI's kind: `haltpoll.guest_halt_poll_ns=0`) every sleep is a VM exit, and
//! the wake-up and the run after it cost more than the server's own work: one connection's p50
//! went from 195-213 µs to 82 µs with idle CPUs polling, the do-nothing floor's from 79-89 to
//! 18 µs, and one ONNX Runtime run after a 100 µs pause from 72-75 to 44-51 µs (README, "One
//! connection and idle CPUs"). It is the request tuned's latency profiles and cyclictest make,
//! and it is opt-in: polling CPUs burn power (or the host's time) while idle, machine-wide.
//!
//! The kernel drops the request when its file closes, so no setting outlives the process,
//! whatever ends it (SIGKILL included).

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The kernel's interface for CPU wake-up latency requests.
pub const DEVICE: &str = "/dev/cpu_dma_latency";

/// The kernel's "no constraint" value, the largest a request may carry.
pub const UNCONSTRAINED_US: u32 = 2_000_000_000;

/// A held request; dropped with the server.
#[derive(Debug)]
pub struct CpuLatency {
    _request: File,
    pub micros: u32,
}

impl CpuLatency {
    /// Asks for wake-up latencies of at most `micros` on every CPU until dropped.
    pub fn hold(micros: u32) -> Result<CpuLatency> {
        hold_at(Path::new(DEVICE), micros)
    }
}

fn hold_at(device: &Path, micros: u32) -> Result<CpuLatency> {
    if micros > UNCONSTRAINED_US {
        bail!("--cpu-latency-us {micros} is above the kernel's largest value, {UNCONSTRAINED_US}");
    }
    let context = || {
        format!(
            "--cpu-latency-us: cannot open {} (Linux only, and it needs root; run without the \
             flag otherwise)",
            device.display()
        )
    };
    let mut request = File::options()
        .write(true)
        .open(device)
        .with_context(context)?;
    // The kernel takes the value as a native 32-bit integer written whole.
    let value = i32::try_from(micros).context("--cpu-latency-us out of range")?;
    request
        .write_all(&value.to_ne_bytes())
        .with_context(context)?;
    Ok(CpuLatency {
        _request: request,
        micros,
    })
}

/// The bound the kernel applies now: the smallest request any process holds.
pub fn current() -> Result<u32> {
    current_at(Path::new(DEVICE))
}

fn current_at(device: &Path) -> Result<u32> {
    let mut raw = [0u8; 4];
    File::open(device)
        .and_then(|mut f| f.read_exact(&mut raw))
        .with_context(|| format!("cannot read {}", device.display()))?;
    u32::try_from(i32::from_ne_bytes(raw)).context("negative CPU latency bound")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_above_the_kernels_range_is_refused_before_anything_opens() {
        let missing = Path::new("/nonexistent/cpu_dma_latency");
        let e = hold_at(missing, UNCONSTRAINED_US + 1).expect_err("out of range");
        assert!(e.to_string().contains("largest value"), "{e}");
        let e = hold_at(missing, 0).expect_err("no device");
        assert!(format!("{e:#}").contains("needs root"), "{e:#}");
    }

    #[test]
    fn the_request_is_written_as_the_kernel_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let device = dir.path().join("cpu_dma_latency");
        std::fs::write(&device, []).expect("stand-in device");
        let held = hold_at(&device, 25).expect("hold");
        assert_eq!(held.micros, 25);
        assert_eq!(current_at(&device).expect("read"), 25);
    }
}

//! `mlengine serve`: builds the server on a runtime of `--http-threads`, prints its addresses and
//! serves until SIGTERM or SIGINT.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::cli::ServeArgs;
use crate::server::Server;

pub fn run(args: &ServeArgs, ort_library: Option<PathBuf>) -> Result<()> {
    without_transparent_huge_pages();
    let config = args.config(ort_library)?;
    let runtime = super::runtime(config.threads.http)?;
    runtime.block_on(async {
        let server = Server::build(config).await?;
        let mut out = std::io::stdout();
        writeln!(out, "REST listening on {}", server.rest_addr()?)?;
        writeln!(out, "gRPC listening on {}", server.grpc_addr()?)?;
        out.flush()?;
        server.run(super::shutdown_signal()).await
    })?;
    // Requests still running past the grace period are not waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// mimalloc asks for transparent huge pages on its arenas, and with the kernel's `madvise` mode
/// khugepaged then collapses them, filling up to 511 untouched small pages each: in 30-minute
/// soaks the server's memory stepped up 2 MiB (+4%) at fixed times, unrelated to the load, and
/// decayed again. A server of 50 MiB gains nothing from huge pages' TLB reach (throughput did not
/// move measurably), so the whole process opts out; job children opt back in
/// (`control::jobs::command`).
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call on this process; it cannot fail in a way that matters (an old
    // kernel without it keeps huge pages, as before).
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

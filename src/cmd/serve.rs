//! `mlengine serve`: builds the server on a runtime of `--http-threads`, prints its addresses and
//! serves until SIGTERM or SIGINT.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::cli::ServeArgs;
use crate::server::Server;

pub fn run(args: &ServeArgs, ort_library: Option<PathBuf>) -> Result<()> {
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

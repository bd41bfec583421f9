//! `mlengine health`: one request to a server's health endpoint, exit 0 on a 200. A container
//! image without a shell or curl (the project's runtime image is built `FROM scratch`) runs this
//! as its health check.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::manage::tls_config;
use crate::cli::health::HealthArgs;

pub fn run(args: &HealthArgs) -> Result<ExitCode> {
    if !(args.timeout_seconds.is_finite() && args.timeout_seconds > 0.0) {
        bail!("--timeout-seconds must be a positive number of seconds");
    }
    if args.ca_cert.is_some() && !args.url.starts_with("https://") {
        bail!("--ca-cert is for an https:// --url");
    }
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs_f64(args.timeout_seconds)))
        .tls_config(tls_config(args.ca_cert.as_deref())?)
        .build()
        .new_agent();
    let response = agent
        .get(&args.url)
        .call()
        .with_context(|| format!("cannot reach {}", args.url))?;
    let status = response.status();
    if status != 200 {
        bail!("{} answered {status}", args.url);
    }
    println!("{}: {status}", args.url);
    Ok(ExitCode::SUCCESS)
}

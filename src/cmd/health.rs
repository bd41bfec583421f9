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
    let url = endpoint(&args.url);
    if args.ca_cert.is_some() && !url.starts_with("https://") {
        bail!("--ca-cert is for an https:// --url");
    }
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs_f64(args.timeout_seconds)))
        .tls_config(tls_config(args.ca_cert.as_deref())?)
        .build()
        .new_agent();
    let response = agent
        .get(&url)
        .call()
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    if status != 200 {
        bail!("{url} answered {status}");
    }
    println!("{url}: {status}");
    Ok(ExitCode::SUCCESS)
}

/// The URL to ask, as the other commands' `--url` reads a server: `http://` when no scheme is
/// given, and readiness when no path is.
fn endpoint(url: &str) -> String {
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    if after_scheme.trim_end_matches('/').contains('/') {
        url
    } else {
        format!("{}/v2/health/ready", url.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn a_bare_server_address_asks_for_readiness_over_http() {
        assert_eq!(
            endpoint("localhost:8080"),
            "http://localhost:8080/v2/health/ready"
        );
        assert_eq!(endpoint("https://h:1/"), "https://h:1/v2/health/ready");
        assert_eq!(
            endpoint("http://h:1/v2/health/live"),
            "http://h:1/v2/health/live"
        );
    }
}

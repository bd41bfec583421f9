//! `mlengine health` flags.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The endpoint to ask; liveness is /v2/health/live.
    #[arg(
        long,
        env = "MLENGINE_HEALTH_URL",
        default_value = "http://127.0.0.1:8080/v2/health/ready"
    )]
    pub url: String,

    /// A CA certificate (PEM) to trust for an https:// URL (a server with --tls-cert).
    #[arg(long, env = "MLENGINE_CA_CERT")]
    pub ca_cert: Option<PathBuf>,

    /// Longest wait for the answer.
    #[arg(long, default_value_t = 3.0)]
    pub timeout_seconds: f64,
}

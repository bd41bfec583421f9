//! What a run records (histograms and counts) and the JSON result it writes.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::Outcome;

/// Latencies are recorded in µs, from 1 µs to 60 s, 3 significant digits.
pub const MAX_LATENCY_US: u64 = 60_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant, valid bounds")
}

/// Counts and histograms of one run's measured window.
pub struct Recorder {
    pub ok: Histogram<u64>,
    pub rejected: Histogram<u64>,
    /// Open loop: actual send → answer (the main histograms count from the intended send time).
    pub service: Histogram<u64>,
    /// Open loop: actual send → answer of rejected requests (how fast the server says no).
    pub rejected_service: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    pub transport_errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            ok: new_histogram(),
            rejected: new_histogram(),
            service: new_histogram(),
            rejected_service: new_histogram(),
            errors: BTreeMap::new(),
            transport_errors: BTreeMap::new(),
        }
    }
}

impl Recorder {
    pub fn record(&mut self, outcome: &Outcome, latency_us: u64, service_us: Option<u64>) {
        let v = latency_us.clamp(1, MAX_LATENCY_US);
        match outcome {
            Outcome::Ok => {
                self.ok.saturating_record(v);
                if let Some(s) = service_us {
                    self.service.saturating_record(s.clamp(1, MAX_LATENCY_US));
                }
            }
            Outcome::Rejected => {
                self.rejected.saturating_record(v);
                if let Some(s) = service_us {
                    self.rejected_service
                        .saturating_record(s.clamp(1, MAX_LATENCY_US));
                }
            }
            Outcome::Failed(key) => *self.errors.entry(key.clone()).or_default() += 1,
            Outcome::Transport(key) => *self.transport_errors.entry(key.clone()).or_default() += 1,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub min_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
            min_us: h.min(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub latency_us: u64,
}

/// Points for a latency-by-percentile plot, evenly spaced on the `1/(1-p)` log scale
/// (ten per decade, up to where the count runs out), then the maximum at 100.
pub fn distribution(h: &Histogram<u64>) -> Vec<PercentilePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    let decades = (h.len() as f64).log10().clamp(0.0, 7.0);
    let steps = (decades * 10.0).floor() as u32;
    let mut points: Vec<PercentilePoint> = (0..=steps)
        .map(|k| {
            let q = 1.0 - 10f64.powf(-(k as f64) / 10.0);
            PercentilePoint {
                percentile: (q * 1e6).round() / 1e4,
                latency_us: h.value_at_quantile(q),
            }
        })
        .collect();
    points.push(PercentilePoint {
        percentile: 100.0,
        latency_us: h.max(),
    });
    points
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rss {
    pub pids: Vec<u32>,
    pub samples: u64,
    pub start_mib: f64,
    pub peak_mib: f64,
    pub final_mib: f64,
}

/// One result file (`--out`). Fields absent in older files read as defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunResult {
    pub label: String,
    pub scenario: String,
    pub protocol: String,
    pub target: String,
    pub path: String,
    /// `closed`, `open` or `idle`.
    pub mode: String,
    pub connections: u64,
    pub rate: Option<f64>,
    pub batch: u64,
    pub threads: u64,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Requests answered or failed in the measured window.
    pub requests: u64,
    pub ok: u64,
    pub rejected: u64,
    pub errors: u64,
    pub transport_errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub transport_errors_by_kind: BTreeMap<String, u64>,
    /// Open loop: arrivals not sent because the outstanding cap was reached.
    pub dropped: u64,
    /// Requests still unanswered when the drain timeout ran out.
    pub unfinished: u64,
    pub throughput_rps: f64,
    pub latency: Latency,
    pub rejected_latency: Latency,
    /// Open loop: actual send → answer of ok requests (no queueing in the generator).
    pub service_latency: Option<Latency>,
    /// Open loop: actual send → answer of rejected requests.
    pub rejected_service_latency: Option<Latency>,
    pub percentiles: Vec<PercentilePoint>,
    pub rss: Option<Rss>,
    pub ready_ms: Option<f64>,
    pub started_at: String,
}

impl RunResult {
    pub fn summary_line(&self) -> String {
        let mut line = format!(
            "{} [{}] {} {}: {:.0} ok/s, p50 {} p90 {} p99 {} p99.9 {} max {} (ok {}, rejected {}, errors {}, transport {}",
            self.label,
            self.scenario,
            self.protocol,
            match self.rate {
                Some(r) => format!("rate {r:.0}/s c{}", self.connections),
                None => format!("c{}", self.connections),
            },
            self.throughput_rps,
            fmt_us(self.latency.p50_us),
            fmt_us(self.latency.p90_us),
            fmt_us(self.latency.p99_us),
            fmt_us(self.latency.p999_us),
            fmt_us(self.latency.max_us),
            self.ok,
            self.rejected,
            self.errors,
            self.transport_errors,
        );
        if self.dropped > 0 || self.unfinished > 0 {
            line.push_str(&format!(
                ", dropped {}, unfinished {}",
                self.dropped, self.unfinished
            ));
        }
        line.push(')');
        if self.rejected > 0 {
            line.push_str(&format!(
                "; rejected p50 {} p99 {}",
                fmt_us(self.rejected_latency.p50_us),
                fmt_us(self.rejected_latency.p99_us)
            ));
        }
        if let Some(rss) = &self.rss {
            line.push_str(&format!(
                "; RSS peak {:.1} MiB final {:.1} MiB",
                rss.peak_mib, rss.final_mib
            ));
        }
        line
    }
}

/// `850µs`, `12.3ms`, `1.20s`.
pub fn fmt_us(us: u64) -> String {
    if us < 1000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_distribution() {
        let mut r = Recorder::default();
        for v in 1..=10_000u64 {
            r.record(&Outcome::Ok, v, None);
        }
        r.record(&Outcome::Rejected, 5, None);
        r.record(&Outcome::Failed("http 500".into()), 5, None);
        let l = Latency::of(&r.ok);
        assert_eq!(l.count, 10_000);
        assert!((4990..=5010).contains(&l.p50_us));
        assert!((9890..=9910).contains(&l.p99_us));
        assert!((10_000..=10_010).contains(&l.max_us));
        assert_eq!(Latency::of(&r.rejected).count, 1);
        assert_eq!(r.errors["http 500"], 1);
        let d = distribution(&r.ok);
        assert_eq!(d.len(), 42);
        assert_eq!(d[0].percentile, 0.0);
        assert_eq!(d[10].percentile, 90.0);
        assert_eq!(d[20].percentile, 99.0);
        assert_eq!(d.last().map(|p| p.latency_us), Some(l.max_us));
        assert!(d.windows(2).all(|w| w[0].latency_us <= w[1].latency_us));
    }

    #[test]
    fn clamps_out_of_range() {
        let mut r = Recorder::default();
        r.record(&Outcome::Ok, 0, None);
        r.record(&Outcome::Ok, u64::MAX, None);
        assert_eq!(r.ok.len(), 2);
        assert!(r.ok.max() >= MAX_LATENCY_US);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_us(850), "850µs");
        assert_eq!(fmt_us(12_345), "12.35ms");
        assert_eq!(fmt_us(1_200_000), "1.20s");
    }
}

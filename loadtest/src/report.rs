//! `loadgen report`: the Markdown report of a results directory, with one SVG plot per scenario.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::result::{fmt_us, RunResult};
use crate::svg;

const ORDER: [&str; 6] = [
    "idle-rss", "http-c32", "http-c1", "grpc-c32", "open-80", "open-200",
];

fn describe(scenario: &str) -> &'static str {
    match scenario {
        "http-c32" => "HTTP JSON, one instance per request, 32 connections, closed loop (each client sends its next request when the previous one is answered).",
        "http-c1" => "HTTP JSON, one instance per request, one connection, closed loop: the latency of an idle server.",
        "grpc-c32" => "gRPC (KServe v2 `ModelInfer`, TF Serving `Predict`), one instance per request, 32 HTTP/2 channels, closed loop.",
        "open-80" => "Open loop at 80% of the server's closed-loop maximum (constant arrivals; latency from the intended send time, so queueing is counted).",
        "open-200" => "Open loop at twice mlengine's maximum: excess must be rejected (429 / RESOURCE_EXHAUSTED) quickly while accepted requests keep a bounded latency and memory stays flat.",
        _ => "",
    }
}

pub fn load_results(dir: &Path) -> Result<Vec<RunResult>> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| p.file_name().is_some_and(|n| n != "ort-bench.json"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let value: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => bail!("{}: not JSON: {e}", path.display()),
        };
        if value.get("scenario").and_then(|s| s.as_str()).is_none() {
            continue; // not a result file
        }
        let result: RunResult = serde_json::from_value(value)
            .with_context(|| format!("{}: not a loadgen result", path.display()))?;
        out.push(result);
    }
    Ok(out)
}

fn rank(label: &str) -> u8 {
    if label.starts_with("mlengine") {
        0
    } else if label.starts_with("floor") {
        1
    } else {
        2
    }
}

fn scenario_rank(s: &str) -> usize {
    ORDER.iter().position(|o| *o == s).unwrap_or(ORDER.len())
}

fn mib(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1} MiB"))
}

fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "–".into()
    }
}

/// The report, and the SVG files (name, content) to write beside it.
pub fn render(
    results: &[RunResult],
    dir: &Path,
    svg_link_prefix: &str,
) -> Result<(String, Vec<(String, String)>)> {
    let mut groups: BTreeMap<(usize, String), Vec<&RunResult>> = BTreeMap::new();
    for r in results {
        groups
            .entry((scenario_rank(&r.scenario), r.scenario.clone()))
            .or_default()
            .push(r);
    }
    for rows in groups.values_mut() {
        rows.sort_by(|a, b| {
            (rank(&a.label), &a.label, &a.protocol).cmp(&(rank(&b.label), &b.label, &b.protocol))
        });
    }
    let mut md = String::new();
    let mut svgs = Vec::new();
    let _ = writeln!(md, "# Serving benchmark: mlengine against peer servers\n");
    let _ = writeln!(
        md,
        "Written by `loadgen report` from the result files in `{}` ({} runs). Servers ran one at a time on the same machine as the load generator; `mlengine*` rows are ours, `floor` is a minimal axum server answering a fixed prediction (the limit of HTTP on this machine), the others are peers. Latencies of successful requests; throughput counts ok answers per second of the measured window; errors = non-200 answers other than 429 plus transport errors; rejected = 429 / RESOURCE_EXHAUSTED; peak RSS is the whole process tree's VmRSS sampled every 100 ms.\n",
        dir.display(),
        results.len()
    );
    if let Ok(machine) = std::fs::read_to_string(dir.join("machine.txt")) {
        let _ = writeln!(md, "## Machine\n\n```text\n{}\n```\n", machine.trim_end());
    }
    if let Ok(notes) = std::fs::read_to_string(dir.join("notes.md")) {
        let _ = writeln!(md, "## Notes\n\n{}\n", notes.trim_end());
    }
    for ((_, scenario), rows) in &groups {
        let _ = writeln!(md, "## {scenario}\n");
        let text = describe(scenario);
        if !text.is_empty() {
            let _ = writeln!(md, "{text}\n");
        }
        if scenario == "idle-rss" {
            let _ = writeln!(
                md,
                "| server | ready after start | idle RSS |\n|---|---:|---:|"
            );
            for r in rows {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} |",
                    r.label,
                    r.ready_ms.map_or("–".into(), |v| format!("{v:.0} ms")),
                    mib(r.rss.as_ref().map(|m| m.final_mib))
                );
            }
            md.push('\n');
            continue;
        }
        let open = rows.iter().any(|r| r.rate.is_some());
        let first = rows[0];
        let _ = writeln!(
            md,
            "Batch {} instance(s) per request, {:.0} s measured after {:.0} s warm-up.\n",
            first.batch, first.duration_s, first.warmup_s
        );
        md.push_str("| server | protocol | ");
        md.push_str(if open { "rate | conns | " } else { "conns | " });
        md.push_str("throughput | p50 | p90 | p99 | p99.9 | max | errors | rejected | ");
        if open {
            md.push_str("rejected p50 | rejected p99 | rejected p99 (send → answer) | dropped | ");
        }
        md.push_str("peak RSS |\n|---|---|");
        md.push_str(if open { "---:|---:|" } else { "---:|" });
        md.push_str("---:|---:|---:|---:|---:|---:|---:|---:|");
        if open {
            md.push_str("---:|---:|---:|---:|");
        }
        md.push_str("---:|\n");
        for r in rows {
            let _ = write!(md, "| {} | {} | ", r.label, r.protocol);
            if open {
                let _ = write!(
                    md,
                    "{} | ",
                    r.rate.map_or("–".into(), |v| format!("{v:.0}/s"))
                );
            }
            let _ = write!(
                md,
                "{} | {:.0}/s | {} | {} | {} | {} | {} | {} | {} | ",
                r.connections,
                r.throughput_rps,
                fmt_us(r.latency.p50_us),
                fmt_us(r.latency.p90_us),
                fmt_us(r.latency.p99_us),
                fmt_us(r.latency.p999_us),
                fmt_us(r.latency.max_us),
                r.errors + r.transport_errors,
                r.rejected
            );
            if open {
                let (p50, p99, service) = if r.rejected > 0 {
                    (
                        fmt_us(r.rejected_latency.p50_us),
                        fmt_us(r.rejected_latency.p99_us),
                        r.rejected_service_latency
                            .as_ref()
                            .map_or("–".into(), |l| fmt_us(l.p99_us)),
                    )
                } else {
                    ("–".into(), "–".into(), "–".into())
                };
                let _ = write!(
                    md,
                    "{p50} | {p99} | {service} | {} | ",
                    r.dropped + r.unfinished
                );
            }
            let _ = writeln!(md, "{} |", mib(r.rss.as_ref().map(|m| m.peak_mib)));
        }
        md.push('\n');
        if open {
            md.push_str("Open-loop latencies count from each request's intended send time, so time spent waiting in the generator for a free connection is included; `rejected p99 (send → answer)` is how fast the server said no. `dropped` counts arrivals not sent because the generator's queue was full (`--max-outstanding`) plus requests unanswered after the drain: when it is not 0, the offered rate was more than server and generator together could take on this machine.\n\n");
        }
        let kinds: Vec<String> = rows
            .iter()
            .filter(|r| !r.errors_by_kind.is_empty() || !r.transport_errors_by_kind.is_empty())
            .map(|r| {
                let all: Vec<String> = r
                    .errors_by_kind
                    .iter()
                    .chain(&r.transport_errors_by_kind)
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect();
                format!("{} ({}): {}", r.label, r.protocol, all.join(", "))
            })
            .collect();
        if !kinds.is_empty() {
            let _ = writeln!(md, "Errors: {}.\n", kinds.join("; "));
        }
        // Ratios: each other server against our row of the same protocol (else our best).
        let ours: Vec<&&RunResult> = rows
            .iter()
            .filter(|r| r.label.starts_with("mlengine"))
            .collect();
        let peers: Vec<&&RunResult> = rows
            .iter()
            .filter(|r| !r.label.starts_with("mlengine"))
            .collect();
        let best = ours
            .iter()
            .max_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps));
        if let Some(best) = best {
            if !peers.is_empty() {
                md.push_str("Ratios, ours / theirs (throughput: higher is better for us; latency and memory: lower is better for us):\n\n| ours | theirs | throughput | p50 | p99 | peak RSS |\n|---|---|---:|---:|---:|---:|\n");
                for p in &peers {
                    let o = ours
                        .iter()
                        .find(|o| o.protocol == p.protocol.trim_end_matches("-2d"))
                        .unwrap_or(best);
                    let rss = |r: &RunResult| r.rss.as_ref().map_or(0.0, |m| m.peak_mib);
                    let _ = writeln!(
                        md,
                        "| {} ({}) | {} ({}) | {} | {} | {} | {} |",
                        o.label,
                        o.protocol,
                        p.label,
                        p.protocol,
                        ratio(o.throughput_rps, p.throughput_rps),
                        ratio(o.latency.p50_us as f64, p.latency.p50_us as f64),
                        ratio(o.latency.p99_us as f64, p.latency.p99_us as f64),
                        ratio(rss(o), rss(p)),
                    );
                }
                md.push('\n');
            }
        }
        let series: Vec<(String, Vec<crate::result::PercentilePoint>)> = rows
            .iter()
            .map(|r| {
                let label = if rows.iter().filter(|o| o.label == r.label).count() > 1 {
                    format!("{} {}", r.label, r.protocol)
                } else {
                    r.label.clone()
                };
                (label, r.percentiles.clone())
            })
            .collect();
        if series.iter().any(|(_, p)| !p.is_empty()) {
            let name = format!("{scenario}.svg");
            let title = format!("{scenario}: latency by percentile");
            svgs.push((name.clone(), svg::latency_plot(&title, &series)));
            let _ = writeln!(
                md,
                "![{scenario} latency by percentile]({svg_link_prefix}{name})\n"
            );
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("ort-bench.json")) {
        let _ = writeln!(
            md,
            "## ONNX Runtime alone\n\n`mlengine bench-ort` (the model in this process, no HTTP), the floor under any server's latency:\n"
        );
        md.push_str(&ort_bench_section(&text));
    }
    Ok((md, svgs))
}

/// A table when the file is a list of flat objects (or an object holding one), else the JSON.
fn ort_bench_section(text: &str) -> String {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return format!("```text\n{}\n```\n\n", text.trim_end()),
    };
    let rows = value.as_array().cloned().or_else(|| {
        value.as_object().and_then(|o| {
            o.values()
                .find_map(|v| v.as_array().filter(|a| a.iter().all(|x| x.is_object())))
                .cloned()
        })
    });
    if let Some(rows) = rows.filter(|r| !r.is_empty() && r.iter().all(|x| x.is_object())) {
        let mut columns: Vec<String> = Vec::new();
        for row in &rows {
            if let Some(o) = row.as_object() {
                for (k, v) in o {
                    if !v.is_object() && !v.is_array() && !columns.contains(k) {
                        columns.push(k.clone());
                    }
                }
            }
        }
        let mut md = format!(
            "| {} |\n|{}\n",
            columns.join(" | "),
            "---:|".repeat(columns.len())
        );
        for row in &rows {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| match row.get(c) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Number(n)) => match n.as_f64() {
                        Some(f) if f.fract() != 0.0 => format!("{f:.3}"),
                        _ => n.to_string(),
                    },
                    Some(v) => v.to_string(),
                    None => String::new(),
                })
                .collect();
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
        md.push('\n');
        return md;
    }
    let pretty = serde_json::to_string_pretty(&value).unwrap_or_else(|_| text.to_string());
    format!("```json\n{pretty}\n```\n\n")
}

/// `loadgen report`: reads DIR, writes OUT and the SVGs into `svg_dir`.
pub fn write_report(dir: &Path, out: &Path, svg_dir: &Path) -> Result<String> {
    let results = load_results(dir)?;
    if results.is_empty() {
        bail!(
            "no result files (JSON with a \"scenario\" field) in {}",
            dir.display()
        );
    }
    let report_dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = relative(report_dir, svg_dir);
    let (md, svgs) = render(&results, dir, &prefix)?;
    std::fs::create_dir_all(svg_dir)
        .with_context(|| format!("cannot create {}", svg_dir.display()))?;
    for (name, content) in &svgs {
        let path = svg_dir.join(name);
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    std::fs::write(out, &md).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(format!(
        "wrote {} ({} runs, {} plots)",
        out.display(),
        results.len(),
        svgs.len()
    ))
}

/// The link prefix from the report's folder to the SVG folder (`serving/`), or an absolute path.
fn relative(from: &Path, to: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (from, to) = (abs(from), abs(to));
    match to.strip_prefix(&from) {
        Ok(rest) if rest.as_os_str().is_empty() => String::new(),
        Ok(rest) => format!("{}/", rest.display()),
        Err(_) => format!("{}/", to.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{Latency, PercentilePoint, Rss};

    fn result(label: &str, scenario: &str, protocol: &str, rps: f64) -> RunResult {
        RunResult {
            label: label.into(),
            scenario: scenario.into(),
            protocol: protocol.into(),
            connections: 32,
            batch: 1,
            duration_s: 10.0,
            warmup_s: 2.0,
            ok: (rps * 10.0) as u64,
            throughput_rps: rps,
            latency: Latency {
                count: 10,
                p50_us: 1000,
                p99_us: 4000,
                ..Latency::default()
            },
            percentiles: vec![
                PercentilePoint {
                    percentile: 0.0,
                    latency_us: 500,
                },
                PercentilePoint {
                    percentile: 100.0,
                    latency_us: 9000,
                },
            ],
            rss: Some(Rss {
                peak_mib: 40.0,
                final_mib: 30.0,
                ..Rss::default()
            }),
            ..RunResult::default()
        }
    }

    #[test]
    fn renders_tables_ratios_and_plots() {
        let mut idle = result("mlengine", "idle-rss", "", 0.0);
        idle.ready_ms = Some(120.0);
        let results = vec![
            result("peer", "http-c32", "kserve", 1000.0),
            result("mlengine-cloudml", "http-c32", "cloudml", 5000.0),
            result("mlengine-kserve", "http-c32", "kserve", 4000.0),
            result("floor", "http-c32", "cloudml", 20000.0),
            idle,
        ];
        let (md, svgs) = render(&results, Path::new("/nonexistent"), "serving/").expect("render");
        assert!(md.find("## idle-rss").expect("idle") < md.find("## http-c32").expect("c32"));
        assert!(md.contains("| mlengine | 120 ms | 30.0 MiB |"));
        assert!(md.contains("| mlengine-kserve (kserve) | peer (kserve) | 4.00x |"));
        assert!(md.contains("| mlengine-cloudml (cloudml) | floor (cloudml) | 0.25x |"));
        assert!(md.contains("](serving/http-c32.svg)"));
        assert_eq!(svgs.len(), 1);
        let mlengine_row = md.find("| mlengine-cloudml | cloudml").expect("row");
        assert!(mlengine_row < md.find("| peer | kserve").expect("peer row"));
    }

    #[test]
    fn ort_bench_as_table() {
        let t = ort_bench_section(
            r#"[{"batch":1,"us_per_batch":12.5},{"batch":8,"us_per_batch":30.25}]"#,
        );
        assert!(t.contains("| batch | us_per_batch |"));
        assert!(t.contains("| 8 | 30.250 |"));
        let t = ort_bench_section(r#"{"results":[{"batch":1}]}"#);
        assert!(t.contains("| batch |"));
        assert!(ort_bench_section("not json").contains("```text"));
    }
}

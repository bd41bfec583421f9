//! Output files as Cloud ML Engine wrote them: `prediction.results-SSSSS-of-NNNNN` (one JSON
//! prediction per line) and `prediction.errors_stats-SSSSS-of-NNNNN` (`('<message>', count)`
//! lines), plus a summary JSON. Everything is written under `_temporary/` first and moved to its
//! final name only when the whole shard is complete, the summary last, so an interrupted run
//! leaves nothing that looks complete.

use std::collections::HashMap;

use anyhow::Result;
use bytes::Bytes;
use object_store::buffered::BufWriter;
use tokio::io::AsyncWriteExt;

use super::lines::Pos;
use crate::storage::remote::Location;

/// How many positions of each error message the summary lists.
const EXAMPLES: usize = 3;

/// One error message's count and where it first happened.
#[derive(Default)]
struct ErrorCount {
    count: u64,
    first: Vec<Pos>,
}

pub const RESULTS: &str = "prediction.results";
pub const ERRORS: &str = "prediction.errors_stats";
pub const SUMMARY: &str = "prediction.summary";

pub fn shard_name(base: &str, index: usize, count: usize) -> String {
    format!("{base}-{index:05}-of-{count:05}")
}

/// The shard count in the name of one of batch prediction's output files
/// (`prediction.results-00001-of-00004`, `prediction.summary-00000-of-00001.json`).
fn shard_count(name: &str) -> Option<usize> {
    let rest = [RESULTS, ERRORS, SUMMARY]
        .iter()
        .find_map(|base| name.strip_prefix(base)?.strip_prefix('-'))?;
    let rest = rest.strip_suffix(".json").unwrap_or(rest);
    let (index, count) = rest.split_once("-of-")?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(index) && digits(count)).then(|| count.parse().ok())?
}

pub struct ShardWriter {
    output: Location,
    temp: Location,
    index: usize,
    count: usize,
    results: BufWriter,
    /// Whether `results` was shut down (after which it cannot be aborted).
    results_closed: bool,
    errors: HashMap<String, ErrorCount>,
    pub predictions: u64,
    pub error_count: u64,
}

impl ShardWriter {
    pub fn new(output: Location, index: usize, count: usize) -> Self {
        let run = format!(
            "{index}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let temp = output.join(&format!("_temporary/{run}"));
        let results_tmp = temp.join(&shard_name(RESULTS, index, count));
        let results = BufWriter::with_capacity(
            std::sync::Arc::clone(&results_tmp.store),
            results_tmp.path.clone(),
            8 << 20,
        );
        ShardWriter {
            output,
            temp,
            index,
            count,
            results,
            results_closed: false,
            errors: HashMap::new(),
            predictions: 0,
            error_count: 0,
        }
    }

    pub async fn write_predictions(&mut self, text: &[u8], rows: u64) -> Result<()> {
        self.results
            .write_all(text)
            .await
            .map_err(|e| crate::storage::remote::write_failed(&self.output.uri, e))?;
        self.predictions += rows;
        Ok(())
    }

    pub fn count_error(&mut self, message: String, at: Pos) {
        let e = self.errors.entry(message).or_default();
        e.count += 1;
        if e.first.len() < EXAMPLES {
            e.first.push(at);
        }
        self.error_count += 1;
    }

    /// Every error message with its count and the positions (`file:line`) of its first few
    /// occurrences, most frequent first.
    pub fn error_stats(&self, position: impl Fn(&Pos) -> String) -> serde_json::Value {
        let mut stats: Vec<(&String, &ErrorCount)> = self.errors.iter().collect();
        stats.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
        stats
            .into_iter()
            .map(|(message, e)| {
                serde_json::json!({
                    "message": message,
                    "count": e.count.to_string(),
                    "firstAt": e.first.iter().map(&position).collect::<Vec<_>>(),
                })
            })
            .collect()
    }

    /// Completes the shard: uploads, then moves results, errors_stats and the summary into place.
    /// On failure (a full disk, a bucket gone) the temporary files are removed.
    pub async fn publish(mut self, summary: serde_json::Value) -> Result<()> {
        let result = self.complete(summary).await;
        if result.is_err() {
            self.abandon().await;
        }
        result
    }

    async fn complete(&mut self, summary: serde_json::Value) -> Result<()> {
        self.results_closed = true;
        self.results
            .shutdown()
            .await
            .map_err(|e| crate::storage::remote::write_failed(&self.output.uri, e))?;
        let mut stats: Vec<(String, u64)> =
            self.errors.drain().map(|(m, e)| (m, e.count)).collect();
        stats.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut text = String::new();
        for (message, count) in stats {
            text.push_str(&format!("({}, {count})\n", python_str(&message)));
        }
        let names = [
            (shard_name(RESULTS, self.index, self.count), None),
            (
                shard_name(ERRORS, self.index, self.count),
                Some(Bytes::from(text)),
            ),
            (
                format!("{}.json", shard_name(SUMMARY, self.index, self.count)),
                Some(Bytes::from(serde_json::to_vec_pretty(&summary)?)),
            ),
        ];
        for (name, bytes) in &names {
            if let Some(bytes) = bytes {
                self.temp.join(name).put(bytes.clone()).await?;
            }
        }
        // A re-run replaces this shard's previous output; the summary goes last.
        for (name, _) in &names {
            self.output.join(name).delete().await?;
        }
        for (name, _) in &names {
            self.temp
                .join(name)
                .rename_to(&self.output.join(name))
                .await?;
        }
        // A run split into another number of shards left files this run's names never meet;
        // they would be read as part of this run's output. Only files directly in the output
        // folder: the listing also holds whatever lies below it (another job's output).
        let base = self.output.uri.trim_end_matches('/').len();
        for o in self.output.list().await? {
            let Some(name) = o
                .location
                .uri
                .get(base..)
                .map(|r| r.trim_start_matches('/'))
            else {
                continue;
            };
            if !name.contains('/') && shard_count(name).is_some_and(|n| n != self.count) {
                o.location.delete().await?;
            }
        }
        self.remove_local_temp_dirs();
        Ok(())
    }

    /// Object stores have no directories; a local file system keeps empty ones behind.
    fn remove_local_temp_dirs(&self) {
        if let Some(dir) = self.temp.local_path() {
            let _ = std::fs::remove_dir(&dir);
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }

    /// Removes the temporary files of a failed run (best effort).
    pub async fn abandon(mut self) {
        // First the results upload in progress: its staging file would outlive the cleanup.
        if !self.results_closed {
            let _ = self.results.abort().await;
        }
        if let Ok(objects) = self.temp.list().await {
            for o in objects {
                let _ = o.location.delete().await;
            }
        }
        self.remove_local_temp_dirs();
    }
}

/// A Python `repr` of a string, as Beam's `WriteToText` wrote the tuples.
pub fn python_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_counts_are_read_from_output_names_only() {
        assert_eq!(shard_count("prediction.results-00001-of-00004"), Some(4));
        assert_eq!(
            shard_count("prediction.errors_stats-00000-of-00001"),
            Some(1)
        );
        assert_eq!(
            shard_count("prediction.summary-00002-of-00003.json"),
            Some(3)
        );
        for other in [
            "prediction.results-1-of-4",
            "prediction.results-00001-of-00004.bak",
            "notes.txt",
            "prediction.resultsx-00001-of-00004",
        ] {
            assert_eq!(shard_count(other), None, "{other}");
        }
    }

    #[test]
    fn python_repr_of_strings() {
        assert_eq!(python_str("plain"), "'plain'");
        assert_eq!(python_str("it's"), "\"it's\"");
        assert_eq!(python_str("a 'b' \"c\""), "'a \\'b\\' \"c\"'");
        assert_eq!(python_str("x\ny\\"), "'x\\ny\\\\'");
        assert_eq!(
            shard_name(RESULTS, 2, 10),
            "prediction.results-00002-of-00010"
        );
    }
}

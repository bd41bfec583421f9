//! Feature vocabularies and numeric statistics learned from the training data, and the encoding of
//! rows into the ids and dense values that the trainer consumes. The exported ONNX graph performs
//! exactly this encoding on raw inputs (see `onnx::census_graph`).
//!
//! TensorFlow's census sample hashed `occupation` and `native_country` into buckets and crossed
//! columns into hash buckets. Here every categorical column gets a vocabulary built from the
//! training data with id 0 reserved for out-of-vocabulary values, and crosses are exact (the
//! product of their factors' id spaces), so no two values ever collide.

use serde::{Deserialize, Serialize};

use super::schema::{
    age_bucket, WideBase, WideColumn, AGE_BUCKETS, CATEGORICAL, NUMERIC, WIDE_COLUMNS,
};
use super::CensusRow;

/// Numeric columns compressed with `ln(1 + max(x, 0))` before standardisation: their values span
/// five orders of magnitude and are mostly zero.
pub const LOG_SCALED: [bool; NUMERIC.len()] = [false, false, true, true, false];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Per categorical column (in `CATEGORICAL` order), its sorted values; value `i` has id `i + 1`.
    pub vocabularies: Vec<Vec<String>>,
    /// Mean of each numeric column after the optional log scaling (in `NUMERIC` order).
    pub numeric_mean: Vec<f32>,
    /// Standard deviation of the same; never zero.
    pub numeric_std: Vec<f32>,
}

/// Rows encoded for the trainer: row-major, `n` rows.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    pub n: usize,
    /// `n x WIDE_COLUMNS.len()` ids into the wide weight table (offsets included).
    pub wide_ids: Vec<u32>,
    /// `n x CATEGORICAL.len()` ids into the stacked embedding table (offsets included).
    pub embedding_ids: Vec<u32>,
    /// `n x NUMERIC.len()` standardised values.
    pub dense: Vec<f32>,
    pub labels: Vec<f32>,
}

impl FeatureSpec {
    /// Learns vocabularies and statistics from the training rows.
    pub fn fit(rows: &[CensusRow]) -> Self {
        let vocabularies = (0..CATEGORICAL.len())
            .map(|c| {
                let mut values: Vec<String> =
                    rows.iter().map(|r| r.categorical[c].clone()).collect();
                // A value with inner whitespace can never match: the graph looks up the first
                // whitespace-separated token only.
                values.retain(|v| !v.contains(char::is_whitespace));
                values.sort();
                values.dedup();
                values
            })
            .collect();
        let n = rows.len().max(1) as f64;
        let mut numeric_mean = Vec::new();
        let mut numeric_std = Vec::new();
        for (j, log) in LOG_SCALED.iter().enumerate() {
            let values: Vec<f64> = rows
                .iter()
                .map(|r| scale(r.numeric[j], *log) as f64)
                .collect();
            let mean = values.iter().sum::<f64>() / n;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let std = var.sqrt();
            numeric_mean.push(mean as f32);
            numeric_std.push(if std > 1e-6 { std as f32 } else { 1.0 });
        }
        FeatureSpec {
            vocabularies,
            numeric_mean,
            numeric_std,
        }
    }

    /// Id space of a categorical column: its vocabulary plus the out-of-vocabulary id 0.
    pub fn categorical_size(&self, c: usize) -> usize {
        self.vocabularies[c].len() + 1
    }

    /// Id of a categorical value (leading and trailing spaces ignored); 0 when unknown, or
    /// when it holds a space inside: as the exported graph reads it (see
    /// [`csv::category_text`](super::csv::category_text)).
    pub fn categorical_id(&self, c: usize, value: &str) -> usize {
        let value = super::csv::category_text(value);
        if value.contains(' ') {
            return 0;
        }
        self.vocabularies[c]
            .binary_search_by(|v| v.as_str().cmp(value))
            .map_or(0, |i| i + 1)
    }

    fn base_size(&self, base: WideBase) -> usize {
        match base {
            WideBase::Categorical(c) => self.categorical_size(c),
            WideBase::AgeBuckets => AGE_BUCKETS,
        }
    }

    /// Size of each wide column's id space, in `WIDE_COLUMNS` order.
    pub fn wide_sizes(&self) -> Vec<usize> {
        WIDE_COLUMNS
            .iter()
            .map(|column| match column {
                WideColumn::Categorical(c) => self.categorical_size(*c),
                WideColumn::AgeBuckets => AGE_BUCKETS,
                WideColumn::Cross(factors) => factors.iter().map(|f| self.base_size(*f)).product(),
            })
            .collect()
    }

    /// Offsets of the wide columns in the single wide weight table, and its total size.
    pub fn wide_offsets(&self) -> (Vec<usize>, usize) {
        offsets(&self.wide_sizes())
    }

    /// Offsets of the categorical columns in the stacked embedding table, and its total rows.
    pub fn embedding_offsets(&self) -> (Vec<usize>, usize) {
        let sizes: Vec<usize> = (0..CATEGORICAL.len())
            .map(|c| self.categorical_size(c))
            .collect();
        offsets(&sizes)
    }

    /// Standardised value of numeric column `j`, computed in f32 exactly as the graph does.
    pub fn normalise(&self, j: usize, value: i64) -> f32 {
        (scale(value, LOG_SCALED[j]) - self.numeric_mean[j]) / self.numeric_std[j]
    }

    pub fn encode(&self, rows: &[CensusRow]) -> Encoded {
        let (wide_offsets, _) = self.wide_offsets();
        let (embedding_offsets, _) = self.embedding_offsets();
        let mut out = Encoded {
            n: rows.len(),
            wide_ids: Vec::with_capacity(rows.len() * WIDE_COLUMNS.len()),
            embedding_ids: Vec::with_capacity(rows.len() * CATEGORICAL.len()),
            dense: Vec::with_capacity(rows.len() * NUMERIC.len()),
            labels: Vec::with_capacity(rows.len()),
        };
        for row in rows {
            let ids: Vec<usize> = (0..CATEGORICAL.len())
                .map(|c| self.categorical_id(c, &row.categorical[c]))
                .collect();
            let bucket = age_bucket(row.numeric[0] as f32);
            let base_id = |b: WideBase| match b {
                WideBase::Categorical(c) => ids[c],
                WideBase::AgeBuckets => bucket,
            };
            for (column, offset) in WIDE_COLUMNS.iter().zip(&wide_offsets) {
                let local = match column {
                    WideColumn::Categorical(c) => ids[*c],
                    WideColumn::AgeBuckets => bucket,
                    WideColumn::Cross(factors) => factors
                        .iter()
                        .fold(0, |acc, f| acc * self.base_size(*f) + base_id(*f)),
                };
                out.wide_ids.push((offset + local) as u32);
            }
            for (id, offset) in ids.iter().zip(&embedding_offsets) {
                out.embedding_ids.push((offset + id) as u32);
            }
            for j in 0..NUMERIC.len() {
                out.dense.push(self.normalise(j, row.numeric[j]));
            }
            out.labels.push(row.label as f32);
        }
        out
    }
}

/// In double precision, then rounded to float, as the graph does it (see `onnx::census_graph`).
fn scale(value: i64, log: bool) -> f32 {
    let x = value as f64;
    if log {
        ((x.max(0.0) + 1.0).ln()) as f32
    } else {
        x as f32
    }
}

fn offsets(sizes: &[usize]) -> (Vec<usize>, usize) {
    let mut total = 0;
    let offsets = sizes
        .iter()
        .map(|s| {
            let o = total;
            total += s;
            o
        })
        .collect();
    (offsets, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::census::fixture;

    #[test]
    fn unknown_and_padded_categories() {
        let rows = fixture::rows(200, 1);
        let spec = FeatureSpec::fit(&rows);
        let c = 0;
        let known = spec.vocabularies[c][0].clone();
        assert_eq!(spec.categorical_id(c, &known), 1);
        assert_eq!(spec.categorical_id(c, &format!("  {known} ")), 1);
        assert_eq!(spec.categorical_id(c, "never-seen-value"), 0);
    }

    #[test]
    fn ids_stay_inside_their_tables() {
        let rows = fixture::rows(300, 2);
        let spec = FeatureSpec::fit(&rows);
        let enc = spec.encode(&rows);
        let (_, wide_total) = spec.wide_offsets();
        let (_, emb_total) = spec.embedding_offsets();
        assert!(enc.wide_ids.iter().all(|&i| (i as usize) < wide_total));
        assert!(enc.embedding_ids.iter().all(|&i| (i as usize) < emb_total));
        assert_eq!(enc.dense.len(), 300 * NUMERIC.len());
        // Standardised columns have mean ~0.
        for j in 0..NUMERIC.len() {
            let mean: f32 = (0..300)
                .map(|i| enc.dense[i * NUMERIC.len() + j])
                .sum::<f32>()
                / 300.0;
            assert!(mean.abs() < 1e-3, "column {j} mean {mean}");
        }
    }
}

//! The Wide & Deep network in candle: parameters as `Var`s, the forward pass, the loss, and the
//! conversion to plain weights for export. The forward pass is the reference the exported ONNX
//! graph is checked against.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::census::features::Encoded;
use crate::census::model::{Dense, WideDeepWeights};
use crate::census::schema::{CATEGORICAL, NUMERIC, WIDE_COLUMNS};
use crate::census::FeatureSpec;

/// A batch of encoded rows as tensors.
pub struct Batch {
    pub n: usize,
    wide_ids: Tensor,
    embedding_ids: Tensor,
    dense: Tensor,
    pub labels: Tensor,
}

impl Batch {
    /// Tensors of the rows `rows` (indices into `data`).
    pub fn gather(data: &Encoded, rows: &[usize]) -> Result<Self> {
        let w = WIDE_COLUMNS.len();
        let c = CATEGORICAL.len();
        let d = NUMERIC.len();
        let mut wide = Vec::with_capacity(rows.len() * w);
        let mut emb = Vec::with_capacity(rows.len() * c);
        let mut dense = Vec::with_capacity(rows.len() * d);
        let mut labels = Vec::with_capacity(rows.len());
        for &r in rows {
            wide.extend_from_slice(&data.wide_ids[r * w..(r + 1) * w]);
            emb.extend_from_slice(&data.embedding_ids[r * c..(r + 1) * c]);
            dense.extend_from_slice(&data.dense[r * d..(r + 1) * d]);
            labels.push(data.labels[r]);
        }
        let n = rows.len();
        let dev = Device::Cpu;
        Ok(Batch {
            n,
            wide_ids: Tensor::from_vec(wide, n * w, &dev)?,
            embedding_ids: Tensor::from_vec(emb, n * c, &dev)?,
            dense: Tensor::from_vec(dense, (n, d), &dev)?,
            labels: Tensor::from_vec(labels, (n, 1), &dev)?,
        })
    }
}

pub struct Network {
    pub embedding_size: usize,
    pub hidden_units: Vec<usize>,
    wide: Var,
    embeddings: Var,
    hidden: Vec<(Var, Var)>,
    output: (Var, Var),
}

impl Network {
    /// Fresh parameters: zero wide weights (as TF's linear model), embeddings from a truncated
    /// normal with stddev `1/sqrt(dim)` (as `embedding_column`), Glorot-uniform dense kernels and
    /// zero biases (as `tf.layers.dense`). Deterministic for a seed.
    pub fn init(
        spec: &FeatureSpec,
        embedding_size: usize,
        hidden_units: &[usize],
        seed: u64,
    ) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dev = Device::Cpu;
        let (_, wide_rows) = spec.wide_offsets();
        let (_, emb_rows) = spec.embedding_offsets();
        let wide = Var::from_tensor(&Tensor::zeros((wide_rows, 1), DType::F32, &dev)?)?;
        let std = 1.0 / (embedding_size as f32).sqrt();
        let emb: Vec<f32> = (0..emb_rows * embedding_size)
            .map(|_| truncated_normal(&mut rng) * std)
            .collect();
        let embeddings =
            Var::from_tensor(&Tensor::from_vec(emb, (emb_rows, embedding_size), &dev)?)?;
        let mut inputs = CATEGORICAL.len() * embedding_size + NUMERIC.len();
        let mut hidden = Vec::new();
        for &units in hidden_units {
            hidden.push(glorot(&mut rng, inputs, units)?);
            inputs = units;
        }
        let output = glorot(&mut rng, inputs, 1)?;
        Ok(Network {
            embedding_size,
            hidden_units: hidden_units.to_vec(),
            wide,
            embeddings,
            hidden,
            output,
        })
    }

    /// The parameters with stable names, in a fixed order.
    pub fn named_vars(&self) -> Vec<(String, &Var)> {
        let mut vars = vec![
            ("wide".to_string(), &self.wide),
            ("embeddings".to_string(), &self.embeddings),
        ];
        for (i, (w, b)) in self.hidden.iter().enumerate() {
            vars.push((format!("hidden_{i}.weight"), w));
            vars.push((format!("hidden_{i}.bias"), b));
        }
        vars.push(("logit.weight".to_string(), &self.output.0));
        vars.push(("logit.bias".to_string(), &self.output.1));
        vars
    }

    /// Overwrites every parameter from a checkpoint's tensors; shapes must match.
    pub fn load(&self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.named_vars() {
            let t = tensors
                .get(&name)
                .with_context(|| format!("checkpoint lacks parameter {name}"))?;
            if t.shape() != var.shape() {
                bail!(
                    "checkpoint parameter {name} has shape {:?}, the model {:?}: the job-dir \
                     holds a model of another architecture or vocabulary",
                    t.shape(),
                    var.shape()
                );
            }
            var.set(t)?;
        }
        Ok(())
    }

    /// Logits `[n, 1]`.
    pub fn forward(&self, batch: &Batch) -> Result<Tensor> {
        let n = batch.n;
        let wide = self
            .wide
            .as_tensor()
            .index_select(&batch.wide_ids, 0)?
            .reshape((n, WIDE_COLUMNS.len()))?
            .sum_keepdim(1)?;
        let emb = self
            .embeddings
            .as_tensor()
            .index_select(&batch.embedding_ids, 0)?
            .reshape((n, CATEGORICAL.len() * self.embedding_size))?;
        let mut x = Tensor::cat(&[&emb, &batch.dense], 1)?;
        for (w, b) in &self.hidden {
            x = x
                .matmul(w.as_tensor())?
                .broadcast_add(b.as_tensor())?
                .relu()?;
        }
        let deep = x
            .matmul(self.output.0.as_tensor())?
            .broadcast_add(self.output.1.as_tensor())?;
        Ok((wide + deep)?)
    }

    /// Plain weights for export.
    pub fn to_weights(&self) -> Result<WideDeepWeights> {
        let flat = |v: &Var| -> Result<Vec<f32>> { Ok(v.as_tensor().flatten_all()?.to_vec1()?) };
        let dense = |(w, b): &(Var, Var)| -> Result<Dense> {
            let (inputs, outputs) = w.as_tensor().dims2()?;
            Ok(Dense {
                inputs,
                outputs,
                weight: flat(w)?,
                bias: flat(b)?,
            })
        };
        Ok(WideDeepWeights {
            embedding_size: self.embedding_size,
            wide: flat(&self.wide)?,
            embeddings: flat(&self.embeddings)?,
            hidden: self.hidden.iter().map(dense).collect::<Result<_>>()?,
            output: dense(&self.output)?,
        })
    }

    /// Logits of every encoded row, computed in chunks of `chunk` rows.
    pub fn predict(&self, data: &Encoded, chunk: usize) -> Result<Vec<f32>> {
        self.predict_first(data, data.n, chunk)
    }

    /// Logits of the first `n` encoded rows.
    pub fn predict_first(&self, data: &Encoded, n: usize, chunk: usize) -> Result<Vec<f32>> {
        let n = n.min(data.n);
        let mut out = Vec::with_capacity(n);
        let rows: Vec<usize> = (0..n).collect();
        for part in rows.chunks(chunk.max(1)) {
            let batch = Batch::gather(data, part)?;
            out.extend(self.forward(&batch)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

/// Mean sigmoid cross-entropy of logits `[n,1]` against labels `[n,1]`, in the stable form
/// `max(x, 0) - x y + ln(1 + exp(-|x|))`.
pub fn sigmoid_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let loss = ((logits.relu()? - (logits * labels)?)?
        + logits.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
    Ok(loss.mean_all()?)
}

fn glorot(rng: &mut ChaCha8Rng, inputs: usize, outputs: usize) -> Result<(Var, Var)> {
    let limit = (6.0 / (inputs + outputs) as f32).sqrt();
    let w: Vec<f32> = (0..inputs * outputs)
        .map(|_| rng.random_range(-limit..limit))
        .collect();
    let dev = Device::Cpu;
    Ok((
        Var::from_tensor(&Tensor::from_vec(w, (inputs, outputs), &dev)?)?,
        Var::from_tensor(&Tensor::zeros(outputs, DType::F32, &dev)?)?,
    ))
}

/// A standard normal sample redrawn until within two standard deviations.
fn truncated_normal(rng: &mut ChaCha8Rng) -> f32 {
    loop {
        // Box-Muller from two uniforms.
        let u1: f32 = rng.random_range(f32::EPSILON..1.0);
        let u2: f32 = rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos();
        if z.abs() <= 2.0 {
            return z;
        }
    }
}

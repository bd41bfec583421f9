//! The Wide & Deep model's weights as plain arrays: what the trainer produces and the ONNX writer
//! consumes, independent of the autodiff library.

use serde::{Deserialize, Serialize};

/// A fully connected layer, `y = x W + b`, with `W` row-major `[inputs, outputs]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WideDeepWeights {
    pub embedding_size: usize,
    /// One weight per id of the stacked wide id space (`FeatureSpec::wide_offsets`).
    pub wide: Vec<f32>,
    /// Stacked embedding table, row-major `[rows, embedding_size]` (`FeatureSpec::embedding_offsets`).
    pub embeddings: Vec<f32>,
    /// Hidden layers of the deep tower, each followed by ReLU.
    pub hidden: Vec<Dense>,
    /// The final layer to one logit; its bias is the model's only bias.
    pub output: Dense,
}

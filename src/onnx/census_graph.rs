//! The census Wide & Deep model as a self-contained ONNX graph: raw features in (strings for the
//! categorical columns, int64 for the numeric ones, shape `[batch]`), every transform inside
//! (whitespace trimming, vocabulary lookup with out-of-vocabulary id 0, age bucketization,
//! crosses, log scaling and standardisation, embeddings, both towers), and the outputs of Cloud ML
//! Engine's census answer: `probabilities`, `logits`, `classes`, `logistic`.
//!
//! The arithmetic mirrors `census::FeatureSpec::encode` and the trainer's forward pass step by step
//! so that both give the same numbers.

use onnx_protobuf::{tensor_proto::DataType, ModelProto};

use super::builder::{Attr, Dim, GraphBuilder};
use crate::census::features::LOG_SCALED;
use crate::census::model::WideDeepWeights;
use crate::census::schema::{
    WideBase, WideColumn, AGE_BOUNDARIES, AGE_BUCKETS, CATEGORICAL, INPUTS, NUMERIC, WIDE_COLUMNS,
};
use crate::census::FeatureSpec;

/// Output names, in the order of Cloud ML Engine's census prediction.
pub const OUTPUTS: [&str; 4] = ["probabilities", "logits", "classes", "logistic"];

const BATCH: Dim = Dim::Named("batch");

/// Builds the graph. `doc` goes into the model's doc string.
pub fn build(spec: &FeatureSpec, weights: &WideDeepWeights, doc: &str) -> ModelProto {
    let mut g = GraphBuilder::new("census_wide_deep");
    for name in INPUTS {
        let elem = if CATEGORICAL.contains(&name) {
            DataType::STRING
        } else {
            DataType::INT64
        };
        g.input(name, elem, &[BATCH]);
    }

    let ids = categorical_ids(&mut g, spec);
    let dense = numeric_features(&mut g, spec);
    let bucket = age_buckets(&mut g);

    let wide = wide_logit(&mut g, spec, weights, &ids, &bucket);
    let deep = deep_logit(&mut g, spec, weights, &ids, &dense);
    let logits = g.op("Add", &[&wide, &deep], vec![]);
    heads(&mut g, &logits);
    g.finish(env!("CARGO_PKG_VERSION"), doc)
}

/// Per categorical column, an int64 `[batch]` id: the trimmed value's vocabulary id, 0 when unknown
/// or when the value holds inner whitespace (no vocabulary value does).
fn categorical_ids(g: &mut GraphBuilder, spec: &FeatureSpec) -> Vec<String> {
    let zero = g.const_i64("zero_i64", &[], vec![0]);
    let one = g.const_i64("one_i64", &[], vec![1]);
    let empty = g.const_str("empty_string", &[1, 1], &[""]);
    let one_dim = g.const_i64("one_dim", &[1], vec![1]);
    let batch_shape = g.op("Shape", &[CATEGORICAL[0]], vec![]);
    let pad_shape = g.op(
        "Concat",
        &[&batch_shape, &one_dim],
        vec![("axis", Attr::Int(0))],
    );
    // One empty token per row so that an all-blank column still has a first token.
    let pad = g.op("Expand", &[&empty, &pad_shape], vec![]);
    CATEGORICAL
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let tokens = g.fresh(&format!("{name}_tokens"));
            let count = g.fresh(&format!("{name}_token_count"));
            g.node("", "StringSplit", &[name], &[&tokens, &count], vec![]);
            let padded = g.op("Concat", &[&tokens, &pad], vec![("axis", Attr::Int(1))]);
            let first = g.op("Gather", &[&padded, &zero], vec![("axis", Attr::Int(1))]);
            let looked_up = g.fresh(&format!("{name}_vocab_id"));
            let vocab = &spec.vocabularies[c];
            g.node(
                "ai.onnx.ml",
                "LabelEncoder",
                &[&first],
                &[&looked_up],
                vec![
                    ("keys_strings", Attr::Strings(vocab.clone())),
                    (
                        "values_int64s",
                        Attr::Ints((1..=vocab.len() as i64).collect()),
                    ),
                    ("default_int64", Attr::Int(0)),
                ],
            );
            let several = g.op("Greater", &[&count, &one], vec![]);
            g.op("Where", &[&several, &zero, &looked_up], vec![])
        })
        .collect()
}

/// The numeric columns as float `[batch, 5]`: optional `ln(1 + max(x, 0))`, then standardised.
fn numeric_features(g: &mut GraphBuilder, spec: &FeatureSpec) -> String {
    let axis1 = g.const_i64("axis_1", &[1], vec![1]);
    let columns: Vec<String> = NUMERIC
        .iter()
        .map(|name| g.op("Unsqueeze", &[name, &axis1], vec![]))
        .collect();
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let stacked = g.op("Concat", &refs, vec![("axis", Attr::Int(1))]);
    let x = g.op(
        "Cast",
        &[&stacked],
        vec![("to", Attr::Int(DataType::FLOAT as i64))],
    );
    let zero = g.const_f32("zero_f32", &[], vec![0.0]);
    let one = g.const_f32("one_f32", &[], vec![1.0]);
    let clipped = g.op("Max", &[&x, &zero], vec![]);
    let shifted = g.op("Add", &[&clipped, &one], vec![]);
    let logged = g.op("Log", &[&shifted], vec![]);
    let n = NUMERIC.len() as i64;
    let mask = g.const_bool("log_scaled", &[n], &LOG_SCALED);
    let scaled = g.op("Where", &[&mask, &logged, &x], vec![]);
    let mean = g.const_f32("numeric_mean", &[n], spec.numeric_mean.clone());
    let std = g.const_f32("numeric_std", &[n], spec.numeric_std.clone());
    let centred = g.op("Sub", &[&scaled, &mean], vec![]);
    g.op("Div", &[&centred, &std], vec![])
}

/// Age bucket ids, int64 `[batch]`: the number of boundaries <= age.
fn age_buckets(g: &mut GraphBuilder) -> String {
    let axis1 = g.const_i64("bucket_axis", &[1], vec![1]);
    let age = g.op("Unsqueeze", &["age", &axis1], vec![]);
    let age = g.op(
        "Cast",
        &[&age],
        vec![("to", Attr::Int(DataType::FLOAT as i64))],
    );
    let bounds = g.const_f32(
        "age_boundaries",
        &[1, AGE_BOUNDARIES.len() as i64],
        AGE_BOUNDARIES.to_vec(),
    );
    let above = g.op("GreaterOrEqual", &[&age, &bounds], vec![]);
    let above = g.op(
        "Cast",
        &[&above],
        vec![("to", Attr::Int(DataType::INT64 as i64))],
    );
    g.op(
        "ReduceSum",
        &[&above, &axis1],
        vec![("keepdims", Attr::Int(0))],
    )
}

/// Stacks `[batch]` id columns into `[batch, k]` and adds each column's table offset.
fn offset_ids(g: &mut GraphBuilder, name: &str, columns: &[String], offsets: &[usize]) -> String {
    let axis1 = g.const_i64(&format!("{name}_axis"), &[1], vec![1]);
    let unsqueezed: Vec<String> = columns
        .iter()
        .map(|c| g.op("Unsqueeze", &[c, &axis1], vec![]))
        .collect();
    let refs: Vec<&str> = unsqueezed.iter().map(String::as_str).collect();
    let stacked = g.op("Concat", &refs, vec![("axis", Attr::Int(1))]);
    let offsets = g.const_i64(
        &format!("{name}_offsets"),
        &[offsets.len() as i64],
        offsets.iter().map(|o| *o as i64).collect(),
    );
    g.op("Add", &[&stacked, &offsets], vec![])
}

fn wide_logit(
    g: &mut GraphBuilder,
    spec: &FeatureSpec,
    weights: &WideDeepWeights,
    ids: &[String],
    bucket: &str,
) -> String {
    let base_size = |b: &WideBase| match b {
        WideBase::Categorical(c) => spec.categorical_size(*c),
        WideBase::AgeBuckets => AGE_BUCKETS,
    };
    let base_id = |b: &WideBase| match b {
        WideBase::Categorical(c) => ids[*c].clone(),
        WideBase::AgeBuckets => bucket.to_string(),
    };
    let mut columns = Vec::new();
    for column in WIDE_COLUMNS {
        let id = match column {
            WideColumn::Categorical(c) => ids[c].clone(),
            WideColumn::AgeBuckets => bucket.to_string(),
            WideColumn::Cross(factors) => {
                let mut acc = base_id(&factors[0]);
                for f in &factors[1..] {
                    let size_name = g.fresh("cross_size");
                    let size = g.const_i64(&size_name, &[], vec![base_size(f) as i64]);
                    let scaled = g.op("Mul", &[&acc, &size], vec![]);
                    acc = g.op("Add", &[&scaled, &base_id(f)], vec![]);
                }
                acc
            }
        };
        columns.push(id);
    }
    let (offsets, total) = spec.wide_offsets();
    let wide_ids = offset_ids(g, "wide", &columns, &offsets);
    let table = g.const_f32("wide_weights", &[total as i64], weights.wide.clone());
    let picked = g.op("Gather", &[&table, &wide_ids], vec![("axis", Attr::Int(0))]);
    let axis1 = g.const_i64("wide_sum_axis", &[1], vec![1]);
    g.op(
        "ReduceSum",
        &[&picked, &axis1],
        vec![("keepdims", Attr::Int(1))],
    )
}

fn deep_logit(
    g: &mut GraphBuilder,
    spec: &FeatureSpec,
    weights: &WideDeepWeights,
    ids: &[String],
    dense: &str,
) -> String {
    let (offsets, rows) = spec.embedding_offsets();
    let e = weights.embedding_size as i64;
    let emb_ids = offset_ids(g, "embedding", ids, &offsets);
    let table = g.const_f32("embeddings", &[rows as i64, e], weights.embeddings.clone());
    let looked_up = g.op("Gather", &[&table, &emb_ids], vec![("axis", Attr::Int(0))]);
    let flat_shape = g.const_i64(
        "embedding_flat_shape",
        &[2],
        vec![-1, CATEGORICAL.len() as i64 * e],
    );
    let flat = g.op("Reshape", &[&looked_up, &flat_shape], vec![]);
    let mut x = g.op("Concat", &[&flat, dense], vec![("axis", Attr::Int(1))]);
    for (i, layer) in weights.hidden.iter().enumerate() {
        let y = dense_layer(g, &format!("hidden_{i}"), layer, &x);
        x = g.op("Relu", &[&y], vec![]);
    }
    dense_layer(g, "logit", &weights.output, &x)
}

fn dense_layer(
    g: &mut GraphBuilder,
    name: &str,
    layer: &crate::census::model::Dense,
    x: &str,
) -> String {
    let w = g.const_f32(
        &format!("{name}_weight"),
        &[layer.inputs as i64, layer.outputs as i64],
        layer.weight.clone(),
    );
    let b = g.const_f32(
        &format!("{name}_bias"),
        &[layer.outputs as i64],
        layer.bias.clone(),
    );
    let y = g.op("MatMul", &[x, &w], vec![]);
    g.op("Add", &[&y, &b], vec![])
}

/// The four outputs of the canned classifier from the logits.
fn heads(g: &mut GraphBuilder, logits: &str) {
    g.node("", "Identity", &[logits], &["logits"], vec![]);
    g.node("", "Sigmoid", &[logits], &["logistic"], vec![]);
    // P(<=50K) as sigmoid(-logit) rather than 1 - p keeps precision for confident answers.
    let negated = g.op("Neg", &[logits], vec![]);
    let p0 = g.op("Sigmoid", &[&negated], vec![]);
    g.node(
        "",
        "Concat",
        &[&p0, "logistic"],
        &["probabilities"],
        vec![("axis", Attr::Int(1))],
    );
    g.node(
        "",
        "ArgMax",
        &["probabilities"],
        &["classes"],
        vec![("axis", Attr::Int(1)), ("keepdims", Attr::Int(0))],
    );
    g.output("probabilities", DataType::FLOAT, &[BATCH, Dim::Fixed(2)]);
    g.output("logits", DataType::FLOAT, &[BATCH, Dim::Fixed(1)]);
    g.output("classes", DataType::INT64, &[BATCH]);
    g.output("logistic", DataType::FLOAT, &[BATCH, Dim::Fixed(1)]);
}

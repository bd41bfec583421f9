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
    age_bucket, WideBase, WideColumn, AGE_BOUNDARIES, AGE_BUCKETS, CATEGORICAL, INPUTS, NUMERIC,
    WIDE_COLUMNS,
};
use crate::census::FeatureSpec;

/// Output names, in the order of Cloud ML Engine's census prediction.
pub const OUTPUTS: [&str; 4] = ["probabilities", "logits", "classes", "logistic"];

/// What the exported model takes, as the census sample's `--export-format` named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExportFormat {
    /// One input per raw feature column (JSON instances).
    #[default]
    Json,
    /// One string input, `csv_row`: a row of the census file, parsed inside the graph.
    Csv,
    /// Serialized `tf.Example`s, decoded by the server into the named inputs (the graph is the
    /// JSON one: ONNX cannot parse protobuf).
    Example,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "JSON" => Ok(ExportFormat::Json),
            "CSV" => Ok(ExportFormat::Csv),
            "EXAMPLE" => Ok(ExportFormat::Example),
            _ => Err(format!("unknown export format {s:?}: JSON, CSV or EXAMPLE")),
        }
    }
}

pub use crate::census::schema::{CENSUS_CSV, CSV_INPUT, INPUT_FORMAT_KEY, TF_EXAMPLE};

const BATCH: Dim = Dim::Named("batch");

/// Builds the graph. `doc` goes into the model's doc string.
///
/// The graph is laid out for few nodes rather than one chain per column: ONNX Runtime's cost per
/// node dominates a census row, so the eight string columns go through one trim and one lookup as
/// an `[8, batch]` matrix, and the numeric columns through one chain as `[5, batch]`.
///
/// Every row's numbers are independent of the other rows in its batch, bit for bit, so that the
/// server may batch requests without changing any answer: sums over a row are MatMuls (ONNX
/// Runtime's `ReduceSum` rounds differently by position), and the logarithm is taken in double
/// precision (its float kernel rounds vectorised and scalar elements differently; in double
/// the difference never survives the rounding to float over the census range, which the tests
/// check).
pub fn build(
    spec: &FeatureSpec,
    weights: &WideDeepWeights,
    doc: &str,
    format: ExportFormat,
) -> ModelProto {
    let mut g = GraphBuilder::new("census_wide_deep");
    if format == ExportFormat::Csv {
        csv_columns(&mut g);
    } else {
        for name in INPUTS {
            let elem = if CATEGORICAL.contains(&name) {
                DataType::STRING
            } else {
                DataType::INT64
            };
            g.input(name, elem, &[BATCH]);
        }
    }

    let ids = categorical_ids(&mut g, spec);
    let dense = numeric_features(&mut g, spec);
    let bucket = age_buckets(&mut g);
    let bases = g.op("Concat", &[&ids, &bucket], vec![("axis", Attr::Int(0))]);

    let wide = wide_logit(&mut g, spec, weights, &bases);
    let deep = deep_logit(&mut g, spec, weights, &ids, &dense);
    g.node("", "Add", &[&wide, &deep], &["logits"], vec![]);
    heads(&mut g, "logits");
    let mut model = g.finish(env!("CARGO_PKG_VERSION"), doc);
    // The classes of `probabilities`, for TF Serving's Classify.
    model
        .metadata_props
        .push(onnx_protobuf::StringStringEntryProto {
            key: crate::census::schema::CLASS_LABELS_KEY.to_string(),
            value: serde_json::json!(crate::census::schema::LABELS).to_string(),
            ..Default::default()
        });
    let input_format = match format {
        ExportFormat::Json => None,
        ExportFormat::Csv => Some(CENSUS_CSV),
        ExportFormat::Example => Some(TF_EXAMPLE),
    };
    if let Some(value) = input_format {
        model
            .metadata_props
            .push(onnx_protobuf::StringStringEntryProto {
                key: INPUT_FORMAT_KEY.to_string(),
                value: value.to_string(),
                ..Default::default()
            });
    }
    model
}

/// The raw feature columns from a census file row, `csv_row` string `[batch]`: split at commas
/// (the 14 feature columns in file order, `fnlwgt` included; a trailing income label is not
/// read), each named as the JSON model's input so the rest of the graph is the same. Numbers
/// are parsed by `Cast` (leading spaces allowed); the server checks each row's fields first, so a
/// bad row is answered with its field rather than a runtime error.
fn csv_columns(g: &mut GraphBuilder) {
    use crate::census::schema::CSV_COLUMNS;
    g.input(CSV_INPUT, DataType::STRING, &[BATCH]);
    let fields = g.fresh("csv_fields");
    let count = g.fresh("csv_field_count");
    g.node(
        "",
        "StringSplit",
        &[CSV_INPUT],
        &[&fields, &count],
        vec![("delimiter", Attr::Str(",".to_string()))],
    );
    for name in INPUTS {
        let Some(column) = CSV_COLUMNS.iter().position(|c| *c == name) else {
            continue;
        };
        let index = g.const_i64(&format!("csv_column_{name}"), &[], vec![column as i64]);
        if CATEGORICAL.contains(&name) {
            g.node(
                "",
                "Gather",
                &[&fields, &index],
                &[name],
                vec![("axis", Attr::Int(1))],
            );
        } else {
            let text = g.op("Gather", &[&fields, &index], vec![("axis", Attr::Int(1))]);
            g.node(
                "",
                "Cast",
                &[&text],
                &[name],
                vec![("to", Attr::Int(DataType::INT64 as i64))],
            );
        }
    }
}

/// Stacks `[batch]` inputs into a `[columns, batch]` matrix.
fn stack_columns(g: &mut GraphBuilder, name: &str, columns: &[&str]) -> String {
    let flat = g.op("Concat", columns, vec![("axis", Attr::Int(0))]);
    let shape = g.const_i64(
        &format!("{name}_shape"),
        &[2],
        vec![columns.len() as i64, -1],
    );
    g.op("Reshape", &[&flat, &shape], vec![])
}

/// Vocabulary ids of the categorical columns, int64 `[8, batch]`: the trimmed value's id in its
/// column's vocabulary, 0 when unknown or when the value holds inner whitespace (no vocabulary
/// value does).
///
/// One whitespace split and one lookup serve all columns: the lookup maps a word to its id in
/// the union of the vocabularies, and a small table maps (column, union id) to the column's own
/// id, so no string is built per cell beyond the split's words.
fn categorical_ids(g: &mut GraphBuilder, spec: &FeatureSpec) -> String {
    // The values column after column, plus one word so that the split always has a first
    // token (a batch of blank values has none of its own); it is cut off after the lookup.
    let mut parts: Vec<&str> = CATEGORICAL.to_vec();
    let word = g.const_str("split_padding", &[1], &["-"]);
    parts.push(&word);
    let values = g.op("Concat", &parts, vec![("axis", Attr::Int(0))]);
    let tokens = g.fresh("tokens");
    let count = g.fresh("token_count");
    g.node("", "StringSplit", &[&values], &[&tokens, &count], vec![]);

    let mut union: Vec<&str> = spec
        .vocabularies
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    union.sort_unstable();
    union.dedup();
    let looked_up = g.fresh("union_id");
    g.node(
        "ai.onnx.ml",
        "LabelEncoder",
        &[&tokens],
        &[&looked_up],
        vec![
            (
                "keys_strings",
                Attr::Strings(union.iter().map(|v| v.to_string()).collect()),
            ),
            (
                "values_int64s",
                Attr::Ints((1..=union.len() as i64).collect()),
            ),
            ("default_int64", Attr::Int(0)),
        ],
    );
    let zero = g.const_i64("zero_i64", &[], vec![0]);
    let first = g.op("Gather", &[&looked_up, &zero], vec![("axis", Attr::Int(1))]);
    let one = g.const_i64("one_i64", &[], vec![1]);
    let one_word = g.op("Equal", &[&count, &one], vec![]);
    let id = g.op("Where", &[&one_word, &first, &zero], vec![]);
    let starts = g.const_i64("padding_cut_start", &[1], vec![0]);
    let ends = g.const_i64("padding_cut_end", &[1], vec![-1]);
    let id = g.op("Slice", &[&id, &starts, &ends], vec![]);
    let shape = g.const_i64(
        "categorical_shape",
        &[2],
        vec![CATEGORICAL.len() as i64, -1],
    );
    let id = g.op("Reshape", &[&id, &shape], vec![]);

    // Row c of the table maps union ids to column c's ids.
    let width = union.len() + 1;
    let mut table = vec![0i64; CATEGORICAL.len() * width];
    for (c, vocabulary) in spec.vocabularies.iter().enumerate() {
        for (local, value) in vocabulary.iter().enumerate() {
            if let Ok(u) = union.binary_search(&value.as_str()) {
                table[c * width + u + 1] = local as i64 + 1;
            }
        }
    }
    let rows = g.const_i64(
        "column_table_rows",
        &[CATEGORICAL.len() as i64, 1],
        (0..CATEGORICAL.len()).map(|c| (c * width) as i64).collect(),
    );
    let table = g.const_i64("column_ids", &[table.len() as i64], table);
    let index = g.op("Add", &[&id, &rows], vec![]);
    g.op("Gather", &[&table, &index], vec![("axis", Attr::Int(0))])
}

/// The numeric columns as float `[batch, 5]`: optional `ln(1 + max(x, 0))` (in double, see
/// `build`), then standardised.
fn numeric_features(g: &mut GraphBuilder, spec: &FeatureSpec) -> String {
    let stacked = stack_columns(g, "numeric", &NUMERIC);
    let x = g.op(
        "Cast",
        &[&stacked],
        vec![("to", Attr::Int(DataType::DOUBLE as i64))],
    );
    let zero = g.const_f64("zero_f64", &[], vec![0.0]);
    let one = g.const_f64("one_f64", &[], vec![1.0]);
    let clipped = g.op("Max", &[&x, &zero], vec![]);
    let shifted = g.op("Add", &[&clipped, &one], vec![]);
    let logged = g.op("Log", &[&shifted], vec![]);
    let n = NUMERIC.len() as i64;
    let mask = g.const_bool("log_scaled", &[n, 1], &LOG_SCALED);
    let scaled = g.op("Where", &[&mask, &logged, &x], vec![]);
    let scaled = g.op(
        "Cast",
        &[&scaled],
        vec![("to", Attr::Int(DataType::FLOAT as i64))],
    );
    let mean = g.const_f32("numeric_mean", &[n, 1], spec.numeric_mean.clone());
    let std = g.const_f32("numeric_std", &[n, 1], spec.numeric_std.clone());
    let centred = g.op("Sub", &[&scaled, &mean], vec![]);
    let normalised = g.op("Div", &[&centred, &std], vec![]);
    g.op(
        "Transpose",
        &[&normalised],
        vec![("perm", Attr::Ints(vec![1, 0]))],
    )
}

/// Age bucket ids, int64 `[1, batch]`: the number of boundaries <= age, looked up in a table
/// indexed by the age clipped to the table (boundaries are whole years).
fn age_buckets(g: &mut GraphBuilder) -> String {
    let last = AGE_BOUNDARIES[AGE_BOUNDARIES.len() - 1] as i64;
    let table: Vec<i64> = (0..=last).map(|a| age_bucket(a as f32) as i64).collect();
    let table = g.const_i64("age_bucket_table", &[last + 1], table);
    let row_shape = g.const_i64("age_row_shape", &[2], vec![1, -1]);
    let age = g.op("Reshape", &["age", &row_shape], vec![]);
    let low = g.const_i64("age_min", &[], vec![0]);
    let high = g.const_i64("age_max", &[], vec![last]);
    let clipped = g.op("Clip", &[&age, &low, &high], vec![]);
    g.op("Gather", &[&table, &clipped], vec![("axis", Attr::Int(0))])
}

/// The wide tower's logit, float `[batch, 1]`. `bases` holds the categorical ids and the age
/// bucket as int64 `[9, batch]`; each wide column's id (a base id, or a cross's mixed-radix
/// number) is a linear combination of them, so all eleven come from one integer MatMul.
fn wide_logit(
    g: &mut GraphBuilder,
    spec: &FeatureSpec,
    weights: &WideDeepWeights,
    bases: &str,
) -> String {
    let nbases = CATEGORICAL.len() + 1;
    let base_index = |b: &WideBase| match b {
        WideBase::Categorical(c) => *c,
        WideBase::AgeBuckets => CATEGORICAL.len(),
    };
    let base_size = |b: &WideBase| match b {
        WideBase::Categorical(c) => spec.categorical_size(*c),
        WideBase::AgeBuckets => AGE_BUCKETS,
    };
    let mut coefficients = vec![0i64; WIDE_COLUMNS.len() * nbases];
    for (k, column) in WIDE_COLUMNS.iter().enumerate() {
        let row = &mut coefficients[k * nbases..(k + 1) * nbases];
        match column {
            WideColumn::Categorical(c) => row[*c] += 1,
            WideColumn::AgeBuckets => row[CATEGORICAL.len()] += 1,
            WideColumn::Cross(factors) => {
                let mut stride = 1i64;
                for f in factors.iter().rev() {
                    row[base_index(f)] += stride;
                    stride *= base_size(f) as i64;
                }
            }
        }
    }
    let k = WIDE_COLUMNS.len() as i64;
    let coefficients = g.const_i64("wide_coefficients", &[k, nbases as i64], coefficients);
    let (offsets, total) = spec.wide_offsets();
    let offsets = g.const_i64(
        "wide_offsets",
        &[k, 1],
        offsets.iter().map(|o| *o as i64).collect(),
    );
    let local = g.op("MatMul", &[&coefficients, bases], vec![]);
    let ids = g.op("Add", &[&local, &offsets], vec![]);
    let ids = g.op("Transpose", &[&ids], vec![("perm", Attr::Ints(vec![1, 0]))]);
    let table = g.const_f32("wide_weights", &[total as i64], weights.wide.clone());
    let picked = g.op("Gather", &[&table, &ids], vec![("axis", Attr::Int(0))]);
    let ones = g.const_f32("wide_sum_ones", &[k, 1], vec![1.0; WIDE_COLUMNS.len()]);
    g.op("MatMul", &[&picked, &ones], vec![])
}

fn deep_logit(
    g: &mut GraphBuilder,
    spec: &FeatureSpec,
    weights: &WideDeepWeights,
    ids: &str,
    dense: &str,
) -> String {
    let (offsets, rows) = spec.embedding_offsets();
    let e = weights.embedding_size as i64;
    let c = CATEGORICAL.len() as i64;
    let offsets = g.const_i64(
        "embedding_offsets",
        &[c, 1],
        offsets.iter().map(|o| *o as i64).collect(),
    );
    let rows_ids = g.op("Add", &[ids, &offsets], vec![]);
    let rows_ids = g.op(
        "Transpose",
        &[&rows_ids],
        vec![("perm", Attr::Ints(vec![1, 0]))],
    );
    let table = g.const_f32("embeddings", &[rows as i64, e], weights.embeddings.clone());
    let looked_up = g.op("Gather", &[&table, &rows_ids], vec![("axis", Attr::Int(0))]);
    let flat_shape = g.const_i64("embedding_flat_shape", &[2], vec![-1, c * e]);
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

/// The four outputs of the canned classifier from the logits (the value named `logits`).
fn heads(g: &mut GraphBuilder, logits: &str) {
    // P(<=50K) as sigmoid(-logit) rather than 1 - p keeps precision for confident answers; both
    // come from one Sigmoid over [-logit, logit] (a MatMul by [-1, 1] is exact).
    let signs = g.const_f32("class_signs", &[1, 2], vec![-1.0, 1.0]);
    let both = g.op("MatMul", &[logits, &signs], vec![]);
    g.node("", "Sigmoid", &[&both], &["probabilities"], vec![]);
    let starts = g.const_i64("positive_start", &[1], vec![1]);
    let ends = g.const_i64("positive_end", &[1], vec![2]);
    let axes = g.const_i64("positive_axis", &[1], vec![1]);
    g.node(
        "",
        "Slice",
        &["probabilities", &starts, &ends, &axes],
        &["logistic"],
        vec![],
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

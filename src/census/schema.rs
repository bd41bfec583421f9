//! The census (UCI "Adult") columns and the Wide & Deep feature definitions of Cloud ML Engine's
//! census sample. Everything that must agree between the trainer and the exported graph lives here.

/// Columns of `adult.data` / `adult.test`, in file order.
pub const CSV_COLUMNS: [&str; 15] = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "gender",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income_bracket",
];

/// Categorical model inputs, in the order the trainer and the graph index them.
pub const CATEGORICAL: [&str; 8] = [
    "workclass",
    "education",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "gender",
    "native_country",
];

/// Numeric model inputs, in the order of the deep tower's dense features.
pub const NUMERIC: [&str; 5] = [
    "age",
    "education_num",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
];

/// Model inputs in the order of the census sample's prediction instance (`test.json`).
pub const INPUTS: [&str; 13] = [
    "age",
    "workclass",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "gender",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
];

/// `tf.feature_column.bucketized_column(age, boundaries=...)` of the census sample.
pub const AGE_BOUNDARIES: [f32; 10] = [18., 25., 30., 35., 40., 45., 50., 55., 60., 65.];

/// Number of age buckets: one more than the boundaries.
pub const AGE_BUCKETS: usize = AGE_BOUNDARIES.len() + 1;

/// The input of a model exported for CSV rows (`--export-format CSV`).
pub const CSV_INPUT: &str = "csv_row";

/// Model metadata key naming how an exported model's inputs arrive, and its values: census file
/// rows in `csv_row`, or serialized `tf.Example`s decoded by the server.
pub const INPUT_FORMAT_KEY: &str = "mlengine.input_format";
pub const CENSUS_CSV: &str = "census-csv";
pub const TF_EXAMPLE: &str = "tf-example";
/// Model metadata key of a classifier's class labels, a JSON list in score order.
pub const CLASS_LABELS_KEY: &str = "mlengine.class_labels";

/// Label values; the positive class is the second.
pub const LABELS: [&str; 2] = ["<=50K", ">50K"];

/// Index into [`CATEGORICAL`] of a column name.
pub fn categorical_index(name: &str) -> Option<usize> {
    CATEGORICAL.iter().position(|c| *c == name)
}

/// Index into [`NUMERIC`] of a column name.
pub fn numeric_index(name: &str) -> Option<usize> {
    NUMERIC.iter().position(|c| *c == name)
}

/// Bucket of an age, as `tf.feature_column.bucketized_column`: the count of boundaries <= age.
pub fn age_bucket(age: f32) -> usize {
    AGE_BOUNDARIES.iter().filter(|b| **b <= age).count()
}

/// One column of the wide (linear) part: a base categorical column, the age buckets, or a cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WideColumn {
    Categorical(usize),
    AgeBuckets,
    /// Crossed columns; each factor is a base column (categorical or age buckets).
    Cross(&'static [WideBase]),
}

/// A factor of a crossed column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WideBase {
    Categorical(usize),
    AgeBuckets,
}

const EDUCATION: usize = 1;
const OCCUPATION: usize = 3;
const RACE: usize = 5;
const NATIVE_COUNTRY: usize = 7;

/// The wide columns of the census sample: gender, native_country, education, occupation,
/// workclass, marital_status, relationship, age buckets and three crosses.
pub const WIDE_COLUMNS: [WideColumn; 11] = [
    WideColumn::Categorical(6),
    WideColumn::Categorical(NATIVE_COUNTRY),
    WideColumn::Categorical(EDUCATION),
    WideColumn::Categorical(OCCUPATION),
    WideColumn::Categorical(0),
    WideColumn::Categorical(2),
    WideColumn::Categorical(4),
    WideColumn::AgeBuckets,
    WideColumn::Cross(&[
        WideBase::Categorical(EDUCATION),
        WideBase::Categorical(OCCUPATION),
    ]),
    WideColumn::Cross(&[
        WideBase::AgeBuckets,
        WideBase::Categorical(RACE),
        WideBase::Categorical(OCCUPATION),
    ]),
    WideColumn::Cross(&[
        WideBase::Categorical(NATIVE_COUNTRY),
        WideBase::Categorical(OCCUPATION),
    ]),
];

/// Hidden layer sizes of the census sample: `max(2, int(first_layer_size * scale_factor**i))`.
/// The product is floored with a small tolerance so that decimal scale factors give the sizes
/// their arithmetic says (100 * 0.7^2 = 49, where binary floating point yields 48.999...).
pub fn hidden_units(first_layer_size: usize, num_layers: usize, scale_factor: f64) -> Vec<usize> {
    (0..num_layers)
        .map(|i| {
            let size = first_layer_size as f64 * scale_factor.powi(i as i32);
            ((size + 1e-9).floor() as usize).max(2)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_units_match_the_census_sample() {
        assert_eq!(hidden_units(100, 4, 0.7), vec![100, 70, 49, 34]);
        assert_eq!(hidden_units(3, 3, 0.1), vec![3, 2, 2]);
    }

    #[test]
    fn age_buckets_follow_tf_bucketized_column() {
        assert_eq!(age_bucket(17.0), 0);
        assert_eq!(age_bucket(18.0), 1);
        assert_eq!(age_bucket(24.9), 1);
        assert_eq!(age_bucket(65.0), 10);
        assert_eq!(age_bucket(90.0), 10);
    }
}

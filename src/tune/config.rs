//! The tuning config: Cloud ML Engine's `HyperparameterSpec` and `ParameterSpec`, read from an
//! `hptuning_config.yaml` (with or without its `trainingInput:` wrapper) or from a training job's
//! `trainingInput.hyperparameters`. Enum values are read in any case (the census sample writes
//! `type: integer`). Every rule is checked before any trial starts; an error names the field and
//! the rule.

use serde_json::Value;

use crate::status::{Error, Result};

/// Trials a job may ask for: a bound on the work one request can start.
pub const MAX_TRIALS: u32 = 1000;
/// Values a DISCRETE parameter may list (Vizier's bound).
pub const MAX_DISCRETE_VALUES: usize = 1000;
pub use crate::trainer::observe::DEFAULT_METRIC_TAG;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Maximize,
    Minimize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ALGORITHM_UNSPECIFIED: Bayesian optimization (a Gaussian process), as Vizier's default.
    Bayesian,
    Grid,
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// NONE or unset: linear.
    Linear,
    Log,
    ReverseLog,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Double { min: f64, max: f64, scale: Scale },
    Integer { min: i64, max: i64, scale: Scale },
    Categorical(Vec<String>),
    Discrete { values: Vec<f64>, scale: Scale },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub goal: Goal,
    pub metric_tag: String,
    pub max_trials: u32,
    pub max_parallel_trials: u32,
    /// Failed trials after which the job fails; 0 in the config means "the service decides",
    /// which here is: every trial may fail but the job fails when none succeeds.
    pub max_failed_trials: u32,
    pub early_stopping: bool,
    pub resume_previous_job_id: Option<String>,
    pub algorithm: Algorithm,
    pub params: Vec<Param>,
}

impl Spec {
    /// Whether `a` is a better objective value than `b`.
    pub fn better(&self, a: f64, b: f64) -> bool {
        match self.goal {
            Goal::Maximize => a > b,
            Goal::Minimize => a < b,
        }
    }
}

fn invalid(field: &str, rule: impl std::fmt::Display) -> Error {
    let mut e = Error::invalid(format!("{field}: {rule}"));
    e.field = Some(field.to_string());
    e
}

/// An enum value in any case, without its type prefix (`integer`, `INTEGER`).
fn enum_value(v: &Value, field: &str) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_ascii_uppercase())),
        other => Err(invalid(field, format!("must be a name, not {other}"))),
    }
}

fn number(v: &Value, field: &str) -> Result<Option<f64>> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| invalid(field, "must be a finite number")),
        // int64 and double fields may come as JSON strings (the API's encoding).
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| invalid(field, format!("must be a finite number, not {s:?}"))),
        other => Err(invalid(field, format!("must be a number, not {other}"))),
    }
}

fn count(v: &Value, field: &str, default: u32) -> Result<u32> {
    match number(v, field)? {
        None => Ok(default),
        // Past u32, a count is as good as u32::MAX: the field's own bounds then name the range.
        Some(x) if x.fract() == 0.0 && x >= 0.0 => Ok(x.min(f64::from(u32::MAX)) as u32),
        Some(x) => Err(invalid(
            field,
            format!("must be a whole number >= 0, not {x}"),
        )),
    }
}

fn boolean(v: &Value, field: &str) -> Result<bool> {
    match v {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(invalid(
            field,
            format!("must be true or false, not {other}"),
        )),
    }
}

const SPEC_FIELDS: &[&str] = &[
    "goal",
    "hyperparameterMetricTag",
    "maxTrials",
    "maxParallelTrials",
    "maxFailedTrials",
    "enableTrialEarlyStopping",
    "resumePreviousJobId",
    "algorithm",
    "params",
];
const PARAM_FIELDS: &[&str] = &[
    "parameterName",
    "type",
    "minValue",
    "maxValue",
    "categoricalValues",
    "discreteValues",
    "scaleType",
];

fn unknown_fields(obj: &serde_json::Map<String, Value>, known: &[&str], at: &str) -> Result<()> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(invalid(
            &format!("{at}{k}"),
            format!("unknown field; expected one of {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// An `hptuning_config.yaml` (YAML or JSON): `trainingInput: {hyperparameters: ...}`,
/// `hyperparameters: ...`, or the spec itself.
pub fn parse_file(text: &str) -> Result<Spec> {
    let doc: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| Error::invalid(format!("the tuning config is not YAML: {e}")))?;
    let spec = doc
        .get("trainingInput")
        .map(|t| (t, "trainingInput.hyperparameters"))
        .and_then(|(t, at)| t.get("hyperparameters").map(|h| (h, at)))
        .or_else(|| doc.get("hyperparameters").map(|h| (h, "hyperparameters")))
        .unwrap_or((&doc, "hyperparameters"));
    parse(spec.0, spec.1)
}

/// A `HyperparameterSpec` as JSON; errors name fields under `at`.
pub fn parse(spec: &Value, at: &str) -> Result<Spec> {
    let Value::Object(obj) = spec else {
        return Err(invalid(at, "must be an object with goal, params, ..."));
    };
    let f = |name: &str| format!("{at}.{name}");
    unknown_fields(obj, SPEC_FIELDS, &format!("{at}."))?;
    let get = |name: &str| obj.get(name).unwrap_or(&Value::Null);
    let goal = match enum_value(get("goal"), &f("goal"))?.as_deref() {
        None | Some("GOAL_TYPE_UNSPECIFIED" | "MAXIMIZE") => Goal::Maximize,
        Some("MINIMIZE") => Goal::Minimize,
        Some(other) => {
            return Err(invalid(
                &f("goal"),
                format!("unknown goal {other}; expected MAXIMIZE or MINIMIZE"),
            ))
        }
    };
    let metric_tag = match get("hyperparameterMetricTag") {
        Value::Null => DEFAULT_METRIC_TAG.to_string(),
        Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            return Err(invalid(
                &f("hyperparameterMetricTag"),
                "must be a non-empty metric name",
            ))
        }
    };
    let max_trials = count(get("maxTrials"), &f("maxTrials"), 1)?;
    if max_trials == 0 || max_trials > MAX_TRIALS {
        return Err(invalid(
            &f("maxTrials"),
            format!("must be between 1 and {MAX_TRIALS}"),
        ));
    }
    let max_parallel_trials = count(get("maxParallelTrials"), &f("maxParallelTrials"), 1)?;
    if max_parallel_trials == 0 {
        return Err(invalid(&f("maxParallelTrials"), "must be at least 1"));
    }
    if max_parallel_trials > max_trials {
        return Err(invalid(
            &f("maxParallelTrials"),
            format!("{max_parallel_trials} is more than maxTrials ({max_trials})"),
        ));
    }
    let max_failed_trials = count(get("maxFailedTrials"), &f("maxFailedTrials"), 0)?;
    if max_failed_trials > max_trials {
        return Err(invalid(
            &f("maxFailedTrials"),
            format!("{max_failed_trials} is more than maxTrials ({max_trials})"),
        ));
    }
    let early_stopping = boolean(
        get("enableTrialEarlyStopping"),
        &f("enableTrialEarlyStopping"),
    )?;
    let resume_previous_job_id = match get("resumePreviousJobId") {
        Value::Null => None,
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => {
            return Err(invalid(
                &f("resumePreviousJobId"),
                "must be the ID of an earlier tuning job",
            ))
        }
    };
    let algorithm = match enum_value(get("algorithm"), &f("algorithm"))?.as_deref() {
        None | Some("ALGORITHM_UNSPECIFIED") => Algorithm::Bayesian,
        Some("GRID_SEARCH") => Algorithm::Grid,
        Some("RANDOM_SEARCH") => Algorithm::Random,
        Some(other) => {
            return Err(invalid(
                &f("algorithm"),
                format!(
                    "unknown algorithm {other}; expected ALGORITHM_UNSPECIFIED, GRID_SEARCH or \
                     RANDOM_SEARCH"
                ),
            ))
        }
    };
    let Some(list) = get("params").as_array().filter(|l| !l.is_empty()) else {
        return Err(invalid(&f("params"), "must list at least one parameter"));
    };
    let mut params: Vec<Param> = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let param = parse_param(p, &format!("{at}.params[{i}]"))?;
        if params.iter().any(|q| q.name == param.name) {
            return Err(invalid(
                &format!("{at}.params[{i}].parameterName"),
                format!("{:?} is listed twice", param.name),
            ));
        }
        if algorithm == Algorithm::Grid && matches!(param.kind, Kind::Double { .. }) {
            return Err(invalid(
                &format!("{at}.params[{i}].type"),
                "GRID_SEARCH takes only INTEGER, CATEGORICAL and DISCRETE parameters, not DOUBLE",
            ));
        }
        params.push(param);
    }
    Ok(Spec {
        goal,
        metric_tag,
        max_trials,
        max_parallel_trials,
        max_failed_trials,
        early_stopping,
        resume_previous_job_id,
        algorithm,
        params,
    })
}

fn parse_param(p: &Value, at: &str) -> Result<Param> {
    let Value::Object(obj) = p else {
        return Err(invalid(at, "must be an object with parameterName and type"));
    };
    unknown_fields(obj, PARAM_FIELDS, &format!("{at}."))?;
    let f = |name: &str| format!("{at}.{name}");
    let get = |name: &str| obj.get(name).unwrap_or(&Value::Null);
    let name = match get("parameterName") {
        Value::String(s)
            if !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') =>
        {
            s.clone()
        }
        Value::Null => return Err(invalid(&f("parameterName"), "is required")),
        other => {
            return Err(invalid(
                &f("parameterName"),
                format!("{other} is not a flag name (letters, digits, '-', '_', '.')"),
            ))
        }
    };
    let scale = match enum_value(get("scaleType"), &f("scaleType"))?.as_deref() {
        None | Some("NONE" | "UNIT_LINEAR_SCALE") => Scale::Linear,
        Some("UNIT_LOG_SCALE") => Scale::Log,
        Some("UNIT_REVERSE_LOG_SCALE") => Scale::ReverseLog,
        Some(other) => {
            return Err(invalid(
                &f("scaleType"),
                format!(
                    "unknown scale {other}; expected UNIT_LINEAR_SCALE, UNIT_LOG_SCALE or \
                     UNIT_REVERSE_LOG_SCALE"
                ),
            ))
        }
    };
    let kind = enum_value(get("type"), &f("type"))?;
    let bounds = || -> Result<(f64, f64)> {
        let min = number(get("minValue"), &f("minValue"))?.ok_or_else(|| {
            invalid(
                &f("minValue"),
                format!("is required for {}", kind_name(&kind)),
            )
        })?;
        let max = number(get("maxValue"), &f("maxValue"))?.ok_or_else(|| {
            invalid(
                &f("maxValue"),
                format!("is required for {}", kind_name(&kind)),
            )
        })?;
        if min > max {
            return Err(invalid(
                &f("minValue"),
                format!("{min} is greater than maxValue {max}"),
            ));
        }
        if scale != Scale::Linear && min <= 0.0 {
            return Err(invalid(
                &f("minValue"),
                format!("{min}: log scales need a strictly positive range"),
            ));
        }
        Ok((min, max))
    };
    let none_of = |fields: &[&str], what: &str| -> Result<()> {
        match fields.iter().find(|k| obj.contains_key(**k)) {
            Some(k) => Err(invalid(&f(k), format!("is not used by {what} parameters"))),
            None => Ok(()),
        }
    };
    let kind = match kind.as_deref() {
        Some("DOUBLE") => {
            none_of(&["categoricalValues", "discreteValues"], "DOUBLE")?;
            let (min, max) = bounds()?;
            Kind::Double { min, max, scale }
        }
        Some("INTEGER") => {
            none_of(&["categoricalValues", "discreteValues"], "INTEGER")?;
            let (min, max) = bounds()?;
            for (v, field) in [(min, "minValue"), (max, "maxValue")] {
                if v.fract() != 0.0 || v.abs() > 2f64.powi(53) {
                    return Err(invalid(
                        &f(field),
                        format!("{v} is not a whole number (the parameter is INTEGER)"),
                    ));
                }
            }
            Kind::Integer {
                min: min as i64,
                max: max as i64,
                scale,
            }
        }
        Some("CATEGORICAL") => {
            none_of(&["minValue", "maxValue", "discreteValues"], "CATEGORICAL")?;
            if obj.contains_key("scaleType") {
                return Err(invalid(
                    &f("scaleType"),
                    "is not used by CATEGORICAL parameters",
                ));
            }
            let values: Vec<String> = get("categoricalValues")
                .as_array()
                .map(|l| {
                    l.iter()
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            if values.is_empty() {
                return Err(invalid(
                    &f("categoricalValues"),
                    "must list at least one value for CATEGORICAL",
                ));
            }
            if let Some(dup) = values
                .iter()
                .enumerate()
                .find(|(i, v)| values[..*i].contains(v))
            {
                return Err(invalid(
                    &f("categoricalValues"),
                    format!("{:?} is listed twice", dup.1),
                ));
            }
            Kind::Categorical(values)
        }
        Some("DISCRETE") => {
            none_of(&["categoricalValues"], "DISCRETE")?;
            let values: Vec<f64> = match get("discreteValues") {
                Value::Array(l) if !l.is_empty() => l
                    .iter()
                    .enumerate()
                    .map(|(j, v)| {
                        number(v, &format!("{at}.discreteValues[{j}]"))?.ok_or_else(|| {
                            invalid(&format!("{at}.discreteValues[{j}]"), "must be a number")
                        })
                    })
                    .collect::<Result<_>>()?,
                _ => {
                    return Err(invalid(
                        &f("discreteValues"),
                        "must list at least one number for DISCRETE",
                    ))
                }
            };
            if values.len() > MAX_DISCRETE_VALUES {
                return Err(invalid(
                    &f("discreteValues"),
                    format!(
                        "lists {} values; at most {MAX_DISCRETE_VALUES}",
                        values.len()
                    ),
                ));
            }
            if values.windows(2).any(|w| w[1] <= w[0]) {
                return Err(invalid(&f("discreteValues"), "must be strictly increasing"));
            }
            if scale != Scale::Linear && values[0] <= 0.0 {
                return Err(invalid(
                    &f("discreteValues"),
                    "log scales need strictly positive values",
                ));
            }
            Kind::Discrete { values, scale }
        }
        None | Some("PARAMETER_TYPE_UNSPECIFIED") => {
            return Err(invalid(
                &f("type"),
                "is required: DOUBLE, INTEGER, CATEGORICAL or DISCRETE",
            ))
        }
        Some(other) => {
            return Err(invalid(
                &f("type"),
                format!("unknown type {other}; expected DOUBLE, INTEGER, CATEGORICAL or DISCRETE"),
            ))
        }
    };
    Ok(Param { name, kind })
}

fn kind_name(kind: &Option<String>) -> &str {
    kind.as_deref().unwrap_or("this type")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The census sample's config, as the project ships it.
    const SAMPLE: &str = include_str!("../../models/census/hptuning_config.yaml");

    #[test]
    fn reads_the_census_sample() {
        let spec = parse_file(SAMPLE).unwrap();
        assert_eq!(spec.goal, Goal::Maximize);
        assert_eq!(spec.metric_tag, "accuracy");
        assert_eq!((spec.max_trials, spec.max_parallel_trials), (4, 2));
        assert_eq!(spec.algorithm, Algorithm::Bayesian);
        assert_eq!(
            spec.params[0].kind,
            Kind::Integer {
                min: 50,
                max: 500,
                scale: Scale::Linear
            }
        );
        assert_eq!(
            spec.params[2].kind,
            Kind::Double {
                min: 0.1,
                max: 1.0,
                scale: Scale::ReverseLog
            }
        );
        // The same without the wrapper, and as JSON.
        let bare = SAMPLE
            .lines()
            .filter(|l| !l.starts_with('#'))
            .skip(2)
            .map(|l| l.get(4..).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse_file(&bare).unwrap(), spec);
    }

    fn error_of(params: &str, extra: &str) -> String {
        let text = format!("goal: maximize\nmaxTrials: 4\n{extra}params:\n{params}");
        parse_file(&text).unwrap_err().message
    }

    #[test]
    fn every_rule_is_an_error_naming_the_field() {
        let p = |body: &str| format!("  - parameterName: x\n{body}");
        let cases = [
            (
                p("    type: DOUBLE\n    minValue: 0\n    maxValue: 1\n    scaleType: UNIT_LOG_SCALE\n"),
                "",
                "params[0].minValue: 0: log scales need",
            ),
            (
                p("    type: DOUBLE\n    minValue: 0\n    maxValue: 1\n"),
                "algorithm: GRID_SEARCH\n",
                "params[0].type: GRID_SEARCH takes only",
            ),
            (p("    type: FLOAT\n"), "", "params[0].type: unknown type FLOAT"),
            (p("    minValue: 1\n"), "", "params[0].type: is required"),
            (
                p("    type: INTEGER\n    minValue: 5\n    maxValue: 1\n"),
                "",
                "params[0].minValue: 5 is greater than maxValue 1",
            ),
            (
                format!("{}{}", p("    type: CATEGORICAL\n    categoricalValues: [a]\n"), p("    type: CATEGORICAL\n    categoricalValues: [b]\n")),
                "",
                "params[1].parameterName: \"x\" is listed twice",
            ),
            (
                p("    type: INTEGER\n    minValue: 1\n    maxValue: 5\n"),
                "maxParallelTrials: 5\n",
                "maxParallelTrials: 5 is more than maxTrials (4)",
            ),
            (
                p("    type: INTEGER\n    minValue: 1.5\n    maxValue: 5\n"),
                "",
                "params[0].minValue: 1.5 is not a whole number",
            ),
            (
                p("    type: DISCRETE\n    discreteValues: [1, 3, 2]\n"),
                "",
                "params[0].discreteValues: must be strictly increasing",
            ),
            (
                p("    type: CATEGORICAL\n    categoricalValues: []\n"),
                "",
                "params[0].categoricalValues: must list at least one value",
            ),
            (
                p("    type: INTEGER\n    minValue: 1\n    maxValue: 5\n    scale: LOG\n"),
                "",
                "params[0].scale: unknown field",
            ),
            (
                p("    type: INTEGER\n    minValue: 1\n    maxValue: 5\n"),
                "algorithm: SIMULATED_ANNEALING\n",
                "algorithm: unknown algorithm SIMULATED_ANNEALING",
            ),
            (
                p("    type: INTEGER\n    minValue: 1\n    maxValue: 5\n"),
                "maxFailedTrials: 9\n",
                "maxFailedTrials: 9 is more than maxTrials (4)",
            ),
        ];
        for (params, extra, want) in cases {
            let message = error_of(&params, extra);
            assert!(message.contains(want), "{message:?} lacks {want:?}");
            assert!(message.starts_with("hyperparameters."), "{message}");
        }
        assert!(parse_file("goal: MAXIMIZE\n")
            .unwrap_err()
            .message
            .contains("params: must list"));
        assert!(parse_file("maxTrials: 0\nparams: []").is_err());
        let e = parse_file("maxTrials: 1e10\nparams: [{parameterName: n, type: INTEGER, minValue: 1, maxValue: 3}]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be between 1 and 1000"), "{e}");
    }
}

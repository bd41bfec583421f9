//! Census rows from the UCI `adult.test` / `adult.data` files and the request bodies built from
//! them, one encoding per protocol. All bodies are built before a run starts.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use prost::Message;

use crate::client::Protocol;
use crate::proto::inference::ModelInferRequest;
use crate::proto::inference::{model_infer_request::InferInputTensor, InferTensorContents};
use crate::proto::tensorflow::serving::{ModelSpec, PredictRequest};
use crate::proto::tensorflow::{tensor_shape_proto::Dim, TensorProto, TensorShapeProto};

/// int64 model inputs and their column in the census file.
pub const INT_INPUTS: [(&str, usize); 5] = [
    ("age", 0),
    ("education_num", 4),
    ("capital_gain", 10),
    ("capital_loss", 11),
    ("hours_per_week", 12),
];
/// string model inputs and their column in the census file.
pub const STR_INPUTS: [(&str, usize); 8] = [
    ("workclass", 1),
    ("education", 3),
    ("marital_status", 5),
    ("occupation", 6),
    ("relationship", 7),
    ("race", 8),
    ("gender", 9),
    ("native_country", 13),
];
/// Instance keys in the census sample's order (`test.json`).
const INSTANCE_ORDER: [&str; 13] = [
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
const COLUMNS: usize = 15;
/// The most request bodies built for one run (the rows are cycled through them).
const MAX_BODIES: usize = 16_384;

/// One census row's model inputs. Strings keep the file's leading space (`" Private"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub ints: [i64; 5],
    pub strs: [String; 8],
}

impl Row {
    fn int(&self, name: &str) -> Option<i64> {
        INT_INPUTS
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| self.ints[i])
    }
    fn str(&self, name: &str) -> Option<&str> {
        STR_INPUTS
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| self.strs[i].as_str())
    }
}

/// Reads the census rows of a UCI file (`|1x3 Cross validator` first line, `, ` separators,
/// blank lines, labels ending in `.`) or of Cloud ML's `.csv` copies (optional header line).
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read census data {}", path.display()))?;
    parse_rows(&text).with_context(|| format!("census data {}", path.display()))
}

pub fn parse_rows(text: &str) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('|') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != COLUMNS {
            bail!(
                "line {}: expected {COLUMNS} comma-separated fields, found {}",
                index + 1,
                fields.len()
            );
        }
        if rows.is_empty() && fields[0].trim() == "age" {
            continue; // header line of the .csv copies
        }
        let mut ints = [0i64; 5];
        for (slot, (name, column)) in ints.iter_mut().zip(INT_INPUTS) {
            let field = fields[column].trim();
            *slot = field.parse().with_context(|| {
                format!("line {}: {name} is not an integer: '{field}'", index + 1)
            })?;
        }
        let strs = STR_INPUTS.map(|(_, column)| format!(" {}", fields[column].trim()));
        rows.push(Row { ints, strs });
    }
    if rows.is_empty() {
        bail!("no census rows");
    }
    Ok(rows)
}

/// The rows of each request: `batch` consecutive rows, cycling through the file, for
/// `ceil(rows / batch)` bodies (at most MAX_BODIES).
fn batches(rows: &[Row], batch: usize) -> Vec<Vec<&Row>> {
    let count = rows.len().div_ceil(batch).clamp(1, MAX_BODIES);
    (0..count)
        .map(|b| {
            (0..batch)
                .map(|i| &rows[(b * batch + i) % rows.len()])
                .collect()
        })
        .collect()
}

fn json_str(out: &mut String, s: &str) {
    // serde_json's escaping; serialising a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// `{"instances":[{...}, ...]}`: Cloud ML and TF Serving row format.
pub fn instances_body(rows: &[&Row]) -> String {
    let mut out = String::with_capacity(64 + rows.len() * 340);
    out.push_str("{\"instances\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        for (k, name) in INSTANCE_ORDER.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{name}\":");
            if let Some(v) = row.int(name) {
                let _ = write!(out, "{v}");
            } else if let Some(s) = row.str(name) {
                json_str(&mut out, s);
            }
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// KServe v2 JSON: one tensor per input, shape [N].
pub fn kserve_body(rows: &[&Row], two_d: bool) -> String {
    let n = rows.len();
    let shape = if two_d {
        format!("{n},1")
    } else {
        n.to_string()
    };
    let mut out = String::with_capacity(256 + rows.len() * 400);
    out.push_str("{\"inputs\":[");
    let mut first = true;
    for (i, (name, _)) in INT_INPUTS.iter().enumerate() {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(
            out,
            "{{\"name\":\"{name}\",\"shape\":[{shape}],\"datatype\":\"INT64\",\"data\":["
        );
        for (r, row) in rows.iter().enumerate() {
            if r > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}", row.ints[i]);
        }
        out.push_str("]}");
    }
    for (i, (name, _)) in STR_INPUTS.iter().enumerate() {
        let _ = write!(
            out,
            ",{{\"name\":\"{name}\",\"shape\":[{shape}],\"datatype\":\"BYTES\",\"data\":["
        );
        for (r, row) in rows.iter().enumerate() {
            if r > 0 {
                out.push(',');
            }
            json_str(&mut out, &row.strs[i]);
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}

/// A gRPC length-prefixed message (uncompressed).
pub fn grpc_frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = Vec::with_capacity(5 + len);
    out.push(0);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    // Encoding into a Vec cannot run out of space.
    let _ = message.encode(&mut out);
    Bytes::from(out)
}

/// KServe v2 gRPC `ModelInferRequest` with typed contents.
pub fn grpc_kserve_request(model: &str, rows: &[&Row], two_d: bool) -> ModelInferRequest {
    let n = rows.len() as i64;
    let shape = if two_d { vec![n, 1] } else { vec![n] };
    let mut inputs = Vec::with_capacity(13);
    for (i, (name, _)) in INT_INPUTS.iter().enumerate() {
        inputs.push(InferInputTensor {
            name: (*name).into(),
            datatype: "INT64".into(),
            shape: shape.clone(),
            contents: Some(InferTensorContents {
                int64_contents: rows.iter().map(|r| r.ints[i]).collect(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    for (i, (name, _)) in STR_INPUTS.iter().enumerate() {
        inputs.push(InferInputTensor {
            name: (*name).into(),
            datatype: "BYTES".into(),
            shape: shape.clone(),
            contents: Some(InferTensorContents {
                bytes_contents: rows.iter().map(|r| r.strs[i].as_bytes().to_vec()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    ModelInferRequest {
        model_name: model.into(),
        inputs,
        ..Default::default()
    }
}

const DT_STRING: i32 = 7;
const DT_INT64: i32 = 9;

/// TF Serving gRPC `PredictRequest`: DT_INT64 `int64_val` and DT_STRING `string_val`, shape [N].
pub fn grpc_tfserving_request(model: &str, rows: &[&Row]) -> PredictRequest {
    let shape = || {
        Some(TensorShapeProto {
            dim: vec![Dim {
                size: rows.len() as i64,
                name: String::new(),
            }],
            unknown_rank: false,
        })
    };
    let mut inputs = std::collections::HashMap::new();
    for (i, (name, _)) in INT_INPUTS.iter().enumerate() {
        inputs.insert(
            (*name).to_string(),
            TensorProto {
                dtype: DT_INT64,
                tensor_shape: shape(),
                int64_val: rows.iter().map(|r| r.ints[i]).collect(),
                ..Default::default()
            },
        );
    }
    for (i, (name, _)) in STR_INPUTS.iter().enumerate() {
        inputs.insert(
            (*name).to_string(),
            TensorProto {
                dtype: DT_STRING,
                tensor_shape: shape(),
                string_val: rows.iter().map(|r| r.strs[i].as_bytes().to_vec()).collect(),
                ..Default::default()
            },
        );
    }
    PredictRequest {
        model_spec: Some(ModelSpec {
            name: model.into(),
            ..Default::default()
        }),
        inputs,
        ..Default::default()
    }
}

/// Every request body of a run, ready to send (gRPC bodies already framed).
pub fn build_bodies(
    protocol: Protocol,
    model: &str,
    rows: &[Row],
    batch: usize,
) -> Result<Vec<Bytes>> {
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    Ok(batches(rows, batch)
        .iter()
        .map(|b| match protocol {
            Protocol::Cloudml | Protocol::Tfserving => Bytes::from(instances_body(b)),
            Protocol::Kserve => Bytes::from(kserve_body(b, false)),
            Protocol::Kserve2d => Bytes::from(kserve_body(b, true)),
            Protocol::GrpcKserve => grpc_frame(&grpc_kserve_request(model, b, false)),
            Protocol::GrpcKserve2d => grpc_frame(&grpc_kserve_request(model, b, true)),
            Protocol::GrpcTfserving => grpc_frame(&grpc_tfserving_request(model, b)),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "|1x3 Cross validator\n25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, United-States, <=50K.\n\n38, Private, 89814, HS-grad, 9, Married-civ-spouse, Farming-fishing, Husband, White, Male, 0, 0, 50, United-States, <=50K.\n";

    #[test]
    fn parses_uci_rows() {
        let rows = parse_rows(SAMPLE).expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].ints, [25, 7, 0, 0, 40]);
        assert_eq!(rows[0].strs[0], " Private");
        assert_eq!(rows[1].strs[7], " United-States");
    }

    #[test]
    fn rejects_bad_rows() {
        assert!(parse_rows("1, 2, 3\n").is_err());
        assert!(parse_rows("x, Private, 1, 11th, 7, a, b, c, d, e, 0, 0, 40, f, g\n").is_err());
        assert!(parse_rows("|only a comment\n").is_err());
    }

    #[test]
    fn cloudml_instance_matches_the_census_sample() {
        let rows = parse_rows(SAMPLE).expect("rows");
        let body = instances_body(&[&rows[0]]);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let expected: serde_json::Value = serde_json::from_str(r#"{"instances": [{"age": 25, "workclass": " Private", "education": " 11th", "education_num": 7, "marital_status": " Never-married", "occupation": " Machine-op-inspct", "relationship": " Own-child", "race": " Black", "gender": " Male", "capital_gain": 0, "capital_loss": 0, "hours_per_week": 40, "native_country": " United-States"}]}"#).expect("json");
        assert_eq!(v, expected);
    }

    #[test]
    fn kserve_body_has_typed_tensors() {
        let rows = parse_rows(SAMPLE).expect("rows");
        let two_d = kserve_body(&[&rows[0]], true);
        assert!(two_d.contains("\"shape\":[1,1]"));
        let body = kserve_body(&[&rows[0], &rows[1]], false);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let inputs = v["inputs"].as_array().expect("inputs");
        assert_eq!(inputs.len(), 13);
        assert_eq!(inputs[0]["name"], "age");
        assert_eq!(inputs[0]["datatype"], "INT64");
        assert_eq!(inputs[0]["shape"], serde_json::json!([2]));
        assert_eq!(inputs[0]["data"], serde_json::json!([25, 38]));
        assert_eq!(inputs[5]["name"], "workclass");
        assert_eq!(inputs[5]["datatype"], "BYTES");
        assert_eq!(
            inputs[5]["data"],
            serde_json::json!([" Private", " Private"])
        );
    }

    #[test]
    fn grpc_bodies_are_framed_and_decode() {
        let rows = parse_rows(SAMPLE).expect("rows");
        let bodies = build_bodies(Protocol::GrpcKserve, "census", &rows, 2).expect("bodies");
        assert_eq!(bodies.len(), 1);
        let b = &bodies[0];
        assert_eq!(b[0], 0);
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        assert_eq!(len + 5, b.len());
        let req = ModelInferRequest::decode(&b[5..]).expect("decode");
        assert_eq!(req.model_name, "census");
        assert_eq!(
            req.inputs[0]
                .contents
                .as_ref()
                .map(|c| c.int64_contents.clone()),
            Some(vec![25, 38])
        );
        let bodies = build_bodies(Protocol::GrpcTfserving, "census", &rows, 1).expect("bodies");
        assert_eq!(bodies.len(), 2);
        let req = PredictRequest::decode(&bodies[1][5..]).expect("decode");
        assert_eq!(req.inputs["age"].int64_val, vec![38]);
        assert_eq!(req.inputs["race"].string_val, vec![b" White".to_vec()]);
        assert_eq!(req.inputs["race"].dtype, DT_STRING);
    }

    #[test]
    fn batches_cycle_through_rows() {
        let rows = parse_rows(SAMPLE).expect("rows");
        let bodies = build_bodies(Protocol::Cloudml, "census", &rows, 3).expect("bodies");
        assert_eq!(bodies.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&bodies[0]).expect("json");
        assert_eq!(v["instances"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["instances"][2]["age"], 25);
    }
}

//! Predictions as JSON: one object per instance with every output, as Cloud ML Engine answers
//! (an output of shape `[N]` gives a scalar, `[N, k]` a list, and so on), either as values or
//! written straight into a byte buffer without building them.

use serde_json::Value;

use super::json::{is_bytes_output, write_element};
use crate::status::{Error, Result};
use crate::tensor::{Tensor, TensorData};

/// The predictions written straight to `out` as JSON lines (one object per instance, then `\n`),
/// without building values: what `Value::to_string` gives for the objects of every output by name,
/// but for the elements JSON values cannot hold (see [`write_element`]: non-finite floats, the
/// strings of `_bytes` outputs).
pub fn write_prediction_lines(
    outputs: &[(String, Tensor)],
    rows: usize,
    out: &mut Vec<u8>,
) -> Result<usize> {
    write_predictions(outputs, rows, b"\n", out)
}

/// The predictions written to `out` as [`write_prediction_lines`] does, each object followed by
/// `separator` (the caller trims the last one where a list needs it).
pub fn write_predictions(
    outputs: &[(String, Tensor)],
    rows: usize,
    separator: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize> {
    write_keyed_predictions(outputs, rows, None, separator, out)
}

/// [`write_predictions`] with each object's key (batch prediction's `--key-field`) as its last
/// field; an output of the key's name is left out, the key taking its place.
pub fn write_keyed_predictions(
    outputs: &[(String, Tensor)],
    rows: usize,
    key: Option<(&str, &[Value])>,
    separator: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize> {
    let n = rows;
    let mut names = Vec::with_capacity(outputs.len());
    for (name, tensor) in outputs {
        check_rows(name, tensor, rows)?;
        names.push(serde_json::to_string(name).map_err(|e| Error::internal(e.to_string()))?);
    }
    let key_name = match key {
        Some((name, _)) => {
            Some(serde_json::to_string(name).map_err(|e| Error::internal(e.to_string()))?)
        }
        None => None,
    };
    for i in 0..n {
        out.push(b'{');
        let mut first = true;
        for ((raw, tensor), name) in outputs.iter().zip(&names) {
            if key.is_some_and(|(k, _)| k == raw) {
                continue;
            }
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            let per: usize = tensor.shape[1..].iter().product();
            let b64 = is_bytes_output(raw);
            write_nested(&tensor.data, &tensor.shape[1..], &mut (i * per), b64, out);
        }
        if let (Some((_, values)), Some(name)) = (key, &key_name) {
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            let value = values.get(i).unwrap_or(&Value::Null);
            let _ = serde_json::to_writer(&mut *out, value);
        }
        out.push(b'}');
        out.extend_from_slice(separator);
    }
    Ok(n)
}

/// An output answering `rows` instances has a row for each: one that summed the batch, or
/// repeated it, would have its rows given to the wrong instances, or lost.
fn check_rows(name: &str, tensor: &Tensor, rows: usize) -> Result<()> {
    match tensor.shape.first() {
        Some(&r) if r == rows => Ok(()),
        got => Err(Error::internal(format!(
            "the model's output '{name}' has {} rows for {rows} instances: a model answering \
             instances gives one row per instance",
            got.map_or("no".to_string(), |r| r.to_string())
        ))),
    }
}

/// TF Serving's answer for a model with one output: each instance's value alone, comma
/// separated (the caller adds the list's brackets).
pub fn write_bare_rows(name: &str, tensor: &Tensor, rows: usize, out: &mut Vec<u8>) -> Result<()> {
    check_rows(name, tensor, rows)?;
    let inner = tensor.shape.get(1..).unwrap_or_default();
    let per: usize = inner.iter().product();
    let b64 = is_bytes_output(name);
    for i in 0..rows {
        if i > 0 {
            out.push(b',');
        }
        write_nested(&tensor.data, inner, &mut (i * per), b64, out);
    }
    Ok(())
}

/// A whole tensor as nested lists (TF Serving's columnar answer).
pub fn write_tensor(name: &str, tensor: &Tensor, out: &mut Vec<u8>) {
    write_nested(
        &tensor.data,
        &tensor.shape,
        &mut 0,
        is_bytes_output(name),
        out,
    );
}

fn write_nested(
    data: &TensorData,
    shape: &[usize],
    next: &mut usize,
    b64: bool,
    out: &mut Vec<u8>,
) {
    match shape.split_first() {
        None => {
            write_element(data, *next, b64, out);
            *next += 1;
        }
        Some((&d, rest)) => {
            out.push(b'[');
            for j in 0..d {
                if j > 0 {
                    out.push(b',');
                }
                write_nested(data, rest, next, b64, out);
            }
            out.push(b']');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use serde_json::Map;

    use crate::codec::json::{nest, value_at};

    /// One JSON object per instance with every output, built as values: the reference the written
    /// predictions are compared with.
    fn encode_predictions(outputs: &[(String, Tensor)]) -> Result<Vec<Value>> {
        let n = outputs
            .first()
            .and_then(|(_, t)| t.shape.first().copied())
            .unwrap_or(0);
        let mut rows: Vec<Map<String, Value>> = (0..n).map(|_| Map::new()).collect();
        for (name, tensor) in outputs {
            if tensor.shape.first() != Some(&n) {
                return Err(Error::internal(format!(
                    "output '{name}' has batch size {:?}, expected {n}",
                    tensor.shape.first()
                )));
            }
            let per: usize = tensor.shape[1..].iter().product();
            for (i, row) in rows.iter_mut().enumerate() {
                let flat = (i * per..(i + 1) * per).map(|j| value_at(&tensor.data, j));
                row.insert(
                    name.clone(),
                    nest(
                        &tensor.shape[1..],
                        &mut flat.collect::<Vec<_>>().into_iter(),
                    ),
                );
            }
        }
        Ok(rows.into_iter().map(Value::Object).collect())
    }

    #[test]
    fn prediction_lines_equal_the_values_text() {
        let outputs = vec![
            (
                "p".to_string(),
                Tensor::new(vec![2, 2], TensorData::F32(vec![0.1, 0.9, 1e-7, 3.0])),
            ),
            (
                "c".to_string(),
                Tensor::new(vec![2], TensorData::I64(vec![1, 0])),
            ),
        ];
        let mut out = Vec::new();
        assert_eq!(write_prediction_lines(&outputs, 2, &mut out).unwrap(), 2);
        let want: String = encode_predictions(&outputs)
            .unwrap()
            .iter()
            .map(|v| format!("{v}\n"))
            .collect();
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    /// Bytes outputs as b64, non-finite floats as tokens, and a key that takes the place of an
    /// output of its name, on every path that writes predictions (online, local, batch).
    #[test]
    fn keyed_lines_write_bytes_tokens_and_the_key_last() {
        let outputs = vec![
            (
                "text_bytes".to_string(),
                Tensor::new(vec![2], TensorData::String(vec!["hi".into(), "".into()])),
            ),
            (
                "y".to_string(),
                Tensor::new(vec![2], TensorData::F32(vec![f32::NAN, f32::NEG_INFINITY])),
            ),
            (
                "k".to_string(),
                Tensor::new(vec![2], TensorData::I64(vec![5, 6])),
            ),
        ];
        let keys = [json!("a"), json!(7)];
        let mut out = Vec::new();
        let n = write_keyed_predictions(&outputs, 2, Some(("k", &keys)), b"\n", &mut out).unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"text_bytes\":{\"b64\":\"aGk=\"},\"y\":NaN,\"k\":\"a\"}\n\
             {\"text_bytes\":{\"b64\":\"\"},\"y\":-Infinity,\"k\":7}\n"
        );
    }

    #[test]
    fn encodes_one_object_per_instance() {
        let outputs = vec![
            (
                "p".to_string(),
                Tensor::new(vec![2, 2], TensorData::F32(vec![0.25, 0.75, 0.5, 0.5])),
            ),
            (
                "c".to_string(),
                Tensor::new(vec![2], TensorData::I64(vec![1, 0])),
            ),
        ];
        let rows = encode_predictions(&outputs).unwrap();
        assert_eq!(rows[0], json!({"p": [0.25, 0.75], "c": 1}));
        assert_eq!(rows[1], json!({"p": [0.5, 0.5], "c": 0}));
    }
}

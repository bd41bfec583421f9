//! Predictions as JSON: one object per instance with every output, as Cloud ML Engine answers
//! (an output of shape `[N]` gives a scalar, `[N, k]` a list, and so on), either as values or
//! written straight into a byte buffer without building them.

use serde_json::{Map, Value};

use super::json::{is_bytes_output, nest, value_at, write_element};
use crate::status::{Error, Result};
use crate::tensor::{Tensor, TensorData};

/// One JSON object per instance with every output (or those named in `only`), as Cloud ML Engine
/// answers: an output of shape `[N]` gives a scalar, `[N, k]` a list, and so on.
pub fn encode_predictions(outputs: &[(String, Tensor)]) -> Result<Vec<Value>> {
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

/// The predictions of [`encode_predictions`] written straight to `out` as JSON lines (one object
/// per instance, then `\n`), byte for byte what `Value::to_string` gives, without building values.
pub fn write_prediction_lines(outputs: &[(String, Tensor)], out: &mut Vec<u8>) -> Result<usize> {
    write_predictions(outputs, b"\n", out)
}

/// The predictions of [`encode_predictions`] written to `out`, each object followed by
/// `separator` (the caller trims the last one where a list needs it).
pub fn write_predictions(
    outputs: &[(String, Tensor)],
    separator: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize> {
    let n = outputs
        .first()
        .and_then(|(_, t)| t.shape.first().copied())
        .unwrap_or(0);
    let mut names = Vec::with_capacity(outputs.len());
    for (name, tensor) in outputs {
        if tensor.shape.first() != Some(&n) {
            return Err(Error::internal(format!(
                "output '{name}' has a different batch size"
            )));
        }
        names.push(serde_json::to_string(name).map_err(|e| Error::internal(e.to_string()))?);
    }
    for i in 0..n {
        out.push(b'{');
        for (k, ((raw, tensor), name)) in outputs.iter().zip(&names).enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            let per: usize = tensor.shape[1..].iter().product();
            let b64 = is_bytes_output(raw);
            write_nested(&tensor.data, &tensor.shape[1..], &mut (i * per), b64, out);
        }
        out.push(b'}');
        out.extend_from_slice(separator);
    }
    Ok(n)
}

/// TF Serving's answer for a model with one output: each instance's value alone, comma
/// separated (the caller adds the list's brackets).
pub fn write_bare_rows(name: &str, tensor: &Tensor, out: &mut Vec<u8>) {
    let rows = tensor.shape.first().copied().unwrap_or(0);
    let inner = tensor.shape.get(1..).unwrap_or_default();
    let per: usize = inner.iter().product();
    let b64 = is_bytes_output(name);
    for i in 0..rows {
        if i > 0 {
            out.push(b',');
        }
        write_nested(&tensor.data, inner, &mut (i * per), b64, out);
    }
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
        assert_eq!(write_prediction_lines(&outputs, &mut out).unwrap(), 2);
        let want: String = encode_predictions(&outputs)
            .unwrap()
            .iter()
            .map(|v| format!("{v}\n"))
            .collect();
        assert_eq!(String::from_utf8(out).unwrap(), want);
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

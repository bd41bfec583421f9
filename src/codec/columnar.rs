//! TF Serving's columnar JSON format: `"inputs"` holds whole-batch tensors (an object keyed by
//! input name, or the tensor itself for a single-input model) and the answer is `"outputs"`.

use serde_json::Value;

use super::json::{append, is_b64, shape_of};
use super::predictions::write_tensor;
use crate::status::{Error, Result};
use crate::tensor::{Signature, Tensor, TensorData, TensorSpec};

/// Decodes TF Serving's columnar `inputs`: an object of input name to a whole-batch tensor, or for
/// a single-input model the tensor itself.
pub fn decode(signature: &Signature, inputs: &Value) -> Result<Vec<Tensor>> {
    let single = signature.inputs.len() == 1;
    let named = match inputs {
        Value::Object(obj) if !(single && is_b64(obj)) => obj,
        value if single => {
            return Ok(vec![decode_tensor(&signature.inputs[0], value)?]);
        }
        _ => {
            return Err(Error::invalid(format!(
                "'inputs' must be an object keyed by input name ({})",
                signature.input_names()
            )))
        }
    };
    for key in named.keys() {
        if signature.input(key).is_none() {
            return Err(Error::invalid(format!(
                "unknown input '{key}' in 'inputs'; the model's inputs are {}",
                signature.input_names()
            )));
        }
    }
    signature
        .inputs
        .iter()
        .map(|spec| {
            let value = named.get(&spec.name).ok_or_else(|| {
                Error::invalid(format!("missing input '{}' in 'inputs'", spec.name))
            })?;
            decode_tensor(spec, value)
        })
        .collect()
}

fn decode_tensor(spec: &TensorSpec, value: &Value) -> Result<Tensor> {
    let ctx = |msg: String| Error::invalid(format!("input '{}': {msg}", spec.name));
    let mut shape = Vec::new();
    shape_of(value, &mut shape).map_err(ctx)?;
    if shape.len() != spec.shape.len() {
        return Err(ctx(format!(
            "expected rank {}, got rank {}",
            spec.shape.len(),
            shape.len()
        )));
    }
    let mut data = TensorData::with_capacity(spec.dtype, shape.iter().product());
    append(value, &mut data).map_err(ctx)?;
    Ok(Tensor::new(shape, data))
}

/// TF Serving's columnar answer, `{"outputs": ...}`: one output gives its tensor, several an
/// object of them.
pub fn write_answer(outputs: &[(String, Tensor)]) -> Vec<u8> {
    let mut out = b"{\"outputs\":".to_vec();
    if let [(name, t)] = outputs {
        write_tensor(name, t, &mut out);
    } else {
        out.push(b'{');
        for (k, (name, t)) in outputs.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            let _ = serde_json::to_writer(&mut out, name);
            out.push(b':');
            write_tensor(name, t, &mut out);
        }
        out.push(b'}');
    }
    out.push(b'}');
    out
}

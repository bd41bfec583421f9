//! Warm-up of a new version before it is served: the instances of `warmup.jsonl` in its
//! directory, or one synthetic row built from its signature.

use std::path::Path;

use anyhow::{Context, Result};

use crate::runtime::batcher::Batcher;
use crate::tensor::{DType, Signature, Tensor, TensorData};

/// File of JSON instances (one per line) run against a new version before it is served.
pub const WARMUP_FILE: &str = "warmup.jsonl";

/// Runs the version's warm-up instances, or one synthetic row.
pub fn warm_up(batcher: &Batcher, dir: &Path) -> Result<()> {
    let signature = batcher.signature().clone();
    let inputs = match std::fs::read_to_string(dir.join(WARMUP_FILE)) {
        Ok(text) => {
            let instances: Vec<serde_json::Value> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .with_context(|| format!("{WARMUP_FILE} is not JSON lines"))?;
            crate::codec::instances::decode_instances(&signature, &instances)?
        }
        Err(_) => synthetic_inputs(&signature),
    };
    batcher.run_blocking(inputs, vec![])?;
    Ok(())
}

/// One row of zeros (or empty strings) for every input, free dimensions set to 1.
pub fn synthetic_inputs(signature: &Signature) -> Vec<Tensor> {
    signature
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .map(|&d| if d < 0 { 1 } else { d as usize })
                .collect();
            let n: usize = shape.iter().product();
            let data = match spec.dtype {
                DType::Bool => TensorData::Bool(vec![false; n]),
                DType::U8 => TensorData::U8(vec![0; n]),
                DType::U16 => TensorData::U16(vec![0; n]),
                DType::U32 => TensorData::U32(vec![0; n]),
                DType::U64 => TensorData::U64(vec![0; n]),
                DType::I8 => TensorData::I8(vec![0; n]),
                DType::I16 => TensorData::I16(vec![0; n]),
                DType::I32 => TensorData::I32(vec![0; n]),
                DType::I64 => TensorData::I64(vec![0; n]),
                DType::F32 => TensorData::F32(vec![0.0; n]),
                DType::F64 => TensorData::F64(vec![0.0; n]),
                DType::String => TensorData::String(vec![String::new(); n]),
            };
            Tensor::new(shape, data)
        })
        .collect()
}

//! Codecs between the protocols' request and answer bodies and the core's tensors. They know
//! JSON, raw bytes and the protocols' layouts, nothing of models, versions or transports.

pub mod columnar;
pub mod example;
pub mod instances;
pub mod json;
pub mod kserve;
pub mod kserve_fast;
pub mod predictions;
pub mod raw;
pub mod scalar_objects;

/// The signature the codec tests decode against: an int64, a string and a float input, one
/// value each per instance.
#[cfg(test)]
pub(crate) fn test_signature() -> crate::tensor::Signature {
    use crate::tensor::{DType, Signature, TensorSpec};
    let spec = |name: &str, dtype| TensorSpec {
        name: name.into(),
        dtype,
        shape: vec![-1],
    };
    Signature {
        inputs: vec![
            spec("age", DType::I64),
            spec("job", DType::String),
            spec("w", DType::F32),
        ],
        outputs: vec![],
        class_labels: vec![],
    }
}

//! TF Serving's `PredictRequest` read in place from its protobuf bytes: the model spec, each input's
//! `TensorProto` built straight from its bytes, the output filter. The inputs are a list rather
//! than prost's hash map of owned names (a name given twice: the last one counts, as in the map).
//! Anything else (an input called `inputs`, which may be serialized tf.Examples, a field this
//! reader does not know, a malformed or non-UTF-8 field, a message field given twice, which
//! protobuf merges) makes [`parse`] return `None`, and the call takes prost's full decode
//! instead, so that both paths answer alike.
//!
//! Why: prost hashes and allocates every input name into a map that the handler then looks up
//! by name again, and copies every `TensorProto` as it grows that map.

use prost::encoding::WireType;

use super::proto::tensorflow::serving::{model_spec::VersionChoice, ModelSpec};
use super::proto::tensorflow::{tensor_shape_proto::Dim, TensorProto, TensorShapeProto};
use super::tensor_proto::decode;
use super::wire::{count_delimited, delimited, key, repeated, string, varint, Number};
use crate::status::{Error, Result};
use crate::tensor::{Signature, Tensor};

/// A `PredictRequest`, its names borrowed from the bytes it was read from.
#[derive(Debug, Default)]
pub struct Request<'a> {
    pub model_spec: Option<ModelSpec>,
    pub inputs: Vec<(&'a str, TensorProto)>,
    pub output_filter: Vec<&'a str>,
}

/// The input name under which TF Serving takes serialized tf.Examples; left to prost's path.
const EXAMPLES_INPUT: &str = "inputs";

/// The request, when it holds nothing but the fields above, each well-formed.
pub fn parse(mut buf: &[u8]) -> Option<Request<'_>> {
    let mut request = Request {
        inputs: Vec::with_capacity(count_delimited(buf, 2)),
        ..Request::default()
    };
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf).ok()?;
        if wire != WireType::LengthDelimited {
            return None;
        }
        match tag {
            1 if request.model_spec.is_none() => {
                request.model_spec = Some(model_spec(delimited(&mut buf)?)?)
            }
            2 => request.inputs.push(entry(delimited(&mut buf)?)?),
            3 => request.output_filter.push(string(&mut buf)?),
            _ => return None,
        }
    }
    if request
        .inputs
        .iter()
        .any(|(name, _)| *name == EXAMPLES_INPUT)
    {
        return None;
    }
    Some(request)
}

fn model_spec(mut buf: &[u8]) -> Option<ModelSpec> {
    let mut spec = ModelSpec::default();
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf).ok()?;
        if wire != WireType::LengthDelimited {
            return None;
        }
        match tag {
            1 => spec.name = string(&mut buf)?.to_string(),
            3 => spec.signature_name = string(&mut buf)?.to_string(),
            // The version's oneof, given once: a second would merge into or replace the first.
            2 if spec.version_choice.is_none() => {
                spec.version_choice =
                    Some(VersionChoice::Version(int64_value(delimited(&mut buf)?)?))
            }
            4 if spec.version_choice.is_none() => {
                spec.version_choice =
                    Some(VersionChoice::VersionLabel(string(&mut buf)?.to_string()))
            }
            _ => return None,
        }
    }
    Some(spec)
}

/// `google.protobuf.Int64Value`.
fn int64_value(mut buf: &[u8]) -> Option<i64> {
    let mut value = 0;
    while !buf.is_empty() {
        match key(&mut buf).ok()? {
            (1, WireType::Varint) => value = varint(&mut buf)? as i64,
            _ => return None,
        }
    }
    Some(value)
}

/// One entry of the `inputs` map: its name and tensor.
fn entry(mut buf: &[u8]) -> Option<(&str, TensorProto)> {
    let (mut name, mut tensor) = ("", None);
    while !buf.is_empty() {
        match key(&mut buf).ok()? {
            (1, WireType::LengthDelimited) => name = string(&mut buf)?,
            (2, WireType::LengthDelimited) if tensor.is_none() => {
                tensor = Some(tensor_proto(delimited(&mut buf)?)?)
            }
            _ => return None,
        }
    }
    Some((name, tensor.unwrap_or_default()))
}

fn tensor_proto(mut buf: &[u8]) -> Option<TensorProto> {
    let mut t = TensorProto::default();
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf).ok()?;
        match (tag, wire) {
            (1, WireType::Varint) => t.dtype = varint(&mut buf)? as i32,
            (2, WireType::LengthDelimited) if t.tensor_shape.is_none() => {
                t.tensor_shape = Some(shape(delimited(&mut buf)?)?)
            }
            (3, WireType::Varint) => t.version_number = varint(&mut buf)? as i32,
            (4, WireType::LengthDelimited) => t.tensor_content = delimited(&mut buf)?.to_vec(),
            (8, WireType::LengthDelimited) => t.string_val.push(delimited(&mut buf)?.to_vec()),
            // As protobuf reads them: int32 from a varint's low 32 bits, floats from their bits.
            (5, _) => repeated(&mut buf, wire, Number::Fixed32, |v| {
                t.float_val.push(f32::from_bits(v as u32))
            })?,
            (6, _) => repeated(&mut buf, wire, Number::Fixed64, |v| {
                t.double_val.push(f64::from_bits(v))
            })?,
            (7, _) => repeated(&mut buf, wire, Number::Varint, |v| t.int_val.push(v as i32))?,
            (9, _) => repeated(&mut buf, wire, Number::Fixed32, |v| {
                t.scomplex_val.push(f32::from_bits(v as u32))
            })?,
            (10, _) => repeated(&mut buf, wire, Number::Varint, |v| {
                t.int64_val.push(v as i64)
            })?,
            (11, _) => repeated(&mut buf, wire, Number::Varint, |v| t.bool_val.push(v != 0))?,
            (12, _) => repeated(&mut buf, wire, Number::Fixed64, |v| {
                t.dcomplex_val.push(f64::from_bits(v))
            })?,
            (13, _) => repeated(&mut buf, wire, Number::Varint, |v| {
                t.half_val.push(v as i32)
            })?,
            (16, _) => repeated(&mut buf, wire, Number::Varint, |v| {
                t.uint32_val.push(v as u32)
            })?,
            (17, _) => repeated(&mut buf, wire, Number::Varint, |v| t.uint64_val.push(v))?,
            _ => return None,
        }
    }
    Some(t)
}

fn shape(mut buf: &[u8]) -> Option<TensorShapeProto> {
    let mut shape = TensorShapeProto::default();
    while !buf.is_empty() {
        match key(&mut buf).ok()? {
            (2, WireType::LengthDelimited) => shape.dim.push(dim(delimited(&mut buf)?)?),
            (3, WireType::Varint) => shape.unknown_rank = varint(&mut buf)? != 0,
            _ => return None,
        }
    }
    Some(shape)
}

fn dim(mut buf: &[u8]) -> Option<Dim> {
    let mut dim = Dim::default();
    while !buf.is_empty() {
        match key(&mut buf).ok()? {
            (1, WireType::Varint) => dim.size = varint(&mut buf)? as i64,
            (2, WireType::LengthDelimited) => dim.name = string(&mut buf)?.to_string(),
            _ => return None,
        }
    }
    Some(dim)
}

/// The inputs as tensors in signature order, for both paths (`tfserving::decode_predict` hands
/// prost's map here): every input the model's, each model input given; of a name given twice,
/// the last.
pub fn tensors<K: AsRef<str>>(
    signature: &Signature,
    mut inputs: Vec<(K, TensorProto)>,
) -> Result<Vec<Tensor>> {
    // Where each model input is in `inputs`: the protos stay where they are until decoded.
    let mut slots: Vec<Option<usize>> = vec![None; signature.inputs.len()];
    for (i, (name, _)) in inputs.iter().enumerate() {
        let name = name.as_ref();
        let Some((index, _)) = signature.input(name) else {
            return Err(Error::invalid(format!(
                "unknown input '{name}'; the model's inputs are {}",
                signature.input_names()
            )));
        };
        slots[index] = Some(i);
    }
    signature
        .inputs
        .iter()
        .zip(slots)
        .map(|(spec, slot)| {
            let i = slot.ok_or_else(|| Error::invalid(format!("missing input '{}'", spec.name)))?;
            decode(spec, std::mem::take(&mut inputs[i].1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::grpc::proto::tensorflow::serving::PredictRequest;
    use crate::api::grpc::tensor_proto::{data_type, shape_proto};
    use crate::api::grpc::tfserving::decode_predict;
    use crate::api::grpc::wire::testing::{self, field};
    use crate::tensor::DType;
    use prost::encoding::{encode_key, encode_varint};
    use prost::Message;
    use rand::Rng;
    use rand_chacha::ChaCha8Rng;

    fn signature() -> Signature {
        testing::signature(DType::U32)
    }

    /// Both paths on the same bytes: the same spec, filter and tensors, or the same error; whether
    /// they were tensors.
    fn both(bytes: &[u8]) -> Option<bool> {
        let sig = signature();
        let wire = parse(bytes)?;
        let mut decoded = PredictRequest::decode(bytes).expect("prost decodes what parse read");
        assert_eq!(wire.model_spec, decoded.model_spec);
        let filter: Vec<&str> = decoded.output_filter.iter().map(String::as_str).collect();
        assert_eq!(wire.output_filter, filter);
        let fast = tensors(&sig, wire.inputs);
        let slow = decode_predict(&sig, &mut decoded);
        assert_eq!(fast, slow, "{bytes:?}");
        Some(fast.is_ok())
    }

    fn random_request(rng: &mut ChaCha8Rng) -> PredictRequest {
        let sig = signature();
        let mut req = PredictRequest {
            model_spec: Some(ModelSpec {
                name: "census".into(),
                signature_name: ["", "serving_default"][rng.random_range(0..2)].into(),
                version_choice: match rng.random_range(0..3) {
                    0 => None,
                    1 => Some(VersionChoice::Version(rng.random_range(0..5))),
                    _ => Some(VersionChoice::VersionLabel("stable".into())),
                },
            }),
            ..Default::default()
        };
        let mut names: Vec<usize> = (0..sig.inputs.len()).collect();
        if rng.random_bool(0.1) {
            names.remove(rng.random_range(0..names.len()));
        }
        let rows = rng.random_range(0..4usize);
        for k in names {
            let spec = &sig.inputs[k];
            let dtype = if rng.random_bool(0.97) {
                spec.dtype
            } else {
                sig.inputs[rng.random_range(0..sig.inputs.len())].dtype
            };
            // Mostly one value per row; sometimes one value to broadcast, sometimes too many.
            let count = match rng.random_range(0..20) {
                0 => 1,
                1 => rows + 1,
                _ => rows,
            };
            let mut t = TensorProto {
                dtype: data_type(dtype) as i32,
                tensor_shape: Some(shape_proto([rows as i64])),
                ..Default::default()
            };
            match dtype {
                DType::I64 => {
                    t.int64_val = (0..count)
                        .map(|_| rng.random_range(-1i64 << 40..1 << 40))
                        .collect()
                }
                DType::String => {
                    let words = ["a", "Private", "", "ü", "Self-emp", "x\0y"];
                    t.string_val = (0..count)
                        .map(|_| words[rng.random_range(0..words.len())].as_bytes().to_vec())
                        .collect();
                    if rng.random_bool(0.03) {
                        t.string_val.push(vec![0xff, 0xfe]);
                    }
                }
                DType::F32 => {
                    if rng.random_bool(0.2) {
                        let v: Vec<f32> =
                            (0..count).map(|_| rng.random_range(-1e3f32..1e3)).collect();
                        t.tensor_content = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    } else {
                        t.float_val = (0..count).map(|_| rng.random_range(-1e3f32..1e3)).collect();
                    }
                }
                DType::I8 => t.int_val = (0..count).map(|_| rng.random_range(-200..200)).collect(),
                DType::Bool => t.bool_val = (0..count).map(|_| rng.random_bool(0.5)).collect(),
                DType::F64 => {
                    t.double_val = (0..count).map(|_| rng.random_range(-1e9f64..1e9)).collect()
                }
                _ => t.uint32_val = (0..count).map(|_| rng.random_range(0..70000)).collect(),
            }
            let name = if rng.random_bool(0.98) {
                spec.name.clone()
            } else {
                "nope".into()
            };
            req.inputs.insert(name, t);
        }
        if rng.random_bool(0.3) {
            req.output_filter
                .push(["p", "q"][rng.random_range(0..2)].into());
        }
        req
    }

    #[test]
    fn reads_what_prost_reads_on_random_requests() {
        testing::agree_on_random(11, |rng| random_request(rng).encode_to_vec(), both);
    }

    /// One input `age` (DT_INT64) whose tensor is `tensor`, as an encoded request.
    fn with_age(tensor: &[u8]) -> Vec<u8> {
        let mut entry = Vec::new();
        field(1, b"age", &mut entry);
        field(2, tensor, &mut entry);
        let mut req = Vec::new();
        field(2, &entry, &mut req);
        req
    }

    #[test]
    fn reads_unpacked_values() {
        let mut tensor = Vec::new();
        encode_key(1, WireType::Varint, &mut tensor);
        encode_varint(DataType::DtInt64 as u64, &mut tensor);
        field(2, &shape_proto([2]).encode_to_vec(), &mut tensor);
        for v in [7i64, -1] {
            encode_key(10, WireType::Varint, &mut tensor);
            encode_varint(v as u64, &mut tensor);
        }
        let req = with_age(&tensor);
        assert!(both(&req).is_some());
        assert_eq!(parse(&req).unwrap().inputs[0].1.int64_val, vec![7, -1]);
    }

    use crate::api::grpc::proto::tensorflow::DataType;

    #[test]
    fn leaves_everything_else_to_prost() {
        let age = TensorProto {
            dtype: DataType::DtInt64 as i32,
            tensor_shape: Some(shape_proto([1])),
            int64_val: vec![39],
            ..Default::default()
        };
        let base = PredictRequest {
            model_spec: Some(ModelSpec {
                name: "census".into(),
                ..Default::default()
            }),
            inputs: [("age".to_string(), age.clone())].into(),
            output_filter: vec![],
        };
        let bytes = base.encode_to_vec();
        assert!(both(&bytes).is_some());
        // The same name twice: the last counts, as in prost's map.
        let mut twice = bytes.clone();
        let mut later = age.clone();
        later.int64_val = vec![40];
        twice.extend_from_slice(&with_age(&later.encode_to_vec()));
        assert_eq!(both(&twice), Some(false));
        let read = parse(&twice).unwrap();
        assert_eq!(read.inputs.len(), 2);
        let mut decoded = PredictRequest::decode(&twice[..]).unwrap();
        assert_eq!(decoded.inputs["age"].int64_val, vec![40]);
        let sig = Signature {
            inputs: signature().inputs[..1].to_vec(),
            ..Signature::default()
        };
        let fast = tensors(&sig, read.inputs).unwrap();
        assert_eq!(fast, decode_predict(&sig, &mut decoded).unwrap());
        assert_eq!(fast[0].data, crate::tensor::TensorData::I64(vec![40]));
        // Serialized examples, an unknown field.
        let mut examples = base.clone();
        examples.inputs = [("inputs".to_string(), TensorProto::default())].into();
        assert!(parse(&examples.encode_to_vec()).is_none());
        let mut unknown = bytes.clone();
        encode_key(9, WireType::Varint, &mut unknown);
        encode_varint(1, &mut unknown);
        assert!(parse(&unknown).is_none());
        // A model spec given twice, which protobuf merges.
        let mut spec_twice = bytes.clone();
        field(
            1,
            &base.model_spec.clone().unwrap().encode_to_vec(),
            &mut spec_twice,
        );
        assert!(parse(&spec_twice).is_none());
        // Not UTF-8, truncated: prost's errors, not ours.
        testing::agree_on_damage(
            &bytes,
            |b| parse(b).is_some(),
            |b| PredictRequest::decode(b).is_ok(),
        );
    }
}

//! KServe's `ModelInferRequest` read in place from its protobuf bytes and decoded straight into
//! tensors, for the requests clients send: names, datatypes, shapes, typed `contents` or
//! `raw_input_contents`, requested outputs by name. Anything else (`parameters`, a field this
//! reader does not know, a malformed or non-UTF-8 field) makes [`parse`] return `None`, and the
//! call takes prost's full decode instead, so that both paths answer every message alike.
//!
//! Why: prost first builds the whole message tree (a `String` for every name and datatype, a
//! `Vec` for every shape and contents field, a `Bytes` for every string element), which the
//! handler then converts into tensors. On the census request (14 inputs, one row) that tree was
//! about a tenth of the server's CPU per gRPC call.

use prost::encoding::WireType;

use super::wire::{count_delimited, delimited, key, repeated, string, Number};

use super::kserve::from_contents;
use super::proto::inference::InferTensorContents;
use crate::codec::kserve::{datatype, decode_inputs, Data, Input};
use crate::status::{Error, Result};
use crate::tensor::{element, DType, Signature, Tensor, TensorData};

/// A `ModelInferRequest`, borrowed from the bytes it was read from.
#[derive(Debug, Default)]
pub struct Request<'a> {
    pub model_name: &'a str,
    pub model_version: &'a str,
    pub id: &'a str,
    pub inputs: Vec<WireInput<'a>>,
    pub outputs: Vec<&'a str>,
    pub raw: Vec<&'a [u8]>,
}

/// One `InferInputTensor`, read in place or borrowed from prost's message.
#[derive(Debug, Default)]
pub struct WireInput<'a> {
    pub name: &'a str,
    pub datatype: &'a str,
    pub shape: Vec<i64>,
    pub contents: Option<Contents<'a>>,
}

/// An input's typed `contents`: the `InferTensorContents` message's bytes (already checked), or
/// the message prost decoded (boxed: its nine vectors would make every input of a request read in
/// place four times larger, and each move of one a copy of that).
#[derive(Debug)]
pub enum Contents<'a> {
    Wire(&'a [u8]),
    Decoded(Box<InferTensorContents>),
}

/// The request, when it holds nothing but the fields above, each well-formed.
pub fn parse(mut buf: &[u8]) -> Option<Request<'_>> {
    let mut request = Request {
        inputs: Vec::with_capacity(count_delimited(buf, 5)),
        ..Request::default()
    };
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf).ok()?;
        if wire != WireType::LengthDelimited {
            return None;
        }
        match tag {
            1 => request.model_name = string(&mut buf)?,
            2 => request.model_version = string(&mut buf)?,
            3 => request.id = string(&mut buf)?,
            5 => request.inputs.push(input(delimited(&mut buf)?)?),
            6 => request.outputs.push(output(delimited(&mut buf)?)?),
            7 => request.raw.push(delimited(&mut buf)?),
            _ => return None,
        }
    }
    Some(request)
}

fn input(mut buf: &[u8]) -> Option<WireInput<'_>> {
    let mut input = WireInput::default();
    while !buf.is_empty() {
        match key(&mut buf).ok()? {
            (1, WireType::LengthDelimited) => input.name = string(&mut buf)?,
            (2, WireType::LengthDelimited) => input.datatype = string(&mut buf)?,
            (3, wire) => repeated(&mut buf, wire, Number::Varint, |v| {
                input.shape.push(v as i64)
            })?,
            // A second `contents` would merge into the first (protobuf's rule for messages):
            // rare enough to leave to prost.
            (5, WireType::LengthDelimited) if input.contents.is_none() => {
                let contents = delimited(&mut buf)?;
                scan(contents, 0, |_| {})?;
                input.contents = Some(Contents::Wire(contents));
            }
            _ => return None,
        }
    }
    Some(input)
}

fn output(mut buf: &[u8]) -> Option<&str> {
    let mut name = "";
    while !buf.is_empty() {
        match key(&mut buf).ok()? {
            (1, WireType::LengthDelimited) => name = string(&mut buf)?,
            _ => return None,
        }
    }
    Some(name)
}

/// One element of an `InferTensorContents` field: a number (its bits) or a `bytes_contents`
/// entry.
enum Scalar<'a> {
    Number(u64),
    Bytes(&'a [u8]),
}

/// Walks an `InferTensorContents` message, handing the elements of field `want` (packed or not)
/// to `each` and checking every other field as prost would; `None` if any field is unknown or
/// malformed.
fn scan<'a>(mut buf: &'a [u8], want: u32, mut each: impl FnMut(Scalar<'a>)) -> Option<()> {
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf).ok()?;
        let keep = tag == want;
        let number = match tag {
            1..=5 => Number::Varint,
            6 => Number::Fixed32,
            7 => Number::Fixed64,
            8 if wire == WireType::LengthDelimited => {
                let bytes = delimited(&mut buf)?;
                if keep {
                    each(Scalar::Bytes(bytes));
                }
                continue;
            }
            _ => return None,
        };
        repeated(&mut buf, wire, number, |v| {
            if keep {
                each(Scalar::Number(v));
            }
        })?;
    }
    Some(())
}

/// The typed contents of one input as elements of `dtype`: the field that type reads, as
/// `from_contents` reads it from prost's message; strings go straight to text.
fn typed(name: &str, dtype: DType, buf: &[u8]) -> Result<TensorData> {
    let malformed = || Error::invalid(format!("input '{name}': contents are not protobuf"));
    let mut c = InferTensorContents::default();
    let walked = match dtype {
        DType::String => {
            let (mut strings, mut index, mut bad) = (Vec::new(), 0usize, None);
            scan(buf, 8, |s| {
                if let Scalar::Bytes(b) = s {
                    match element::text(b) {
                        Ok(t) if bad.is_none() => strings.push(t.to_string()),
                        Ok(_) => {}
                        Err(e) => {
                            bad.get_or_insert_with(|| format!("bytes_contents[{index}] {e}"));
                        }
                    }
                    index += 1;
                }
            })
            .ok_or_else(malformed)?;
            return match bad {
                Some(msg) => Err(Error::invalid(format!("input '{name}': {msg}"))),
                None => Ok(TensorData::String(strings)),
            };
        }
        DType::Bool => scan(buf, 1, |s| {
            if let Scalar::Number(v) = s {
                c.bool_contents.push(v != 0);
            }
        }),
        // As protobuf reads int32 and uint32 from a varint: the low 32 bits.
        DType::I8 | DType::I16 | DType::I32 => scan(buf, 2, |s| {
            if let Scalar::Number(v) = s {
                c.int_contents.push(v as i32);
            }
        }),
        DType::I64 => scan(buf, 3, |s| {
            if let Scalar::Number(v) = s {
                c.int64_contents.push(v as i64);
            }
        }),
        DType::U8 | DType::U16 | DType::U32 => scan(buf, 4, |s| {
            if let Scalar::Number(v) = s {
                c.uint_contents.push(v as u32);
            }
        }),
        DType::U64 => scan(buf, 5, |s| {
            if let Scalar::Number(v) = s {
                c.uint64_contents.push(v);
            }
        }),
        DType::F32 => scan(buf, 6, |s| {
            if let Scalar::Number(v) = s {
                c.fp32_contents.push(f32::from_bits(v as u32));
            }
        }),
        DType::F64 => scan(buf, 7, |s| {
            if let Scalar::Number(v) = s {
                c.fp64_contents.push(f64::from_bits(v));
            }
        }),
    };
    walked.ok_or_else(malformed)?;
    from_contents(name, dtype, c)
}

/// The inputs as tensors in signature order, for both paths (`kserve::decode_request` lends
/// prost's message here): raw contents (one entry per input) or typed contents, never both.
pub fn tensors(
    signature: &Signature,
    inputs: Vec<WireInput<'_>>,
    raw: &[&[u8]],
) -> Result<Vec<Tensor>> {
    if !raw.is_empty() && raw.len() != inputs.len() {
        return Err(Error::invalid(format!(
            "raw_input_contents has {} entries for {} inputs",
            raw.len(),
            inputs.len()
        )));
    }
    let mut decoded = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let name = input.name;
        let data = match (raw.get(i), input.contents) {
            (Some(raw), None) => Data::Raw(raw),
            (Some(_), Some(_)) => {
                return Err(Error::invalid(format!(
                    "input '{name}': set either raw_input_contents or contents, not both"
                )))
            }
            (None, Some(contents)) => {
                let (_, spec) = signature
                    .input(name)
                    .ok_or_else(|| Error::invalid(format!("unknown input '{name}'")))?;
                let dtype = datatype(spec, input.datatype)?;
                Data::Typed(match contents {
                    Contents::Wire(bytes) => typed(name, dtype, bytes)?,
                    Contents::Decoded(c) => from_contents(name, dtype, *c)?,
                })
            }
            (None, None) => return Err(Error::invalid(format!("input '{name}': no data"))),
        };
        decoded.push(Input {
            name,
            datatype: input.datatype,
            shape: input.shape,
            data,
        });
    }
    decode_inputs(signature, decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::grpc::kserve::decode_request;
    use crate::api::grpc::proto::inference::model_infer_request::{
        InferInputTensor, InferRequestedOutputTensor,
    };
    use crate::api::grpc::proto::inference::{InferParameter, ModelInferRequest};
    use crate::api::grpc::wire::testing::{self, field};
    use prost::encoding::{encode_key, encode_varint};
    use prost::Message;
    use rand::Rng;
    use rand_chacha::ChaCha8Rng;

    fn signature() -> Signature {
        testing::signature(DType::U16)
    }

    /// Both paths on the same bytes: the request's fields and its tensors, or the same error;
    /// whether they were tensors.
    fn both(bytes: &[u8]) -> Option<bool> {
        let sig = signature();
        let wire = parse(bytes)?;
        let mut decoded = ModelInferRequest::decode(bytes).expect("prost decodes what parse read");
        assert_eq!(wire.model_name, decoded.model_name);
        assert_eq!(wire.model_version, decoded.model_version);
        assert_eq!(wire.id, decoded.id);
        let outputs: Vec<&str> = decoded.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(wire.outputs, outputs);
        let fast = tensors(&sig, wire.inputs, &wire.raw);
        let slow = decode_request(&sig, &mut decoded);
        assert_eq!(fast, slow, "{bytes:?}");
        Some(fast.is_ok())
    }

    fn random_request(rng: &mut ChaCha8Rng) -> ModelInferRequest {
        let sig = signature();
        let mut req = ModelInferRequest {
            model_name: "census".into(),
            model_version: if rng.random_bool(0.5) {
                "3".into()
            } else {
                String::new()
            },
            id: if rng.random_bool(0.5) {
                "req-1".into()
            } else {
                String::new()
            },
            ..Default::default()
        };
        let raw = rng.random_bool(0.3);
        // Every input once in some order, sometimes one missing or one twice.
        let mut order: Vec<usize> = (0..sig.inputs.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        if rng.random_bool(0.1) {
            order.pop();
        } else if rng.random_bool(0.1) {
            order.push(order[0]);
        }
        let rows = rng.random_range(0..4usize);
        for k in order {
            let spec = &sig.inputs[k];
            // Mostly right; sometimes another type, an unknown name or a bad count.
            let dtype = if rng.random_bool(0.97) {
                spec.dtype
            } else {
                sig.inputs[rng.random_range(0..sig.inputs.len())].dtype
            };
            let count = if rng.random_bool(0.97) {
                rows
            } else {
                rows + 1
            };
            let mut c = InferTensorContents::default();
            let data = match dtype {
                DType::I64 => {
                    c.int64_contents = (0..count)
                        .map(|_| rng.random_range(-1i64 << 40..1 << 40))
                        .collect();
                    TensorData::I64(c.int64_contents.clone())
                }
                DType::String => {
                    let words = ["a", "Private", "", "ü", "Self-emp", "x\0y"];
                    let v: Vec<&str> = (0..count)
                        .map(|_| words[rng.random_range(0..words.len())])
                        .collect();
                    c.bytes_contents = v
                        .iter()
                        .map(|s| bytes::Bytes::copy_from_slice(s.as_bytes()))
                        .collect();
                    if rng.random_bool(0.1) {
                        c.bytes_contents
                            .push(bytes::Bytes::from_static(&[0xff, 0xfe]));
                    }
                    TensorData::String(v.iter().map(|s| s.to_string()).collect())
                }
                DType::F32 => {
                    c.fp32_contents = (0..count).map(|_| rng.random_range(-1e3f32..1e3)).collect();
                    TensorData::F32(c.fp32_contents.clone())
                }
                DType::I8 => {
                    c.int_contents = (0..count).map(|_| rng.random_range(-200..200)).collect();
                    TensorData::I32(c.int_contents.clone())
                }
                DType::Bool => {
                    c.bool_contents = (0..count).map(|_| rng.random_bool(0.5)).collect();
                    TensorData::Bool(c.bool_contents.clone())
                }
                DType::F64 => {
                    c.fp64_contents = (0..count).map(|_| rng.random_range(-1e9f64..1e9)).collect();
                    TensorData::F64(c.fp64_contents.clone())
                }
                _ => {
                    c.uint_contents = (0..count).map(|_| rng.random_range(0..70000)).collect();
                    TensorData::U32(c.uint_contents.clone())
                }
            };
            let name = if rng.random_bool(0.95) {
                spec.name.clone()
            } else {
                "nope".into()
            };
            let mut input = InferInputTensor {
                name,
                datatype: dtype.kserve_name().to_string(),
                shape: vec![rows as i64],
                ..Default::default()
            };
            if raw {
                let mut bytes = Vec::new();
                crate::codec::raw::encode(&data, &mut bytes);
                req.raw_input_contents.push(bytes.into());
                if rng.random_bool(0.02) {
                    input.contents = Some(c);
                }
            } else if rng.random_bool(0.98) {
                input.contents = Some(c);
            }
            req.inputs.push(input);
        }
        if raw && rng.random_bool(0.03) {
            req.raw_input_contents.pop();
        }
        for _ in 0..rng.random_range(0..3) {
            let name = ["p", "c", "q"][rng.random_range(0..3)];
            req.outputs.push(InferRequestedOutputTensor {
                name: name.into(),
                ..Default::default()
            });
        }
        req
    }

    #[test]
    fn reads_what_prost_reads_on_random_requests() {
        testing::agree_on_random(7, |rng| random_request(rng).encode_to_vec(), both);
    }

    /// Unpacked repeated numbers (protobuf allows either form) read as prost reads them.
    #[test]
    fn reads_unpacked_shapes_and_contents() {
        let mut contents = Vec::new();
        for v in [5i64, -3] {
            encode_key(3, WireType::Varint, &mut contents);
            encode_varint(v as u64, &mut contents);
        }
        let mut input = Vec::new();
        field(1, b"age", &mut input);
        field(2, b"INT64", &mut input);
        encode_key(3, WireType::Varint, &mut input);
        encode_varint(2, &mut input);
        field(5, &contents, &mut input);
        let mut req = Vec::new();
        field(5, &input, &mut req);
        assert!(both(&req).is_some());
        let wire = parse(&req).unwrap();
        assert_eq!(wire.inputs[0].shape, vec![2]);
    }

    #[test]
    fn leaves_everything_else_to_prost() {
        let base = ModelInferRequest {
            model_name: "census".into(),
            inputs: vec![InferInputTensor {
                name: "age".into(),
                datatype: "INT64".into(),
                shape: vec![1],
                contents: Some(InferTensorContents {
                    int64_contents: vec![39],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = base.encode_to_vec();
        assert!(both(&bytes).is_some());
        // Parameters.
        let mut with = base.clone();
        with.parameters
            .insert("priority".into(), InferParameter::default());
        assert!(parse(&with.encode_to_vec()).is_none());
        let mut with = base.clone();
        with.inputs[0]
            .parameters
            .insert("x".into(), InferParameter::default());
        assert!(parse(&with.encode_to_vec()).is_none());
        // An unknown field (prost skips it).
        let mut unknown = bytes.clone();
        encode_key(15, WireType::Varint, &mut unknown);
        encode_varint(1, &mut unknown);
        assert!(parse(&unknown).is_none());
        assert!(ModelInferRequest::decode(&unknown[..]).is_ok());
        // A second `contents`, which protobuf merges into the first.
        let mut twice = base.clone();
        twice.inputs[0].contents = None;
        let mut input = twice.inputs[0].encode_to_vec();
        let contents = base.inputs[0].contents.clone().unwrap().encode_to_vec();
        for _ in 0..2 {
            field(5, &contents, &mut input);
        }
        let mut req = Vec::new();
        field(5, &input, &mut req);
        assert!(parse(&req).is_none());
        // Not UTF-8, truncated: prost's errors, not ours.
        testing::agree_on_damage(
            &bytes,
            |b| parse(b).is_some(),
            |b| ModelInferRequest::decode(b).is_ok(),
        );
    }
}

//! The hot calls' answers written straight from the model's outputs as protobuf bytes:
//! KServe's `ModelInferResponse` (every output in `raw_output_contents`) and TF Serving's
//! `PredictResponse` (typed `*_val` fields). Each computes its length first, for the gRPC frame's
//! prefix and the size limit, then writes once into the frame's buffer.
//!
//! Why: through prost, every output first became a message tree (a `String` per name and
//! datatype, a `Vec` per shape and values, for TF Serving a hash map of them), which prost then
//! walked twice (length, bytes) and dropped. tonic's services still build those trees
//! (`kserve::response`, `tfserving::response`); the tests hold both to the same messages.

use bytes::BufMut;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};

use super::tensor_proto::data_type;
use crate::codec::instances::SIGNATURE_NAME;
use crate::codec::raw;
use crate::tensor::{Outputs, Tensor, TensorData};

/// A message that writes itself: `encoded_len` bytes, exactly, from `encode`.
pub trait Answer {
    fn encoded_len(&self) -> usize;
    fn encode(&self, out: &mut impl BufMut);
}

/// KServe's `ModelInferResponse`.
pub struct Infer<'a> {
    pub model_name: &'a str,
    pub model_version: &'a str,
    pub id: &'a str,
    pub outputs: &'a Outputs,
}

/// TF Serving's `PredictResponse`: the outputs, and the spec of the version that answered (its
/// signature is the only one the server's models have).
pub struct Predict<'a> {
    pub model_name: &'a str,
    pub version: u64,
    pub outputs: &'a Outputs,
}

/// A length-delimited field of `len` bytes, with its key and length.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_head(tag: u32, len: usize, out: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

/// A proto3 `string` field: left out when empty.
fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        delimited_len(tag, s.len())
    }
}

fn put_string(tag: u32, s: &str, out: &mut impl BufMut) {
    if !s.is_empty() {
        put_head(tag, s.len(), out);
        out.put_slice(s.as_bytes());
    }
}

/// A proto3 integer field: left out when zero.
fn varint_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(v)
    }
}

fn put_varint(tag: u32, v: u64, out: &mut impl BufMut) {
    if v != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(v, out);
    }
}

/// A packed repeated field's values: left out when there are none.
fn packed_len(tag: u32, body: usize, count: usize) -> usize {
    if count == 0 {
        0
    } else {
        delimited_len(tag, body)
    }
}

/// The varints of a shape's dimensions (`int64`).
fn dims_len(shape: &[usize]) -> usize {
    shape.iter().map(|&d| encoded_len_varint(d as u64)).sum()
}

/// KServe's `InferOutputTensor` of one output: name, datatype, shape.
fn infer_output_len(name: &str, t: &Tensor) -> usize {
    string_len(1, name)
        + string_len(2, t.dtype().kserve_name())
        + packed_len(3, dims_len(&t.shape), t.shape.len())
}

impl Answer for Infer<'_> {
    fn encoded_len(&self) -> usize {
        let mut len = string_len(1, self.model_name)
            + string_len(2, self.model_version)
            + string_len(3, self.id);
        for (name, t) in self.outputs {
            len += delimited_len(5, infer_output_len(name, t));
            len += delimited_len(6, raw::encoded_len(&t.data));
        }
        len
    }

    fn encode(&self, out: &mut impl BufMut) {
        put_string(1, self.model_name, out);
        put_string(2, self.model_version, out);
        put_string(3, self.id, out);
        for (name, t) in self.outputs {
            put_head(5, infer_output_len(name, t), out);
            put_string(1, name, out);
            put_string(2, t.dtype().kserve_name(), out);
            if !t.shape.is_empty() {
                put_head(3, dims_len(&t.shape), out);
                t.shape.iter().for_each(|&d| encode_varint(d as u64, out));
            }
        }
        for (_, t) in self.outputs {
            put_head(6, raw::encoded_len(&t.data), out);
            raw::encode(&t.data, out);
        }
    }
}

/// A `TensorShapeProto`: one `Dim` message per dimension (its size left out when zero).
fn shape_len(shape: &[usize]) -> usize {
    shape
        .iter()
        .map(|&d| delimited_len(2, varint_len(1, d as u64)))
        .sum()
}

/// Hands `each` the elements of a tensor whose `TensorProto` field is varints, as protobuf
/// carries them (`int32` sign-extended to 64 bits), and returns that field's tag; `None` for the
/// other types.
fn varints(data: &TensorData, mut each: impl FnMut(u64)) -> Option<u32> {
    Some(match data {
        TensorData::I32(v) => {
            v.iter().for_each(|&x| each(i64::from(x) as u64));
            7
        }
        TensorData::I16(v) => {
            v.iter().for_each(|&x| each(i64::from(x) as u64));
            7
        }
        TensorData::I8(v) => {
            v.iter().for_each(|&x| each(i64::from(x) as u64));
            7
        }
        TensorData::U8(v) => {
            v.iter().for_each(|&x| each(u64::from(x)));
            7
        }
        TensorData::U16(v) => {
            v.iter().for_each(|&x| each(u64::from(x)));
            7
        }
        TensorData::I64(v) => {
            v.iter().for_each(|&x| each(x as u64));
            10
        }
        TensorData::Bool(v) => {
            v.iter().for_each(|&x| each(u64::from(x)));
            11
        }
        TensorData::U32(v) => {
            v.iter().for_each(|&x| each(u64::from(x)));
            16
        }
        TensorData::U64(v) => {
            v.iter().for_each(|&x| each(x));
            17
        }
        TensorData::F32(_) | TensorData::F64(_) | TensorData::String(_) => return None,
    })
}

/// A packed varint field's tag, body length and element count.
fn varints_len(data: &TensorData) -> Option<(u32, usize, usize)> {
    let (mut body, mut count) = (0, 0);
    let tag = varints(data, |x| {
        body += encoded_len_varint(x);
        count += 1;
    })?;
    Some((tag, body, count))
}

/// A `TensorProto` of one output: dtype, shape, values in the field its type uses.
fn tensor_proto_len(t: &Tensor) -> usize {
    let head = varint_len(1, data_type(t.dtype()) as u64) + delimited_len(2, shape_len(&t.shape));
    let values = match &t.data {
        TensorData::F32(v) => packed_len(5, v.len() * 4, v.len()),
        TensorData::F64(v) => packed_len(6, v.len() * 8, v.len()),
        TensorData::String(v) => v.iter().map(|s| delimited_len(8, s.len())).sum(),
        data => varints_len(data).map_or(0, |(tag, body, count)| packed_len(tag, body, count)),
    };
    head + values
}

fn put_tensor_proto(t: &Tensor, out: &mut impl BufMut) {
    put_varint(1, data_type(t.dtype()) as u64, out);
    put_head(2, shape_len(&t.shape), out);
    for &d in &t.shape {
        put_head(2, varint_len(1, d as u64), out);
        put_varint(1, d as u64, out);
    }
    match &t.data {
        TensorData::F32(v) if !v.is_empty() => {
            put_head(5, v.len() * 4, out);
            v.iter().for_each(|&x| out.put_f32_le(x));
        }
        TensorData::F64(v) if !v.is_empty() => {
            put_head(6, v.len() * 8, out);
            v.iter().for_each(|&x| out.put_f64_le(x));
        }
        TensorData::String(v) => v.iter().for_each(|s| {
            put_head(8, s.len(), out);
            out.put_slice(s.as_bytes());
        }),
        data => {
            if let Some((tag, body, count)) = varints_len(data) {
                if count > 0 {
                    put_head(tag, body, out);
                    varints(data, |x| encode_varint(x, out));
                }
            }
        }
    }
}

/// One entry of the `outputs` map: the name (left out when empty, as prost leaves a map entry's
/// default key out) and the tensor.
fn entry_len(name: &str, t: &Tensor) -> usize {
    string_len(1, name) + delimited_len(2, tensor_proto_len(t))
}

/// The `ModelSpec` of the version that answered: name, version (an `Int64Value`), signature.
fn spec_len(p: &Predict) -> usize {
    string_len(1, p.model_name)
        + delimited_len(2, varint_len(1, p.version))
        + string_len(3, SIGNATURE_NAME)
}

impl Answer for Predict<'_> {
    fn encoded_len(&self) -> usize {
        let outputs: usize = self
            .outputs
            .iter()
            .map(|(name, t)| delimited_len(1, entry_len(name, t)))
            .sum();
        outputs + delimited_len(2, spec_len(self))
    }

    fn encode(&self, out: &mut impl BufMut) {
        for (name, t) in self.outputs {
            put_head(1, entry_len(name, t), out);
            put_string(1, name, out);
            put_head(2, tensor_proto_len(t), out);
            put_tensor_proto(t, out);
        }
        put_head(2, spec_len(self), out);
        put_string(1, self.model_name, out);
        put_head(2, varint_len(1, self.version), out);
        put_varint(1, self.version, out);
        put_string(3, SIGNATURE_NAME, out);
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::api::grpc::proto::inference::ModelInferResponse;
    use crate::api::grpc::proto::tensorflow::serving::PredictResponse;
    use crate::api::grpc::{kserve, tfserving};
    use crate::tensor::DType;

    /// Outputs of every element type, random shapes (empty, zero-sized, scalar) and values at
    /// the edges of their types.
    fn random_outputs(rng: &mut ChaCha8Rng) -> Outputs {
        let count = rng.random_range(0..5);
        (0..count)
            .map(|i| {
                let types: Vec<DType> = DType::all().collect();
                let dtype = types[rng.random_range(0..types.len())];
                let shape: Vec<usize> = (0..rng.random_range(0..3))
                    .map(|_| rng.random_range(0..4))
                    .collect();
                let n: usize = shape.iter().product();
                let mut data = TensorData::with_capacity(dtype, n);
                for _ in 0..n {
                    let x: i64 = match rng.random_range(0..4) {
                        0 => 0,
                        1 => -1,
                        2 => i64::MAX,
                        _ => rng.random_range(-300..300),
                    };
                    let one = match dtype {
                        DType::Bool => TensorData::Bool(vec![x & 1 == 1]),
                        DType::U8 => TensorData::U8(vec![x as u8]),
                        DType::U16 => TensorData::U16(vec![x as u16]),
                        DType::U32 => TensorData::U32(vec![x as u32]),
                        DType::U64 => TensorData::U64(vec![x as u64]),
                        DType::I8 => TensorData::I8(vec![x as i8]),
                        DType::I16 => TensorData::I16(vec![x as i16]),
                        DType::I32 => TensorData::I32(vec![x as i32]),
                        DType::I64 => TensorData::I64(vec![x]),
                        DType::F32 => TensorData::F32(vec![x as f32 / 7.0]),
                        DType::F64 => TensorData::F64(vec![x as f64 / 7.0]),
                        DType::String => {
                            TensorData::String(vec!["ü ".repeat(x.rem_euclid(3) as usize)])
                        }
                    };
                    data.append(one).unwrap();
                }
                let name = if i == 0 && rng.random_bool(0.2) {
                    String::new()
                } else {
                    format!("out{i}")
                };
                (name, Tensor::new(shape, data))
            })
            .collect()
    }

    fn written(answer: &impl Answer) -> Vec<u8> {
        let mut out = Vec::new();
        answer.encode(&mut out);
        assert_eq!(out.len(), answer.encoded_len());
        out
    }

    #[test]
    fn infer_answers_are_the_bytes_prost_writes() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for _ in 0..2000 {
            let outputs = random_outputs(&mut rng);
            let (name, version, id) = match rng.random_range(0..3) {
                0 => ("", "", ""),
                1 => ("census", "1796085651", ""),
                _ => ("m", "7", "req-1"),
            };
            let ours = written(&Infer {
                model_name: name,
                model_version: version,
                id,
                outputs: &outputs,
            });
            let tree = kserve::response(name.into(), version.into(), id.into(), outputs);
            assert_eq!(ours, tree.encode_to_vec());
            assert_eq!(ModelInferResponse::decode(&ours[..]).unwrap(), tree);
        }
    }

    #[test]
    fn predict_answers_decode_to_the_message_prost_builds() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for _ in 0..2000 {
            let outputs = random_outputs(&mut rng);
            let version = [0u64, 1, 1796085651, u64::MAX][rng.random_range(0..4)];
            let name = ["census", ""][rng.random_range(0..2)];
            let ours = written(&Predict {
                model_name: name,
                version,
                outputs: &outputs,
            });
            let tree = tfserving::response(name, version, &outputs);
            let read = PredictResponse::decode(&ours[..]).unwrap();
            assert_eq!(read, tree);
            // Same length as prost's (its map order differs from ours).
            assert_eq!(ours.len(), tree.encoded_len());
        }
    }
}

//! The fast decoder of the common KServe v2 REST body: JSON inputs whose `name`, `datatype` (the
//! model's own) and `shape` come before a flat `data` list of scalars, decoded straight into the
//! column buffers without a `serde_json::Value` per element. Anything else (nested data, another
//! datatype, `parameters`, `outputs`, binary data, a missing or unknown input, a count that does
//! not fit the shape) makes it give up, and the general decoder of [`super::kserve`], whose
//! errors name the input and the problem, takes over.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::kserve::{element_count, RestRequest};
use super::scalar_objects::{Key, Scalar};
use crate::tensor::{Signature, Tensor, TensorData};

/// A REST infer body, through the fast path when it applies (a plain JSON body), otherwise
/// through the general decoder.
pub fn decode_rest(
    signature: &Signature,
    body: &[u8],
    header_len: Option<usize>,
) -> crate::status::Result<RestRequest> {
    if header_len.is_none() {
        if let Some(request) = decode(signature, body) {
            return Ok(request);
        }
    }
    super::kserve::decode_rest(signature, body, header_len)
}

/// The request, or `None` when the fast path does not apply.
pub fn decode(signature: &Signature, body: &[u8]) -> Option<RestRequest> {
    let mut tensors: Vec<Option<Tensor>> = vec![None; signature.inputs.len()];
    let mut de = serde_json::Deserializer::from_slice(body);
    let id = Body {
        signature,
        tensors: &mut tensors,
    }
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    let inputs = tensors.into_iter().collect::<Option<Vec<_>>>()?;
    Some(RestRequest {
        inputs,
        wanted: vec![],
        timeout: None,
        id,
        binary: vec![],
    })
}

/// The keys the fast path knows, matched without allocating.
enum Field {
    Id,
    Inputs,
    Name,
    Datatype,
    Shape,
    Data,
    Other,
}

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "id" => Field::Id,
                    "inputs" => Field::Inputs,
                    "name" => Field::Name,
                    "datatype" => Field::Datatype,
                    "shape" => Field::Shape,
                    "data" => Field::Data,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_str(FieldVisitor)
    }
}

/// The request object: `inputs` and an optional string `id`.
struct Body<'a> {
    signature: &'a Signature,
    tensors: &'a mut [Option<Tensor>],
}

impl<'de> DeserializeSeed<'de> for Body<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Body<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an infer request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut id = None;
        let mut inputs = false;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Id if id.is_none() => id = Some(Value::String(map.next_value()?)),
                Field::Inputs if !inputs => {
                    inputs = true;
                    map.next_value_seed(Inputs {
                        signature: self.signature,
                        tensors: &mut *self.tensors,
                    })?;
                }
                _ => return Err(A::Error::custom("not the common request")),
            }
        }
        Ok(id)
    }
}

struct Inputs<'a> {
    signature: &'a Signature,
    tensors: &'a mut [Option<Tensor>],
}

impl<'de> DeserializeSeed<'de> for Inputs<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Inputs<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of inputs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some((index, tensor)) = seq.next_element_seed(Input(self.signature))? {
            if self.tensors[index].replace(tensor).is_some() {
                return Err(A::Error::custom("input given twice"));
            }
        }
        Ok(())
    }
}

/// One input object, decoded into its tensor and its index in the signature.
struct Input<'a>(&'a Signature);

impl<'de> DeserializeSeed<'de> for Input<'_> {
    type Value = (usize, Tensor);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Input<'_> {
    type Value = (usize, Tensor);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an input")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let give_up = || A::Error::custom("not the common input");
        let mut index = None;
        let mut datatype = false;
        let mut shape: Option<Vec<usize>> = None;
        let mut data = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Name if index.is_none() => index = Some(map.next_value_seed(Key(self.0))?),
                // The model's own datatype only: conversions are the general decoder's.
                Field::Datatype if !datatype => {
                    let i = index.ok_or_else(give_up)?;
                    let name: &str = map.next_value()?;
                    if name != self.0.inputs[i].dtype.kserve_name() {
                        return Err(give_up());
                    }
                    datatype = true;
                }
                Field::Shape if shape.is_none() => shape = Some(map.next_value()?),
                Field::Data if data.is_none() && datatype => {
                    let i = index.ok_or_else(give_up)?;
                    let count = shape
                        .as_deref()
                        .and_then(element_count)
                        .ok_or_else(give_up)?;
                    // Never more than the shape asks for: the data must match it anyway.
                    let mut column =
                        TensorData::with_capacity(self.0.inputs[i].dtype, count.min(1 << 16));
                    map.next_value_seed(Flat(&mut column))?;
                    data = Some(column);
                }
                _ => return Err(give_up()),
            }
        }
        let (Some(index), Some(shape), Some(data)) = (index, shape, data) else {
            return Err(give_up());
        };
        if self.0.inputs[index].check_shape(&shape).is_err()
            || element_count(&shape) != Some(data.len())
        {
            return Err(give_up());
        }
        Ok((index, Tensor::new(shape, data)))
    }
}

/// A flat list of scalars appended to one column.
struct Flat<'a>(&'a mut TensorData);

impl<'de> DeserializeSeed<'de> for Flat<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Flat<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a flat list of values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Scalar(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_signature as sig;

    fn general(body: &[u8]) -> crate::status::Result<RestRequest> {
        crate::codec::kserve::decode_rest(&sig(), body, None)
    }

    #[test]
    fn common_bodies_decode_like_the_general_decoder() {
        let body = br#"{"id": "r1", "inputs": [
            {"name": "job", "shape": [2], "datatype": "BYTES", "data": [" x", "y\u00e9"]},
            {"name": "age", "shape": [2], "datatype": "INT64", "data": [25, 30.0]},
            {"name": "w", "datatype": "FP32", "shape": [2], "data": [1.5, 2]}]}"#;
        let fast = decode(&sig(), body).unwrap();
        let slow = general(body).unwrap();
        assert_eq!(fast.inputs, slow.inputs);
        assert_eq!(fast.id, slow.id);
        assert_eq!(fast.inputs[0].shape, vec![2]);
        for odd in [
            // Conversions, nesting, extra keys, options and mistakes: the general decoder's.
            &br#"{"inputs": [{"name": "age", "shape": [1], "datatype": "INT32", "data": [25]}, {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["x"]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}]}"#[..],
            br#"{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [[25]]}, {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["x"]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}]}"#,
            br#"{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [25]}, {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["x"]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}], "outputs": [{"name": "p"}]}"#,
            br#"{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [25]}, {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["x"]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}], "parameters": {"timeout": 5}}"#,
            br#"{"inputs": [{"name": "age", "shape": [2], "datatype": "INT64", "data": [25]}, {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["x"]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}]}"#,
            br#"{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [25]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}]}"#,
            br#"{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [25]}, {"name": "age", "shape": [1], "datatype": "INT64", "data": [25]}, {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["x"]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}]}"#,
            br#"{"inputs": [{"data": [25], "name": "age", "shape": [1], "datatype": "INT64"}, {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["x"]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}]}"#,
            br#"{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [25], "parameters": {}}, {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["x"]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}]}"#,
            br#"{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [25]}, {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["a\u0000b"]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}]}"#,
            br#"{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [25.5]}, {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["x"]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}]}"#,
            br#"{"inputs": [{"name": "nope", "shape": [1], "datatype": "INT64", "data": [25]}]}"#,
            br#"{"inputs": [], "id": 7}"#,
            br#"{"inputs": []}"#,
            br#"{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [25]}, {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["x"]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}]} x"#,
        ] {
            assert!(decode(&sig(), odd).is_none(), "{}", String::from_utf8_lossy(odd));
        }
    }
}

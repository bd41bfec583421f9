//! The fast decoder of the common KServe v2 REST body: JSON inputs whose `name`, `datatype` (the
//! model's own) and `shape` come before a flat `data` list of scalars, decoded straight into the
//! column buffers without a `serde_json::Value` per element; with the request options clients
//! send most (tritonclient's `binary_data_output` and `timeout` parameters, outputs by name with
//! their `binary_data` flag). Anything else (nested data, another datatype, other parameters,
//! binary data, a missing or unknown input or output, a count that does not fit the shape) makes
//! it give up, and the general decoder of [`super::kserve`], whose errors name the input and the
//! problem, takes over.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::kserve::{binary_outputs, element_count, timeout_parameter, RestRequest};
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
    let options = Body {
        signature,
        tensors: &mut tensors,
    }
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    let inputs = tensors.into_iter().collect::<Option<Vec<_>>>()?;
    let (wanted, own): (Vec<usize>, Vec<Option<bool>>) = options.outputs.into_iter().unzip();
    Some(RestRequest {
        inputs,
        binary: binary_outputs(signature, &wanted, &own, options.binary_output),
        wanted,
        timeout: match options.timeout {
            Some(micros) => timeout_parameter(Some(micros)).ok()?,
            None => None,
        },
        id: options.id,
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
    Parameters,
    Outputs,
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
                    "parameters" => Field::Parameters,
                    "outputs" => Field::Outputs,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_str(FieldVisitor)
    }
}

/// The request object: `inputs`, and optionally a string `id`, `parameters` and `outputs`.
struct Body<'a> {
    signature: &'a Signature,
    tensors: &'a mut [Option<Tensor>],
}

/// What a request asks besides its inputs.
#[derive(Default)]
struct Options {
    id: Option<Value>,
    binary_output: bool,
    /// Triton's `timeout` parameter, in microseconds, when given.
    timeout: Option<u64>,
    /// The outputs listed, as signature indices, each with its own `binary_data` flag.
    outputs: Vec<(usize, Option<bool>)>,
}

impl<'de> DeserializeSeed<'de> for Body<'_> {
    type Value = Options;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Body<'_> {
    type Value = Options;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an infer request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut options = Options::default();
        let (mut inputs, mut parameters, mut outputs) = (false, false, false);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Id if options.id.is_none() => {
                    options.id = Some(Value::String(map.next_value()?));
                }
                Field::Inputs if !inputs => {
                    inputs = true;
                    map.next_value_seed(Inputs {
                        signature: self.signature,
                        tensors: &mut *self.tensors,
                    })?;
                }
                Field::Parameters if !parameters => {
                    parameters = true;
                    let p: Parameters = map.next_value()?;
                    (options.binary_output, options.timeout) =
                        (p.binary_data_output.unwrap_or(false), p.timeout);
                }
                Field::Outputs if !outputs => {
                    outputs = true;
                    for o in map.next_value::<Vec<Output>>()? {
                        let (index, _) = self
                            .signature
                            .output(&o.name)
                            .ok_or_else(|| A::Error::custom("an unknown output"))?;
                        let binary = o.parameters.and_then(|p| p.binary_data);
                        options.outputs.push((index, binary));
                    }
                }
                _ => return Err(A::Error::custom("not the common request")),
            }
        }
        Ok(options)
    }
}

/// The request's `parameters` the fast path takes; any other key is the general decoder's.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Parameters {
    binary_data_output: Option<bool>,
    /// Triton's `timeout`, in microseconds.
    timeout: Option<u64>,
}

/// One listed output: its name and at most its `binary_data` flag (Triton's classification is
/// the general decoder's to refuse).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Output<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    parameters: Option<OutputParameters>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputParameters {
    binary_data: Option<bool>,
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
            br#"{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [25]}, {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["x"]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}], "parameters": {"priority": 5}}"#,
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

    /// The options tritonclient sends most (binary answers, a timeout, outputs by name) read
    /// as the general decoder reads them; anything else about them is the general decoder's.
    #[test]
    fn common_options_decode_like_the_general_decoder() {
        let mut signature = sig();
        let spec = |name: &str| crate::tensor::TensorSpec {
            name: name.into(),
            dtype: crate::tensor::DType::F32,
            shape: vec![-1],
        };
        signature.outputs = vec![spec("p"), spec("q")];
        let inputs = r#""inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [25]}, {"name": "job", "shape": [1], "datatype": "BYTES", "data": ["x"]}, {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}]"#;
        for options in [
            r#""parameters": {"binary_data_output": true}"#,
            r#""parameters": {"timeout": 5000, "binary_data_output": false}"#,
            r#""parameters": {"timeout": 0}"#,
            r#""outputs": [{"name": "q"}, {"name": "p", "parameters": {"binary_data": true}}]"#,
            r#""outputs": [{"name": "q", "parameters": {"binary_data": false}}], "parameters": {"binary_data_output": true}"#,
            r#""outputs": []"#,
        ] {
            let body = format!("{{{inputs}, {options}}}");
            let fast = decode(&signature, body.as_bytes())
                .unwrap_or_else(|| panic!("{options}: not on the fast path"));
            let slow =
                crate::codec::kserve::decode_rest(&signature, body.as_bytes(), None).unwrap();
            assert_eq!(fast.inputs, slow.inputs, "{options}");
            assert_eq!(fast.wanted, slow.wanted, "{options}");
            assert_eq!(fast.binary, slow.binary, "{options}");
            assert_eq!(fast.timeout, slow.timeout, "{options}");
        }
        for odd in [
            r#""parameters": {"binary_data_output": "yes"}"#,
            r#""parameters": {"timeout": -1}"#,
            r#""outputs": [{"name": "nope"}]"#,
            r#""outputs": [{"name": "p", "parameters": {"classification": 2}}]"#,
            r#""outputs": [{"name": "p", "parameters": {"binary_data": 1}}]"#,
        ] {
            let body = format!("{{{inputs}, {odd}}}");
            assert!(decode(&signature, body.as_bytes()).is_none(), "{odd}");
            assert!(
                crate::codec::kserve::decode_rest(&signature, body.as_bytes(), None).is_err(),
                "{odd}"
            );
        }
    }
}

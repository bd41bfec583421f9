//! The fast decoder of the common request: JSON objects whose values are scalars, decoded
//! straight into the column buffers without building a `serde_json::Value` per instance.
//! Anything unusual (nested lists, `{"b64": ...}`, a wrong type, a missing or unknown key) makes
//! it give up, and the general decoder of [`super::instances`], whose errors name the instance
//! and the input, takes over.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, Visitor};

use crate::tensor::{element, Signature, Tensor, TensorData};

/// Tensors for `lines` (one JSON object each), or `None` when the fast path does not apply.
pub fn decode_lines(signature: &Signature, lines: &[&str]) -> Option<Vec<Tensor>> {
    if signature.inputs.iter().any(|s| s.shape.len() != 1) {
        return None;
    }
    let mut columns: Vec<TensorData> = signature
        .inputs
        .iter()
        .map(|s| TensorData::with_capacity(s.dtype, lines.len()))
        .collect();
    let mut seen = vec![false; columns.len()];
    for line in lines {
        seen.iter_mut().for_each(|s| *s = false);
        let mut de = serde_json::Deserializer::from_str(line);
        let row = Row {
            signature,
            columns: &mut columns,
            seen: &mut seen,
        };
        row.deserialize(&mut de).ok()?;
        de.end().ok()?;
        if seen.iter().any(|s| !s) {
            return None;
        }
    }
    Some(
        columns
            .into_iter()
            .map(|data| Tensor::new(vec![lines.len()], data))
            .collect(),
    )
}

/// Tensors for a predict body of exactly `{"instances": [<object>, ...]}`, or `None` when the
/// fast path does not apply.
pub fn decode_body(signature: &Signature, body: &[u8]) -> Option<Vec<Tensor>> {
    if signature.inputs.iter().any(|s| s.shape.len() != 1) {
        return None;
    }
    let mut columns: Vec<TensorData> = signature
        .inputs
        .iter()
        .map(|s| TensorData::with_capacity(s.dtype, 1))
        .collect();
    let mut seen = vec![false; columns.len()];
    let mut de = serde_json::Deserializer::from_slice(body);
    let rows = Body(Instances {
        signature,
        columns: &mut columns,
        seen: &mut seen,
    })
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    // No instances is an error, which the general decoder words.
    if rows == 0 {
        return None;
    }
    Some(
        columns
            .into_iter()
            .map(|data| Tensor::new(vec![rows], data))
            .collect(),
    )
}

/// The request object: one key, `instances`.
struct Body<'a>(Instances<'a>);

impl<'de> DeserializeSeed<'de> for Body<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Body<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with 'instances'")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let key: Option<std::borrow::Cow<'de, str>> = map.next_key()?;
        if key.as_deref() != Some("instances") {
            return Err(A::Error::custom("not an instances body"));
        }
        let rows = map.next_value_seed(self.0)?;
        if map.next_key::<std::borrow::Cow<'de, str>>()?.is_some() {
            return Err(A::Error::custom("more than 'instances'"));
        }
        Ok(rows)
    }
}

/// The list of instance objects, appended row by row to the columns.
struct Instances<'a> {
    signature: &'a Signature,
    columns: &'a mut [TensorData],
    seen: &'a mut [bool],
}

impl<'de> DeserializeSeed<'de> for Instances<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Instances<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of instances")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut rows = 0;
        loop {
            self.seen.iter_mut().for_each(|s| *s = false);
            let row = Row {
                signature: self.signature,
                columns: self.columns,
                seen: self.seen,
            };
            if seq.next_element_seed(row)?.is_none() {
                return Ok(rows);
            }
            if self.seen.iter().any(|s| !s) {
                return Err(A::Error::custom("missing input"));
            }
            rows += 1;
        }
    }
}

struct Row<'a> {
    signature: &'a Signature,
    columns: &'a mut [TensorData],
    seen: &'a mut [bool],
}

impl<'de> DeserializeSeed<'de> for Row<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Row<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of scalar inputs")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(index) = map.next_key_seed(Key(self.signature))? {
            if std::mem::replace(&mut self.seen[index], true) {
                return Err(A::Error::custom("duplicate key"));
            }
            map.next_value_seed(Scalar(&mut self.columns[index]))?;
        }
        Ok(())
    }
}

/// Resolves a key to its input index without allocating.
pub(super) struct Key<'a>(pub(super) &'a Signature);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Key<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an input name")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<usize, E> {
        self.0
            .inputs
            .iter()
            .position(|s| s.name == v)
            .ok_or_else(|| E::custom("unknown input"))
    }
}

/// Appends one scalar of the column's type.
pub(super) struct Scalar<'a>(pub(super) &'a mut TensorData);

impl<'de> DeserializeSeed<'de> for Scalar<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Scalar<'_> {
    fn integer<E: serde::de::Error>(self, v: i128) -> Result<(), E> {
        let range = || E::custom("out of range");
        match self.0 {
            TensorData::I64(c) => c.push(i64::try_from(v).map_err(|_| range())?),
            TensorData::I32(c) => c.push(i32::try_from(v).map_err(|_| range())?),
            TensorData::I16(c) => c.push(i16::try_from(v).map_err(|_| range())?),
            TensorData::I8(c) => c.push(i8::try_from(v).map_err(|_| range())?),
            TensorData::U64(c) => c.push(u64::try_from(v).map_err(|_| range())?),
            TensorData::U32(c) => c.push(u32::try_from(v).map_err(|_| range())?),
            TensorData::U16(c) => c.push(u16::try_from(v).map_err(|_| range())?),
            TensorData::U8(c) => c.push(u8::try_from(v).map_err(|_| range())?),
            TensorData::F32(c) => c.push(v as f32),
            TensorData::F64(c) => c.push(v as f64),
            _ => return Err(E::custom("wrong type")),
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Scalar<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.integer(v as i128)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.integer(v as i128)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        match self.0 {
            // Past FP32's range: the general decoder names the value.
            TensorData::F32(c) => c.push(element::to_f32(v).ok_or_else(|| E::custom("range"))?),
            TensorData::F64(c) => c.push(v),
            _ => match element::integral(v) {
                Some(i) => return self.integer(i),
                None => return Err(E::custom("wrong type")),
            },
        }
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        match self.0 {
            TensorData::Bool(c) => c.push(v),
            _ => return Err(E::custom("wrong type")),
        }
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        match self.0 {
            TensorData::String(c) if element::check_text(v).is_ok() => c.push(v.to_string()),
            _ => return Err(E::custom("wrong type")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::instances::decode_instances;
    use crate::codec::test_signature as sig;

    #[test]
    fn instances_bodies_decode_like_the_general_decoder() {
        let body = br#"{"instances": [{"age": 25, "job": " x", "w": 1.5}, {"w": 2, "job": "y", "age": 30.0}]}"#;
        let fast = decode_body(&sig(), body).unwrap();
        let value: serde_json::Value = serde_json::from_slice(body).unwrap();
        let instances = value["instances"].as_array().unwrap();
        assert_eq!(fast, decode_instances(&sig(), instances).unwrap());
        assert_eq!(fast[0].shape, vec![2]);
        for odd in [
            &br#"{"instances": []}"#[..],
            br#"{"instances": [{"age": 25, "job": "x"}]}"#,
            br#"{"instances": [{"age": 25, "job": "x", "w": 1}], "signature_name": "x"}"#,
            br#"{"inputs": {"age": [25], "job": ["x"], "w": [1]}}"#,
            br#"{"instances": {"age": 25, "job": "x", "w": 1}}"#,
            br#"{"instances": [{"age": NaN, "job": "x", "w": 1}]}"#,
            br#"{"instances": [{"age": 25, "job": "x", "w": 1}]} x"#,
        ] {
            assert!(
                decode_body(&sig(), odd).is_none(),
                "{}",
                String::from_utf8_lossy(odd)
            );
        }
    }

    #[test]
    fn agrees_with_the_general_decoder_and_gives_up_on_anything_unusual() {
        let lines = [
            r#"{"age": 25, "job": " x", "w": 1.5}"#,
            r#"{"w": 2, "job": "y\u00e9", "age": 30.0}"#,
        ];
        let fast = decode_lines(&sig(), &lines).unwrap();
        let values: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(fast, decode_instances(&sig(), &values).unwrap());
        for odd in [
            r#"{"age": 25, "job": "x"}"#,
            r#"{"age": 25, "job": "x", "w": 1, "extra": 1}"#,
            r#"{"age": 25.5, "job": "x", "w": 1}"#,
            r#"{"age": "25", "job": "x", "w": 1}"#,
            r#"{"age": 25, "job": {"b64": "eA=="}, "w": 1}"#,
            r#"{"age": 25, "job": "a\u0000b", "w": 1}"#,
            r#"{"age": 25, "age": 26, "job": "x", "w": 1}"#,
            r#"{"age": [25], "job": "x", "w": 1}"#,
            r#"{"age": 25, "job": "x", "w": 1} trailing"#,
            "[1, 2]",
        ] {
            assert!(decode_lines(&sig(), &[odd]).is_none(), "{odd}");
        }
    }
}

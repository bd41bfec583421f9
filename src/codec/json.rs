//! JSON elements both ways, the rules every JSON codec shares: numbers into any element type
//! (integral floats count as integers, `NaN` / `Infinity` tokens as floats), strings and
//! `{"b64": ...}` values into string elements, nested lists and their shapes, and elements back
//! into JSON values.

use serde_json::{Map, Value};

use crate::status::{self, Error};
use crate::tensor::{element, DType, TensorData};

/// Whether an object is TF Serving's `{"b64": ...}` wrapper of binary data.
pub fn is_b64(obj: &Map<String, Value>) -> bool {
    obj.len() == 1 && obj.contains_key("b64")
}

/// The shape of a nested JSON list; ragged lists are an error.
pub fn shape_of(value: &Value, shape: &mut Vec<usize>) -> Result<(), String> {
    if let Value::Array(items) = value {
        shape.push(items.len());
        let mut inner: Option<Vec<usize>> = None;
        for item in items {
            let mut s = Vec::new();
            shape_of(item, &mut s)?;
            match &inner {
                Some(prev) if *prev != s => return Err("ragged nested list".to_string()),
                Some(_) => {}
                None => inner = Some(s),
            }
        }
        shape.extend(inner.unwrap_or_default());
    }
    Ok(())
}

pub fn describe(value: &Value) -> String {
    if let Some(token) = value.as_str().and_then(non_finite) {
        return token.to_string();
    }
    let text = value.to_string();
    if text.len() > 40 {
        format!("{}...", &text[..text.floor_char_boundary(40)])
    } else {
        text
    }
}

/// Appends the leaves of `value` (already shape-checked) to `data`, converting to its type.
pub fn append(value: &Value, data: &mut TensorData) -> Result<(), String> {
    if let Value::Array(items) = value {
        for item in items {
            append(item, data)?;
        }
        return Ok(());
    }
    let dtype = data.dtype();
    macro_rules! int {
        ($v:expr, $t:ty) => {{
            let x = integer(value, dtype)?;
            let y = <$t>::try_from(x).map_err(|_| format!("{x} is out of range for {dtype}"))?;
            $v.push(y)
        }};
    }
    match data {
        TensorData::Bool(v) => v.push(
            value
                .as_bool()
                .ok_or_else(|| format!("expected a boolean, got {}", describe(value)))?,
        ),
        TensorData::U8(v) => int!(v, u8),
        TensorData::U16(v) => int!(v, u16),
        TensorData::U32(v) => int!(v, u32),
        TensorData::U64(v) => int!(v, u64),
        TensorData::I8(v) => int!(v, i8),
        TensorData::I16(v) => int!(v, i16),
        TensorData::I32(v) => int!(v, i32),
        TensorData::I64(v) => int!(v, i64),
        TensorData::F32(v) => {
            let x = float(value, dtype)?;
            v.push(element::to_f32(x).ok_or_else(|| format!("{x:e} is out of FP32's range"))?)
        }
        TensorData::F64(v) => v.push(float(value, dtype)?),
        TensorData::String(v) => {
            let s = match value {
                Value::String(s) if non_finite(s).is_some() => {
                    return Err(format!("expected a string, got {}", describe(value)))
                }
                Value::String(s) => s.clone(),
                Value::Object(obj) if is_b64(obj) => decode_b64(&obj["b64"])?,
                other => return Err(format!("expected a string, got {}", describe(other))),
            };
            element::check_text(&s).map_err(|e| format!("string {e}"))?;
            v.push(s)
        }
    }
    Ok(())
}

/// An integer from a JSON number; integral floats such as `25.0` are accepted.
fn integer(value: &Value, dtype: DType) -> Result<i128, String> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i as i128)
            } else if let Some(u) = n.as_u64() {
                Ok(u as i128)
            } else {
                n.as_f64()
                    .and_then(element::integral)
                    .ok_or_else(|| format!("expected an integer ({dtype}), got {n}"))
            }
        }
        other => Err(format!(
            "expected an integer ({dtype}), got {}",
            describe(other)
        )),
    }
}

fn float(value: &Value, dtype: DType) -> Result<f64, String> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a number")),
        // The bare tokens NaN, Infinity and -Infinity arrive marked (see `parse_body`); the
        // same words as JSON strings have always been taken too.
        Value::String(s) => token_value(non_finite(s).unwrap_or(s))
            .ok_or_else(|| format!("expected a number ({dtype}), got {}", describe(value))),
        other => Err(format!(
            "expected a number ({dtype}), got {}",
            describe(other)
        )),
    }
}

/// The text of a `{"b64": ...}` value. String tensors hold text, so the bytes must be UTF-8.
fn decode_b64(value: &Value) -> Result<String, String> {
    use base64::Engine;
    let Value::String(text) = value else {
        return Err(format!(
            "'b64' must hold a base64 string, got {}",
            describe(value)
        ));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("invalid base64 in 'b64' value: {e}"))?;
    String::from_utf8(bytes)
        .map_err(|_| "the 'b64' value decodes to bytes that are not UTF-8 text".to_string())
}

/// Parses a request body. TensorFlow Serving accepts the non-standard tokens `NaN`, `Infinity`
/// and `-Infinity`; when plain JSON parsing fails they are rewritten into strings that float
/// inputs accept, and parsing is retried. Errors name the line and column.
pub fn parse_body(body: &[u8]) -> status::Result<Value> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(first) => quote_non_finite(body)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Error::invalid(format!("malformed JSON in request body: {first}"))),
    }
}

/// What a bare non-finite token becomes: a string no client sends (it starts with NUL), so
/// that only number inputs take it and a string input refuses it instead of reading the word.
const NON_FINITE_MARK: char = '\0';

/// The bare token a marked string stands for.
fn non_finite(s: &str) -> Option<&str> {
    s.strip_prefix(NON_FINITE_MARK)
        .filter(|t| token_value(t).is_some())
}

/// A value read by [`parse_body`] as JSON text again, its non-finite tokens bare as they came
/// (a server's answer read back by a client, `mlengine predict --url`).
pub fn to_text_with_tokens(value: &Value) -> String {
    let text = value.to_string();
    if !text.contains("\\u0000") {
        return text;
    }
    ["-Infinity", "Infinity", "NaN"]
        .iter()
        .fold(text, |t, token| {
            t.replace(&format!("\"\\u0000{token}\""), token)
        })
}

/// The number a bare `NaN`, `Infinity` or `-Infinity` token of the body stood for.
pub fn non_finite_value(value: &Value) -> Option<f64> {
    token_value(value.as_str().and_then(non_finite)?)
}

fn token_value(token: &str) -> Option<f64> {
    match token {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Quotes bare `NaN`, `Infinity` and `-Infinity` outside strings, marked (see
/// `NON_FINITE_MARK`); `None` when there are none.
fn quote_non_finite(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() + 16);
    let (mut in_string, mut escaped, mut changed) = (false, false, false);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        let token = [&b"-Infinity"[..], b"Infinity", b"NaN"]
            .into_iter()
            .find(|t| body[i..].starts_with(t));
        match token {
            Some(t) => {
                out.extend_from_slice(b"\"\\u0000");
                out.extend_from_slice(t);
                out.push(b'"');
                i += t.len();
                changed = true;
            }
            None => {
                in_string = b == b'"';
                out.push(b);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

/// A nested list of `shape` filled from `items`, row-major.
pub fn nest(shape: &[usize], items: &mut impl Iterator<Item = Value>) -> Value {
    match shape.split_first() {
        None => items.next().unwrap_or(Value::Null),
        Some((&d, rest)) => Value::Array((0..d).map(|_| nest(rest, items)).collect()),
    }
}

/// Element `i` written as JSON text, as the servers we stand in for write it: a float that is not
/// finite as the token TF Serving and Triton write (`NaN`, `Infinity`, `-Infinity`; a JSON value
/// would make it `null`, losing which), and with `b64` a string as `{"b64": ...}` (Cloud ML's and
/// TF Serving's rule for outputs whose name ends in `_bytes`). Otherwise as [`value_at`].
pub fn write_element(data: &TensorData, i: usize, b64: bool, out: &mut Vec<u8>) {
    let float = match data {
        TensorData::F32(v) => Some(f64::from(v[i])),
        TensorData::F64(v) => Some(v[i]),
        _ => None,
    };
    if let Some(x) = float.filter(|x| !x.is_finite()) {
        out.extend_from_slice(match x {
            x if x.is_nan() => b"NaN".as_slice(),
            x if x > 0.0 => b"Infinity",
            _ => b"-Infinity",
        });
        return;
    }
    if let (true, TensorData::String(v)) = (b64, data) {
        use base64::Engine;
        out.extend_from_slice(b"{\"b64\":\"");
        out.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(v[i].as_bytes())
                .as_bytes(),
        );
        out.extend_from_slice(b"\"}");
        return;
    }
    let _ = serde_json::to_writer(&mut *out, &value_at(data, i));
}

/// Whether an output's strings are bytes, sent as `{"b64": ...}`: its name ends in `_bytes`.
pub fn is_bytes_output(name: &str) -> bool {
    name.ends_with("_bytes")
}

/// A JSON value of element `i`; floats print as the double nearest the stored value, as
/// TensorFlow's JSON encoder does.
pub fn value_at(data: &TensorData, i: usize) -> Value {
    match data {
        TensorData::Bool(v) => Value::from(v[i]),
        TensorData::U8(v) => Value::from(v[i]),
        TensorData::U16(v) => Value::from(v[i]),
        TensorData::U32(v) => Value::from(v[i]),
        TensorData::U64(v) => Value::from(v[i]),
        TensorData::I8(v) => Value::from(v[i]),
        TensorData::I16(v) => Value::from(v[i]),
        TensorData::I32(v) => Value::from(v[i]),
        TensorData::I64(v) => Value::from(v[i]),
        TensorData::F32(v) => Value::from(v[i] as f64),
        TensorData::F64(v) => Value::from(v[i]),
        TensorData::String(v) => Value::from(v[i].clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_with_tokens_reads_back_to_the_same_text() {
        let answer = br#"{"predictions":[{"y":[NaN,-Infinity,1.5],"s":"NaN"},[Infinity]]}"#;
        let value = parse_body(answer).unwrap();
        let texts: Vec<String> = value["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(to_text_with_tokens)
            .collect();
        assert_eq!(
            texts,
            [r#"{"y":[NaN,-Infinity,1.5],"s":"NaN"}"#, "[Infinity]"]
        );
    }
}

//! Raw little-endian tensor bytes, as KServe v2 / Triton send them (Triton's binary tensor
//! extension over HTTP, `raw_input_contents` over gRPC): fixed-size elements back to back, BYTES
//! elements each preceded by a 4-byte little-endian length.

use bytes::BufMut;

use crate::status::{Error, Result};
use crate::tensor::{element, DType, TensorData};

/// Decodes `count` elements of `dtype` from `bytes`; `what` names the tensor in errors.
pub fn decode(dtype: DType, bytes: &[u8], count: usize, what: &str) -> Result<TensorData> {
    let err = |msg: String| Error::invalid(format!("{what}: {msg}"));
    if dtype == DType::String {
        // Every element takes at least its 4-byte prefix: the bytes received bound the count.
        let mut out = Vec::with_capacity(count.min(bytes.len() / 4));
        let mut pos = 0usize;
        for i in 0..count {
            let Some(prefix) = bytes.get(pos..pos + 4) else {
                return Err(err(format!(
                    "BYTES element {i}: truncated length prefix at byte {pos}"
                )));
            };
            let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
            pos += 4;
            let Some(item) = bytes.get(pos..pos + len) else {
                return Err(err(format!(
                    "BYTES element {i}: length prefix {len} runs past the end of the data ({} bytes left)",
                    bytes.len() - pos
                )));
            };
            let text = element::text(item).map_err(|e| err(format!("BYTES element {i} {e}")))?;
            out.push(text.to_string());
            pos += len;
        }
        if pos != bytes.len() {
            return Err(err(format!(
                "{} bytes left over after {count} BYTES elements",
                bytes.len() - pos
            )));
        }
        return Ok(TensorData::String(out));
    }
    let size = dtype.size();
    if Some(bytes.len()) != count.checked_mul(size) {
        return Err(err(format!(
            "{} bytes of data for {count} {} elements, expected {}",
            bytes.len(),
            dtype,
            count.saturating_mul(size)
        )));
    }
    macro_rules! le {
        ($t:ty, $variant:ident) => {
            TensorData::$variant(
                bytes
                    .chunks_exact(size)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            )
        };
    }
    Ok(match dtype {
        DType::Bool => TensorData::Bool(bytes.iter().map(|b| *b != 0).collect()),
        DType::U8 => TensorData::U8(bytes.to_vec()),
        DType::I8 => TensorData::I8(bytes.iter().map(|b| *b as i8).collect()),
        DType::U16 => le!(u16, U16),
        DType::U32 => le!(u32, U32),
        DType::U64 => le!(u64, U64),
        DType::I16 => le!(i16, I16),
        DType::I32 => le!(i32, I32),
        DType::I64 => le!(i64, I64),
        DType::F32 => le!(f32, F32),
        DType::F64 => le!(f64, F64),
        DType::String => unreachable!("handled above"),
    })
}

/// The bytes `encode` writes for `data`.
pub fn encoded_len(data: &TensorData) -> usize {
    match data {
        TensorData::String(v) => v.iter().map(|s| 4 + s.len()).sum(),
        other => other.len() * other.dtype().size(),
    }
}

/// Encodes elements as raw little-endian bytes (BYTES with length prefixes).
pub fn encode(data: &TensorData, out: &mut impl BufMut) {
    match data {
        TensorData::Bool(v) => v.iter().for_each(|&b| out.put_u8(u8::from(b))),
        TensorData::U8(v) => out.put_slice(v),
        TensorData::I8(v) => v.iter().for_each(|&x| out.put_i8(x)),
        TensorData::U16(v) => v.iter().for_each(|&x| out.put_u16_le(x)),
        TensorData::U32(v) => v.iter().for_each(|&x| out.put_u32_le(x)),
        TensorData::U64(v) => v.iter().for_each(|&x| out.put_u64_le(x)),
        TensorData::I16(v) => v.iter().for_each(|&x| out.put_i16_le(x)),
        TensorData::I32(v) => v.iter().for_each(|&x| out.put_i32_le(x)),
        TensorData::I64(v) => v.iter().for_each(|&x| out.put_i64_le(x)),
        TensorData::F32(v) => v.iter().for_each(|&x| out.put_f32_le(x)),
        TensorData::F64(v) => v.iter().for_each(|&x| out.put_f64_le(x)),
        TensorData::String(v) => v.iter().for_each(|s| {
            out.put_u32_le(s.len() as u32);
            out.put_slice(s.as_bytes());
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_truncation() {
        for data in [
            TensorData::I64(vec![1, -2, 3]),
            TensorData::F32(vec![0.5, -1.25, 3.0]),
            TensorData::String(vec!["a".into(), "".into(), " Private".into()]),
            TensorData::Bool(vec![true, false, true]),
        ] {
            let mut bytes = Vec::new();
            encode(&data, &mut bytes);
            assert_eq!(bytes.len(), encoded_len(&data));
            assert_eq!(decode(data.dtype(), &bytes, 3, "x").unwrap(), data);
            let err = decode(data.dtype(), &bytes[..bytes.len() - 1], 3, "x").unwrap_err();
            assert_eq!(err.code.http_status(), 400, "{}", err.message);
        }
        let err = decode(DType::String, &[9, 0, 0, 0, b'a'], 1, "input 'w'").unwrap_err();
        assert!(
            err.message.contains("length prefix 9 runs past the end"),
            "{}",
            err.message
        );
    }
}

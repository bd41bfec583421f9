//! The protobuf wire format, read in place: what `infer_wire` and `predict_wire` need to read the
//! hot calls' requests without building prost's message tree. Every reader returns `None` on
//! anything malformed, and its caller then leaves the message to prost, which says what is wrong.

use prost::encoding::{decode_varint, WireType};

pub use prost::encoding::decode_key as key;

/// A length-delimited field's bytes.
pub fn delimited<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(decode_varint(buf).ok()?).ok()?;
    if len > buf.len() {
        return None;
    }
    let (field, rest) = buf.split_at(len);
    *buf = rest;
    Some(field)
}

/// A `string` field: UTF-8, as prost requires.
pub fn string<'a>(buf: &mut &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(delimited(buf)?).ok()
}

/// How many times the length-delimited field `tag` occurs at the top of a message (up to the
/// first field that is not length-delimited, or malformed): a capacity for the list that field
/// will fill, so that large elements are not moved as it grows.
pub fn count_delimited(mut buf: &[u8], tag: u32) -> usize {
    let mut n = 0;
    while let Ok((t, WireType::LengthDelimited)) = key(&mut buf) {
        if delimited(&mut buf).is_none() {
            break;
        }
        n += usize::from(t == tag);
    }
    n
}

pub fn varint(buf: &mut &[u8]) -> Option<u64> {
    decode_varint(buf).ok()
}

/// How a numeric field's values are written.
#[derive(Clone, Copy)]
pub enum Number {
    /// `int32`, `int64`, `uint32`, `uint64`, `bool`, enums.
    Varint,
    /// `float`.
    Fixed32,
    /// `double`.
    Fixed64,
}

/// A little-endian fixed-width value's bits.
fn bits(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |n, &b| (n << 8) | u64::from(b))
}

/// One occurrence of a repeated numeric field, one value or a packed run (protobuf allows both),
/// each value's bits handed to `each`.
pub fn repeated(
    buf: &mut &[u8],
    wire: WireType,
    number: Number,
    mut each: impl FnMut(u64),
) -> Option<()> {
    let width = match number {
        Number::Varint => 0,
        Number::Fixed32 => 4,
        Number::Fixed64 => 8,
    };
    match (number, wire) {
        (Number::Varint, WireType::Varint) => each(varint(buf)?),
        (Number::Fixed32, WireType::ThirtyTwoBit) | (Number::Fixed64, WireType::SixtyFourBit) => {
            if buf.len() < width {
                return None;
            }
            let (value, rest) = buf.split_at(width);
            *buf = rest;
            each(bits(value));
        }
        (Number::Varint, WireType::LengthDelimited) => {
            let mut packed = delimited(buf)?;
            while !packed.is_empty() {
                each(varint(&mut packed)?);
            }
        }
        (_, WireType::LengthDelimited) => {
            let packed = delimited(buf)?;
            if packed.len() % width != 0 {
                return None;
            }
            packed.chunks_exact(width).for_each(|c| each(bits(c)));
        }
        _ => return None,
    }
    Some(())
}

/// What the readers' tests share: a signature of every element kind, field encoding, and the
/// checks that a reader agrees with prost.
#[cfg(test)]
pub mod testing {
    use prost::encoding::{encode_key, encode_varint, WireType};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use crate::tensor::{DType, Signature, TensorSpec};

    /// Inputs of most element types (`last` is the unsigned one), two outputs.
    pub fn signature(last: DType) -> Signature {
        let spec = |name: &str, dtype| TensorSpec {
            name: name.into(),
            dtype,
            shape: vec![-1],
        };
        let inputs = [
            ("age", DType::I64),
            ("job", DType::String),
            ("w", DType::F32),
            ("small", DType::I8),
            ("flag", DType::Bool),
            ("d", DType::F64),
            ("u", last),
        ];
        Signature {
            inputs: inputs.iter().map(|(n, d)| spec(n, *d)).collect(),
            outputs: vec![spec("p", DType::F32), spec("c", DType::String)],
            class_labels: vec![],
        }
    }

    /// A length-delimited field.
    pub fn field(tag: u32, body: &[u8], out: &mut Vec<u8>) {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    /// 3,000 random requests through `both` (which compares the reader with prost and says
    /// whether they decoded): the reader takes every one, and both outcomes are common.
    pub fn agree_on_random(
        seed: u64,
        mut request: impl FnMut(&mut ChaCha8Rng) -> Vec<u8>,
        both: impl Fn(&[u8]) -> Option<bool>,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut read, mut accepted) = (0, 0);
        for _ in 0..3000 {
            if let Some(ok) = both(&request(&mut rng)) {
                read += 1;
                accepted += usize::from(ok);
            }
        }
        assert_eq!(read, 3000);
        assert!(
            (300..2700).contains(&accepted),
            "{accepted} of 3000 decoded"
        );
    }

    /// Every cut of `bytes` the reader takes is one prost decodes too (a cut between fields is a
    /// shorter, valid message); a non-UTF-8 model name is left to prost, which refuses it.
    pub fn agree_on_damage(
        bytes: &[u8],
        read: impl Fn(&[u8]) -> bool,
        prost: impl Fn(&[u8]) -> bool,
    ) {
        for cut in 1..bytes.len() {
            if read(&bytes[..cut]) {
                assert!(prost(&bytes[..cut]), "cut at {cut}");
            }
        }
        let mut bad = bytes.to_vec();
        let at = bad
            .windows(6)
            .position(|w| w == b"census")
            .expect("a model name");
        bad[at] = 0xff;
        assert!(!read(&bad) && !prost(&bad));
    }
}

//! Rules for single elements that every decoder shares: when a number is an integer, what text a
//! string tensor may hold, and the exact conversion of numbers between element types (a client
//! sending `DT_FLOAT` 25.0 for an int64 input gets 25; 25.5 is refused).

use super::{DType, TensorData};

/// The integer a float stands for, when it is one exactly (25.0 -> 25; 25.5, NaN and values
/// beyond 64-bit range -> None). Every decoder takes integral floats through this one rule.
pub fn integral(f: f64) -> Option<i128> {
    // -2^63 up to (not including) 2^64: every value either 64-bit integer type can hold.
    const MIN: f64 = -9_223_372_036_854_775_808.0;
    const MAX: f64 = 18_446_744_073_709_551_616.0;
    (f.is_finite() && f.fract() == 0.0 && (MIN..MAX).contains(&f)).then_some(f as i128)
}

/// A float as FP32, unless it is finite and past FP32's range (`as` would make it infinite and
/// answer for a value the client never sent). Values that round to FP32's largest, such as the
/// `3.4028235e38` every language prints for it, are kept. Every decoder takes floats through this.
pub fn to_f32(f: f64) -> Option<f32> {
    let narrow = f as f32;
    (!(f.is_finite() && narrow.is_infinite())).then_some(narrow)
}

/// Checks the text of a string element: ONNX Runtime's string tensors are C strings.
pub fn check_text(s: &str) -> Result<(), &'static str> {
    if s.contains('\0') {
        Err("contains a NUL byte")
    } else {
        Ok(())
    }
}

/// A string element from raw bytes: UTF-8 text without NUL.
pub fn text(bytes: &[u8]) -> Result<&str, &'static str> {
    let s = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8 text")?;
    check_text(s)?;
    Ok(s)
}

/// [`text`] of bytes the caller owns, kept without a copy.
pub fn owned_text(bytes: Vec<u8>) -> Result<String, &'static str> {
    let s = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text")?;
    check_text(&s)?;
    Ok(s)
}

/// One numeric element, wide enough for every integer and float type.
#[derive(Debug, Clone, Copy)]
enum Number {
    Int(i128),
    Float(f64),
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

fn number(data: &TensorData, i: usize) -> Option<Number> {
    Some(match data {
        TensorData::U8(v) => Number::Int(v[i].into()),
        TensorData::U16(v) => Number::Int(v[i].into()),
        TensorData::U32(v) => Number::Int(v[i].into()),
        TensorData::U64(v) => Number::Int(v[i].into()),
        TensorData::I8(v) => Number::Int(v[i].into()),
        TensorData::I16(v) => Number::Int(v[i].into()),
        TensorData::I32(v) => Number::Int(v[i].into()),
        TensorData::I64(v) => Number::Int(v[i].into()),
        TensorData::F32(v) => Number::Float(v[i].into()),
        TensorData::F64(v) => Number::Float(v[i]),
        TensorData::Bool(_) | TensorData::String(_) => return None,
    })
}

/// Appends `n` to `out` when it converts exactly (floats to floats round to nearest, as JSON
/// numbers do, but never overflow); false when it does not.
fn push_exact(out: &mut TensorData, n: Number) -> bool {
    macro_rules! int {
        ($v:expr, $t:ty) => {{
            let wide = match n {
                Number::Int(i) => Some(i),
                Number::Float(f) => integral(f),
            };
            match wide.and_then(|i| <$t>::try_from(i).ok()) {
                Some(x) => $v.push(x),
                None => return false,
            }
        }};
    }
    match out {
        TensorData::U8(v) => int!(v, u8),
        TensorData::U16(v) => int!(v, u16),
        TensorData::U32(v) => int!(v, u32),
        TensorData::U64(v) => int!(v, u64),
        TensorData::I8(v) => int!(v, i8),
        TensorData::I16(v) => int!(v, i16),
        TensorData::I32(v) => int!(v, i32),
        TensorData::I64(v) => int!(v, i64),
        TensorData::F32(v) => match n {
            Number::Int(i) if (i as f32) as i128 == i => v.push(i as f32),
            Number::Float(f) if !(f.is_finite() && (f as f32).is_infinite()) => v.push(f as f32),
            _ => return false,
        },
        TensorData::F64(v) => match n {
            Number::Int(i) if (i as f64) as i128 == i => v.push(i as f64),
            Number::Float(f) => v.push(f),
            _ => return false,
        },
        TensorData::Bool(_) | TensorData::String(_) => return false,
    }
    true
}

/// Converts numbers of one type to another when every value converts exactly; the error names
/// the first value that would change.
pub fn convert(data: TensorData, to: DType) -> Result<TensorData, String> {
    let from = data.dtype();
    if from == to {
        return Ok(data);
    }
    let numeric = |d: DType| d.is_integer() || d.is_float();
    if !numeric(from) || !numeric(to) {
        return Err(format!("{from} values cannot be used as {to}"));
    }
    let mut out = TensorData::with_capacity(to, data.len());
    for i in 0..data.len() {
        let Some(n) = number(&data, i) else {
            return Err(format!("{from} values cannot be used as {to}"));
        };
        if !push_exact(&mut out, n) {
            return Err(format!(
                "{from} value {n} (element {i}) does not convert exactly to {to}"
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_floats() {
        assert_eq!(integral(25.0), Some(25));
        assert_eq!(integral(-3.0), Some(-3));
        assert_eq!(integral(25.5), None);
        assert_eq!(integral(f64::NAN), None);
        assert_eq!(integral(f64::INFINITY), None);
        assert_eq!(integral(1.8e19), Some(18_000_000_000_000_000_000));
        assert_eq!(integral(1.9e19), None);
    }

    #[test]
    fn floats_past_fp32s_range_are_refused_not_made_infinite() {
        assert_eq!(to_f32(3.4028235e38), Some(f32::MAX));
        assert_eq!(to_f32(-3.4028235e38), Some(f32::MIN));
        assert_eq!(to_f32(1e39), None);
        assert_eq!(to_f32(-1e300), None);
        assert_eq!(to_f32(f64::INFINITY), Some(f32::INFINITY));
        assert!(to_f32(f64::NAN).is_some_and(f32::is_nan));
        assert_eq!(to_f32(1e-50), Some(0.0));
    }

    #[test]
    fn numbers_convert_only_when_exact() {
        let f = TensorData::F32(vec![25.0, -3.0]);
        assert_eq!(
            convert(f, DType::I64).unwrap(),
            TensorData::I64(vec![25, -3])
        );
        let e = convert(TensorData::F32(vec![1.0, 25.5]), DType::I64).unwrap_err();
        assert!(e.contains("25.5") && e.contains("element 1"), "{e}");
        assert!(convert(TensorData::F32(vec![f32::NAN]), DType::I64).is_err());
        let e = convert(TensorData::F64(vec![3e9]), DType::I32).unwrap_err();
        assert!(e.contains("3000000000"), "{e}");
        assert_eq!(
            convert(TensorData::I64(vec![7]), DType::F32).unwrap(),
            TensorData::F32(vec![7.0])
        );
        assert!(convert(TensorData::I64(vec![(1 << 53) + 1]), DType::F64).is_err());
        assert!(convert(TensorData::F64(vec![1e300]), DType::F32).is_err());
        assert!(convert(TensorData::String(vec!["1".into()]), DType::I64).is_err());
        assert!(convert(TensorData::Bool(vec![true]), DType::I64).is_err());
    }

    #[test]
    fn text_rules() {
        assert_eq!(text(b"a b"), Ok("a b"));
        assert!(text(b"a\0b").is_err());
        assert!(text(&[0xff]).is_err());
    }
}

//! `tensorflow.TensorProto` to and from the core's tensors: typed `*_val` fields and
//! `tensor_content`, with TensorFlow's broadcast of a single value to the whole shape.

use super::proto::tensorflow::{tensor_shape_proto::Dim, DataType, TensorProto, TensorShapeProto};
use crate::codec::kserve::element_count;
use crate::codec::raw;
use crate::status::{Error, Result};
use crate::tensor::{element, DType, Tensor, TensorData, TensorSpec};

/// Most bytes one value may be broadcast to: a declared shape costs memory only up to here, so a
/// short request cannot ask for gigabytes (a 60 KB string to a million elements).
const MAX_BROADCAST_BYTES: usize = 32 << 20;

/// TensorFlow's `DataType` of an element type (its name is `DType::tf_name`; a `match` rather
/// than a lookup by that name, as every tensor of every call passes here).
pub fn data_type(d: DType) -> DataType {
    match d {
        DType::Bool => DataType::DtBool,
        DType::U8 => DataType::DtUint8,
        DType::U16 => DataType::DtUint16,
        DType::U32 => DataType::DtUint32,
        DType::U64 => DataType::DtUint64,
        DType::I8 => DataType::DtInt8,
        DType::I16 => DataType::DtInt16,
        DType::I32 => DataType::DtInt32,
        DType::I64 => DataType::DtInt64,
        DType::F32 => DataType::DtFloat,
        DType::F64 => DataType::DtDouble,
        DType::String => DataType::DtString,
    }
}

/// The element type of a `TensorProto`'s `dtype` field, when it is one the server takes.
fn element_type(dtype: i32) -> Option<DType> {
    Some(match DataType::try_from(dtype).ok()? {
        DataType::DtBool => DType::Bool,
        DataType::DtUint8 => DType::U8,
        DataType::DtUint16 => DType::U16,
        DataType::DtUint32 => DType::U32,
        DataType::DtUint64 => DType::U64,
        DataType::DtInt8 => DType::I8,
        DataType::DtInt16 => DType::I16,
        DataType::DtInt32 => DType::I32,
        DataType::DtInt64 => DType::I64,
        DataType::DtFloat => DType::F32,
        DataType::DtDouble => DType::F64,
        DataType::DtString => DType::String,
        _ => return None,
    })
}

pub fn shape_proto(dims: impl IntoIterator<Item = i64>) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims
            .into_iter()
            .map(|size| Dim {
                size,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    }
}

/// Decodes one input for `spec`; errors name the input. Numbers of another numeric type are
/// decoded as sent (the core converts them exactly). The values are moved, not copied.
pub fn decode(spec: &TensorSpec, proto: TensorProto) -> Result<Tensor> {
    let name = &spec.name;
    let err = |msg: String| Error::invalid(format!("input '{name}': {msg}"));
    let got = element_type(proto.dtype);
    let numeric = |d: DType| d.is_integer() || d.is_float();
    let dtype = match got {
        Some(d) if d == spec.dtype || (numeric(d) && numeric(spec.dtype)) => d,
        _ => {
            let got = DataType::try_from(proto.dtype)
                .map(|d| d.as_str_name())
                .unwrap_or("an unknown dtype");
            return Err(err(format!(
                "dtype {got} does not match the model's {}",
                spec.dtype.tf_name()
            )));
        }
    };
    let shape: Vec<usize> = match &proto.tensor_shape {
        Some(s) => s
            .dim
            .iter()
            .map(|d| {
                usize::try_from(d.size)
                    .map_err(|_| err(format!("dimension size {} is negative", d.size)))
            })
            .collect::<Result<_>>()?,
        None => vec![],
    };
    spec.check_shape(&shape)?;
    let count =
        element_count(&shape).ok_or_else(|| err(format!("shape {shape:?} is too large")))?;
    if !proto.tensor_content.is_empty() {
        if dtype == DType::String {
            return Err(err(
                "string tensors cannot use tensor_content; use string_val".to_string(),
            ));
        }
        let data = raw::decode(
            dtype,
            &proto.tensor_content,
            count,
            &format!("input '{name}': tensor_content"),
        )?;
        return Ok(Tensor::new(shape, data));
    }
    /// `values` as `count` elements: as given, or TensorFlow's broadcast of a single value.
    /// `heap` is the bytes the one value owns beyond its own size (a string's text).
    fn spread<T: Clone>(
        values: Vec<T>,
        count: usize,
        heap: usize,
        err: &dyn Fn(String) -> Error,
    ) -> Result<Vec<T>> {
        let bytes = count.saturating_mul(std::mem::size_of::<T>().saturating_add(heap));
        match values.len() {
            n if n == count => Ok(values),
            1 if bytes <= MAX_BROADCAST_BYTES => Ok(vec![values[0].clone(); count]),
            1 => Err(err(format!(
                "one value cannot be broadcast to {count} elements (at most {MAX_BROADCAST_BYTES} bytes)"
            ))),
            n => Err(err(format!("{n} values for a shape of {count} elements"))),
        }
    }
    fn narrow<T: TryFrom<i32>>(
        values: &[i32],
        dtype: DType,
        err: &dyn Fn(String) -> Error,
    ) -> Result<Vec<T>> {
        values
            .iter()
            .map(|&v| T::try_from(v).map_err(|_| err(format!("{v} is out of range for {dtype}"))))
            .collect()
    }
    let data = match dtype {
        DType::F32 => TensorData::F32(spread(proto.float_val, count, 0, &err)?),
        DType::F64 => TensorData::F64(spread(proto.double_val, count, 0, &err)?),
        DType::I64 => TensorData::I64(spread(proto.int64_val, count, 0, &err)?),
        DType::I32 => TensorData::I32(spread(proto.int_val, count, 0, &err)?),
        DType::I16 => TensorData::I16(spread(
            narrow(&proto.int_val, dtype, &err)?,
            count,
            0,
            &err,
        )?),
        DType::I8 => TensorData::I8(spread(
            narrow(&proto.int_val, dtype, &err)?,
            count,
            0,
            &err,
        )?),
        DType::U8 => TensorData::U8(spread(
            narrow(&proto.int_val, dtype, &err)?,
            count,
            0,
            &err,
        )?),
        DType::U16 => TensorData::U16(spread(
            narrow(&proto.int_val, dtype, &err)?,
            count,
            0,
            &err,
        )?),
        DType::U32 => TensorData::U32(spread(proto.uint32_val, count, 0, &err)?),
        DType::U64 => TensorData::U64(spread(proto.uint64_val, count, 0, &err)?),
        DType::Bool => TensorData::Bool(spread(proto.bool_val, count, 0, &err)?),
        DType::String => {
            let texts = proto
                .string_val
                .into_iter()
                .enumerate()
                .map(|(i, b)| {
                    element::owned_text(b).map_err(|e| err(format!("string_val[{i}] {e}")))
                })
                .collect::<Result<Vec<String>>>()?;
            let heap = texts.first().map_or(0, String::len);
            TensorData::String(spread(texts, count, heap, &err)?)
        }
    };
    Ok(Tensor::new(shape, data))
}

/// Encodes an output in typed `*_val` fields (TF Serving's default).
pub fn encode(t: &Tensor) -> TensorProto {
    let mut p = TensorProto {
        dtype: data_type(t.dtype()) as i32,
        tensor_shape: Some(shape_proto(t.shape.iter().map(|&d| d as i64))),
        ..Default::default()
    };
    match &t.data {
        TensorData::F32(v) => p.float_val = v.clone(),
        TensorData::F64(v) => p.double_val = v.clone(),
        TensorData::I64(v) => p.int64_val = v.clone(),
        TensorData::I32(v) => p.int_val = v.clone(),
        TensorData::I16(v) => p.int_val = v.iter().map(|&x| x as i32).collect(),
        TensorData::I8(v) => p.int_val = v.iter().map(|&x| x as i32).collect(),
        TensorData::U8(v) => p.int_val = v.iter().map(|&x| x as i32).collect(),
        TensorData::U16(v) => p.int_val = v.iter().map(|&x| x as i32).collect(),
        TensorData::U32(v) => p.uint32_val = v.clone(),
        TensorData::U64(v) => p.uint64_val = v.clone(),
        TensorData::Bool(v) => p.bool_val = v.clone(),
        TensorData::String(v) => p.string_val = v.iter().map(|s| s.as_bytes().to_vec()).collect(),
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string_input(value: Vec<u8>, dims: &[i64]) -> TensorProto {
        TensorProto {
            dtype: DataType::DtString as i32,
            tensor_shape: Some(shape_proto(dims.iter().copied())),
            string_val: vec![value],
            ..Default::default()
        }
    }

    #[test]
    fn data_types_are_the_element_types_tensorflow_names() {
        for d in DType::all() {
            assert_eq!(data_type(d).as_str_name(), d.tf_name());
            assert_eq!(element_type(data_type(d) as i32), Some(d));
        }
        for other in [DataType::DtInvalid, DataType::DtHalf, DataType::DtComplex64] {
            assert_eq!(element_type(other as i32), None);
        }
        assert_eq!(element_type(9999), None);
    }

    #[test]
    fn a_broadcast_is_bounded_by_the_bytes_it_would_take() {
        let spec = TensorSpec {
            name: "csv_row".into(),
            dtype: DType::String,
            shape: vec![-1],
        };
        let t = decode(&spec, string_input(b"25, Private".to_vec(), &[4])).unwrap();
        assert_eq!(t.data.len(), 4);
        // 60 KB to a million elements would be 60 GB: refused before anything is allocated.
        let e = decode(&spec, string_input(vec![b'x'; 60_000], &[1 << 20])).unwrap_err();
        assert!(e.message.contains("cannot be broadcast"), "{}", e.message);
        assert!(e.message.contains("csv_row"), "{}", e.message);
        let ints = TensorSpec {
            name: "age".into(),
            dtype: DType::I64,
            shape: vec![-1],
        };
        let huge = TensorProto {
            dtype: DataType::DtInt64 as i32,
            tensor_shape: Some(shape_proto([1i64 << 40])),
            int64_val: vec![1],
            ..Default::default()
        };
        assert!(decode(&ints, huge).is_err());
    }
}

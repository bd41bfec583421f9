//! `tensorflow.TensorProto` to and from the core's tensors: typed `*_val` fields and
//! `tensor_content`, with TensorFlow's broadcast of a single value to the whole shape.

use super::proto::tensorflow::{tensor_shape_proto::Dim, DataType, TensorProto, TensorShapeProto};
use crate::inference::binary;
use crate::inference::error::{InferenceError, InferenceResult};
use crate::inference::tensor::{DType, Tensor, TensorData, TensorSpec};

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

/// Decodes one input for `spec`; errors name the input.
pub fn decode(spec: &TensorSpec, proto: &TensorProto) -> InferenceResult<Tensor> {
    let name = &spec.name;
    let err = |msg: String| InferenceError::invalid(format!("input '{name}': {msg}"));
    let want = data_type(spec.dtype);
    if proto.dtype != want as i32 {
        let got = DataType::try_from(proto.dtype)
            .map(|d| d.as_str_name())
            .unwrap_or("an unknown dtype");
        return Err(err(format!(
            "dtype {got} does not match the model's {}",
            want.as_str_name()
        )));
    }
    let shape: Vec<usize> = match &proto.tensor_shape {
        Some(s) => s
            .dim
            .iter()
            .map(|d| {
                usize::try_from(d.size)
                    .map_err(|_| err(format!("dimension size {} is negative", d.size)))
            })
            .collect::<InferenceResult<_>>()?,
        None => vec![],
    };
    spec.check_shape(&shape)?;
    let count: usize = shape.iter().product();
    if !proto.tensor_content.is_empty() {
        if spec.dtype == DType::String {
            return Err(err(
                "string tensors cannot use tensor_content; use string_val".to_string(),
            ));
        }
        let data = binary::decode(
            spec.dtype,
            &proto.tensor_content,
            count,
            &format!("input '{name}': tensor_content"),
        )?;
        return Ok(Tensor::new(shape, data));
    }
    fn spread<T: Clone>(
        values: &[T],
        count: usize,
        err: &dyn Fn(String) -> InferenceError,
    ) -> InferenceResult<Vec<T>> {
        match values.len() {
            n if n == count => Ok(values.to_vec()),
            1 => Ok(vec![values[0].clone(); count]),
            n => Err(err(format!("{n} values for a shape of {count} elements"))),
        }
    }
    fn narrow<T: TryFrom<i64>>(
        values: Vec<i64>,
        dtype: DType,
        err: &dyn Fn(String) -> InferenceError,
    ) -> InferenceResult<Vec<T>> {
        values
            .into_iter()
            .map(|v| T::try_from(v).map_err(|_| err(format!("{v} is out of range for {dtype}"))))
            .collect()
    }
    let ints = || -> Vec<i64> { proto.int_val.iter().map(|&v| v as i64).collect() };
    let data = match spec.dtype {
        DType::F32 => TensorData::F32(spread(&proto.float_val, count, &err)?),
        DType::F64 => TensorData::F64(spread(&proto.double_val, count, &err)?),
        DType::I64 => TensorData::I64(spread(&proto.int64_val, count, &err)?),
        DType::I32 => TensorData::I32(spread(&proto.int_val, count, &err)?),
        DType::I16 => TensorData::I16(narrow(spread(&ints(), count, &err)?, DType::I16, &err)?),
        DType::I8 => TensorData::I8(narrow(spread(&ints(), count, &err)?, DType::I8, &err)?),
        DType::U8 => TensorData::U8(narrow(spread(&ints(), count, &err)?, DType::U8, &err)?),
        DType::U16 => TensorData::U16(narrow(spread(&ints(), count, &err)?, DType::U16, &err)?),
        DType::U32 => TensorData::U32(spread(&proto.uint32_val, count, &err)?),
        DType::U64 => TensorData::U64(spread(&proto.uint64_val, count, &err)?),
        DType::Bool => TensorData::Bool(spread(&proto.bool_val, count, &err)?),
        DType::String => {
            let texts = proto
                .string_val
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let s = std::str::from_utf8(b)
                        .map_err(|_| err(format!("string_val[{i}] is not UTF-8 text")))?;
                    if s.contains('\0') {
                        return Err(err(format!("string_val[{i}] contains a NUL byte")));
                    }
                    Ok(s.to_string())
                })
                .collect::<InferenceResult<Vec<String>>>()?;
            TensorData::String(spread(&texts, count, &err)?)
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

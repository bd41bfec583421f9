//! Protocol-neutral tensors: what every adapter decodes requests into and encodes answers from,
//! and what the runtime runs. The floor of the crate: it imports nothing above it.

mod dtype;
pub mod element;
mod signature;

pub use dtype::DType;
pub use signature::{Signature, TensorSpec};

/// Named output tensors of one run, in signature order.
pub type Outputs = Vec<(String, Tensor)>;

/// A tensor's elements, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    String(Vec<String>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::Bool(_) => DType::Bool,
            TensorData::U8(_) => DType::U8,
            TensorData::U16(_) => DType::U16,
            TensorData::U32(_) => DType::U32,
            TensorData::U64(_) => DType::U64,
            TensorData::I8(_) => DType::I8,
            TensorData::I16(_) => DType::I16,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::String(_) => DType::String,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::U16(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::U64(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::String(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty buffer of a type, with room for `capacity` elements.
    pub fn with_capacity(dtype: DType, capacity: usize) -> Self {
        match dtype {
            DType::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            DType::U8 => TensorData::U8(Vec::with_capacity(capacity)),
            DType::U16 => TensorData::U16(Vec::with_capacity(capacity)),
            DType::U32 => TensorData::U32(Vec::with_capacity(capacity)),
            DType::U64 => TensorData::U64(Vec::with_capacity(capacity)),
            DType::I8 => TensorData::I8(Vec::with_capacity(capacity)),
            DType::I16 => TensorData::I16(Vec::with_capacity(capacity)),
            DType::I32 => TensorData::I32(Vec::with_capacity(capacity)),
            DType::I64 => TensorData::I64(Vec::with_capacity(capacity)),
            DType::F32 => TensorData::F32(Vec::with_capacity(capacity)),
            DType::F64 => TensorData::F64(Vec::with_capacity(capacity)),
            DType::String => TensorData::String(Vec::with_capacity(capacity)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: TensorData) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }
}

/// The batch size shared by every input (their first dimension); different sizes are an error.
pub fn batch_size(inputs: &[Tensor]) -> crate::status::Result<usize> {
    // Called on every request (by the adapters and the core): no allocation unless it fails.
    let rows = |t: &Tensor| t.shape.first().copied().unwrap_or(1);
    let Some(first) = inputs.first().map(rows) else {
        return Ok(0);
    };
    if inputs.iter().all(|t| rows(t) == first) {
        return Ok(first);
    }
    let sizes: Vec<usize> = inputs.iter().map(rows).collect();
    Err(crate::status::Error::invalid(format!(
        "ragged input: the inputs have different batch sizes {sizes:?}"
    )))
}

/// Applies `$f` to the vector inside any `TensorData`, rebuilding the same variant from its
/// result (`$f` is generic over the element type through a macro).
macro_rules! map_variants {
    ($data:expr, |$v:ident| $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body.into_iter().map(TensorData::Bool).collect(),
            TensorData::U8($v) => $body.into_iter().map(TensorData::U8).collect(),
            TensorData::U16($v) => $body.into_iter().map(TensorData::U16).collect(),
            TensorData::U32($v) => $body.into_iter().map(TensorData::U32).collect(),
            TensorData::U64($v) => $body.into_iter().map(TensorData::U64).collect(),
            TensorData::I8($v) => $body.into_iter().map(TensorData::I8).collect(),
            TensorData::I16($v) => $body.into_iter().map(TensorData::I16).collect(),
            TensorData::I32($v) => $body.into_iter().map(TensorData::I32).collect(),
            TensorData::I64($v) => $body.into_iter().map(TensorData::I64).collect(),
            TensorData::F32($v) => $body.into_iter().map(TensorData::F32).collect(),
            TensorData::F64($v) => $body.into_iter().map(TensorData::F64).collect(),
            TensorData::String($v) => $body.into_iter().map(TensorData::String).collect(),
        }
    };
}

/// Cuts a vector into consecutive pieces of the given lengths (which must add up to its length).
fn split_vec<T>(mut v: Vec<T>, lengths: &[usize]) -> Vec<Vec<T>> {
    let mut parts = Vec::with_capacity(lengths.len());
    for &n in lengths.iter().rev() {
        let at = v.len().saturating_sub(n);
        parts.push(v.split_off(at));
    }
    parts.reverse();
    parts
}

impl TensorData {
    /// Moves `other`'s elements onto the end of this buffer; gives `other` back when the element
    /// types differ.
    pub fn append(&mut self, other: TensorData) -> Result<(), TensorData> {
        use TensorData as D;
        match (self, other) {
            (D::Bool(a), D::Bool(mut b)) => a.append(&mut b),
            (D::U8(a), D::U8(mut b)) => a.append(&mut b),
            (D::U16(a), D::U16(mut b)) => a.append(&mut b),
            (D::U32(a), D::U32(mut b)) => a.append(&mut b),
            (D::U64(a), D::U64(mut b)) => a.append(&mut b),
            (D::I8(a), D::I8(mut b)) => a.append(&mut b),
            (D::I16(a), D::I16(mut b)) => a.append(&mut b),
            (D::I32(a), D::I32(mut b)) => a.append(&mut b),
            (D::I64(a), D::I64(mut b)) => a.append(&mut b),
            (D::F32(a), D::F32(mut b)) => a.append(&mut b),
            (D::F64(a), D::F64(mut b)) => a.append(&mut b),
            (D::String(a), D::String(mut b)) => a.append(&mut b),
            (_, other) => return Err(other),
        }
        Ok(())
    }

    /// Cuts the buffer into consecutive pieces of the given element counts (which must add up to
    /// its length).
    pub fn split(self, lengths: &[usize]) -> Vec<TensorData> {
        map_variants!(self, |v| split_vec(v, lengths))
    }
}

impl Tensor {
    /// Elements per row: the product of the dimensions after the first.
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Rows along the first dimension (1 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Stacks tensors of one type and row shape along the first dimension; `None` when they
    /// differ in either (the caller then runs them apart).
    pub fn concat_rows(tensors: Vec<Tensor>) -> Option<Tensor> {
        let mut iter = tensors.into_iter();
        let mut first = iter.next()?;
        if first.shape.is_empty() {
            return None;
        }
        for t in iter {
            if t.shape.len() != first.shape.len() || t.shape[1..] != first.shape[1..] {
                return None;
            }
            first.shape[0] += t.shape[0];
            first.data.append(t.data).ok()?;
        }
        Some(first)
    }

    /// Cuts a tensor into consecutive blocks of the given row counts; `None` when they do not
    /// add up to its first dimension.
    pub fn split_rows(self, rows: &[usize]) -> Option<Vec<Tensor>> {
        if self.shape.is_empty() || rows.iter().sum::<usize>() != self.shape[0] {
            return None;
        }
        let row_len = self.row_len();
        let lengths: Vec<usize> = rows.iter().map(|r| r * row_len).collect();
        let trailing = &self.shape[1..];
        Some(
            self.data
                .split(&lengths)
                .into_iter()
                .zip(rows)
                .map(|(data, &r)| {
                    let mut shape = Vec::with_capacity(trailing.len() + 1);
                    shape.push(r);
                    shape.extend_from_slice(trailing);
                    Tensor::new(shape, data)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_concatenate_and_split_back() {
        let a = Tensor::new(vec![1, 2], TensorData::F32(vec![1.0, 2.0]));
        let b = Tensor::new(vec![2, 2], TensorData::F32(vec![3.0, 4.0, 5.0, 6.0]));
        let joined = Tensor::concat_rows(vec![a.clone(), b.clone()]).expect("same row shape");
        assert_eq!(joined.shape, vec![3, 2]);
        let parts = joined.split_rows(&[1, 2]).expect("rows add up");
        assert_eq!(parts, vec![a, b]);
    }

    #[test]
    fn mismatched_tensors_do_not_concatenate() {
        let a = Tensor::new(vec![1, 2], TensorData::F32(vec![1.0, 2.0]));
        let wider = Tensor::new(vec![1, 3], TensorData::F32(vec![1.0, 2.0, 3.0]));
        let ints = Tensor::new(vec![1, 2], TensorData::I64(vec![1, 2]));
        assert!(Tensor::concat_rows(vec![a.clone(), wider]).is_none());
        assert!(Tensor::concat_rows(vec![a.clone(), ints]).is_none());
        let strings = Tensor::new(vec![2], TensorData::String(vec!["x".into(), "y".into()]));
        assert!(strings.split_rows(&[1, 2]).is_none());
    }
}

//! Element types, with every protocol's name for them in one table.

use std::fmt;

/// Element types the server accepts and returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    String,
}

/// Each type with its names: ours (messages, metadata JSON), KServe v2's, TensorFlow's. A
/// `static`, read by reference: a `const` array is copied onto the stack at every lookup.
static NAMES: [(DType, &str, &str, &str); 12] = [
    (DType::Bool, "bool", "BOOL", "DT_BOOL"),
    (DType::U8, "uint8", "UINT8", "DT_UINT8"),
    (DType::U16, "uint16", "UINT16", "DT_UINT16"),
    (DType::U32, "uint32", "UINT32", "DT_UINT32"),
    (DType::U64, "uint64", "UINT64", "DT_UINT64"),
    (DType::I8, "int8", "INT8", "DT_INT8"),
    (DType::I16, "int16", "INT16", "DT_INT16"),
    (DType::I32, "int32", "INT32", "DT_INT32"),
    (DType::I64, "int64", "INT64", "DT_INT64"),
    (DType::F32, "float32", "FP32", "DT_FLOAT"),
    (DType::F64, "float64", "FP64", "DT_DOUBLE"),
    (DType::String, "string", "BYTES", "DT_STRING"),
];

impl DType {
    /// Every element type.
    pub fn all() -> impl Iterator<Item = DType> {
        NAMES.iter().map(|n| n.0)
    }

    fn names(self) -> (DType, &'static str, &'static str, &'static str) {
        NAMES
            .iter()
            .find(|n| n.0 == self)
            .copied()
            .unwrap_or((self, "", "", ""))
    }

    /// The lower-case name used in messages and in metadata JSON (`float32`, `int64`, `string`).
    pub fn name(self) -> &'static str {
        self.names().1
    }

    /// KServe v2's `datatype` (`FP32`, `INT64`, `BYTES`).
    pub fn kserve_name(self) -> &'static str {
        self.names().2
    }

    /// TensorFlow's `DataType` name (`DT_FLOAT`, `DT_INT64`, `DT_STRING`).
    pub fn tf_name(self) -> &'static str {
        self.names().3
    }

    pub fn from_kserve_name(name: &str) -> Option<DType> {
        NAMES.iter().find(|n| n.2 == name).map(|n| n.0)
    }

    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DType::U8
                | DType::U16
                | DType::U32
                | DType::U64
                | DType::I8
                | DType::I16
                | DType::I32
                | DType::I64
        )
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// Bytes of one element in raw little-endian form; strings have no fixed size (0).
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
            DType::String => 0,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_every_name_and_they_round_trip() {
        for (d, ours, kserve, tf) in NAMES {
            assert_eq!((d.name(), d.kserve_name(), d.tf_name()), (ours, kserve, tf));
            assert_eq!(DType::from_kserve_name(kserve), Some(d));
        }
        assert_eq!(DType::from_kserve_name("FP16"), None);
    }
}

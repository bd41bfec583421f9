//! A small helper over `onnx-protobuf` for writing ONNX graphs node by node. It only builds
//! protobuf messages; validity is checked by `onnx.checker` and ONNX Runtime in the tests.

use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, Message, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// Opset of the default domain the graphs are written for.
pub const OPSET: i64 = 21;
/// Opset of `ai.onnx.ml` (LabelEncoder with string keys and int64 values).
pub const ML_OPSET: i64 = 4;
/// IR version matching opset 21.
pub const IR_VERSION: i64 = 10;

/// A dimension of a graph input or output.
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(i64),
    /// A symbolic dimension such as the batch size.
    Named(&'static str),
}

/// An attribute value of a node.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(String),
    Strings(Vec<String>),
    /// A subgraph (the body of `Loop`, the branches of `If`).
    Graph(Box<GraphProto>),
}

#[derive(Default)]
pub struct GraphBuilder {
    graph: GraphProto,
    counter: usize,
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        let graph = GraphProto {
            name: name.to_string(),
            ..Default::default()
        };
        GraphBuilder { graph, counter: 0 }
    }

    /// A fresh value name with a readable prefix.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}", self.counter)
    }

    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.graph.input.push(value_info(name, elem, dims));
    }

    pub fn output(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.graph.output.push(value_info(name, elem, dims));
    }

    /// Adds a float initializer and returns its name.
    pub fn const_f32(&mut self, name: &str, dims: &[i64], data: Vec<f32>) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, data.len());
        let tensor = TensorProto {
            name: name.to_string(),
            dims: dims.to_vec(),
            data_type: DataType::FLOAT as i32,
            float_data: data,
            ..Default::default()
        };
        self.graph.initializer.push(tensor);
        name.to_string()
    }

    /// Adds a double initializer and returns its name.
    pub fn const_f64(&mut self, name: &str, dims: &[i64], data: Vec<f64>) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, data.len());
        let tensor = TensorProto {
            name: name.to_string(),
            dims: dims.to_vec(),
            data_type: DataType::DOUBLE as i32,
            double_data: data,
            ..Default::default()
        };
        self.graph.initializer.push(tensor);
        name.to_string()
    }

    /// Adds an int64 initializer and returns its name.
    pub fn const_i64(&mut self, name: &str, dims: &[i64], data: Vec<i64>) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, data.len());
        let tensor = TensorProto {
            name: name.to_string(),
            dims: dims.to_vec(),
            data_type: DataType::INT64 as i32,
            int64_data: data,
            ..Default::default()
        };
        self.graph.initializer.push(tensor);
        name.to_string()
    }

    /// Adds a bool initializer and returns its name.
    pub fn const_bool(&mut self, name: &str, dims: &[i64], data: &[bool]) -> String {
        let tensor = TensorProto {
            name: name.to_string(),
            dims: dims.to_vec(),
            data_type: DataType::BOOL as i32,
            int32_data: data.iter().map(|b| i32::from(*b)).collect(),
            ..Default::default()
        };
        self.graph.initializer.push(tensor);
        name.to_string()
    }

    /// Adds a string initializer and returns its name.
    pub fn const_str(&mut self, name: &str, dims: &[i64], data: &[&str]) -> String {
        let tensor = TensorProto {
            name: name.to_string(),
            dims: dims.to_vec(),
            data_type: DataType::STRING as i32,
            string_data: data.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        };
        self.graph.initializer.push(tensor);
        name.to_string()
    }

    /// Adds a node of the default domain with one output, named from `out` (or fresh if empty).
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node("", op, inputs, &[&out], attrs);
        out
    }

    /// Adds a node with explicit domain and outputs.
    pub fn node(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) {
        let name = self.fresh(&format!("{op}_node"));
        let node = NodeProto {
            name,
            op_type: op.to_string(),
            domain: domain.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs.into_iter().map(|(n, a)| attribute(n, a)).collect(),
            ..Default::default()
        };
        self.graph.node.push(node);
    }

    /// The graph alone, as the subgraph attribute of another node.
    pub fn into_graph(self) -> GraphProto {
        self.graph
    }

    /// Wraps the graph in a model with the given metadata; `doc` must not vary between runs when
    /// byte-identical output is expected.
    pub fn finish(self, producer_version: &str, doc: &str) -> ModelProto {
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![opset("", OPSET), opset("ai.onnx.ml", ML_OPSET)],
            producer_name: "mlengine".to_string(),
            producer_version: producer_version.to_string(),
            doc_string: doc.to_string(),
            graph: protobuf::MessageField::some(self.graph),
            ..Default::default()
        }
    }
}

/// Serialises a model to bytes.
pub fn to_bytes(model: &ModelProto) -> anyhow::Result<Vec<u8>> {
    Ok(model.write_to_bytes()?)
}

fn opset(domain: &str, version: i64) -> OperatorSetIdProto {
    OperatorSetIdProto {
        domain: domain.to_string(),
        version,
        ..Default::default()
    }
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let shape = TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Dim::Fixed(v) => dimension::Value::DimValue(*v),
                    Dim::Named(s) => dimension::Value::DimParam(s.to_string()),
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let tensor = type_proto::Tensor {
        elem_type: elem as i32,
        shape: protobuf::MessageField::some(shape),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.to_string(),
        type_: protobuf::MessageField::some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.type_ = AttributeType::INT.into();
            a.i = i;
        }
        Attr::Ints(v) => {
            a.type_ = AttributeType::INTS.into();
            a.ints = v;
        }
        Attr::Float(f) => {
            a.type_ = AttributeType::FLOAT.into();
            a.f = f;
        }
        Attr::Str(v) => {
            a.type_ = AttributeType::STRING.into();
            a.s = v.into_bytes();
        }
        Attr::Strings(v) => {
            a.type_ = AttributeType::STRINGS.into();
            a.strings = v.into_iter().map(String::into_bytes).collect();
        }
        Attr::Graph(g) => {
            a.type_ = AttributeType::GRAPH.into();
            a.g = protobuf::MessageField(Some(g));
        }
    }
    a
}

//! Writing ONNX graphs: a small builder and the census Wide & Deep graph.

pub mod builder;
pub mod census_graph;

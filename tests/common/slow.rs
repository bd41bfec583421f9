//! A deliberately slow model whose run time a request chooses, for tests that need a version or a
//! worker to stay busy: calibrated on the machine the test runs on, never assumed.

use std::time::Instant;

use mlengine::onnx::builder::{to_bytes, Attr, Dim, GraphBuilder};
use onnx_protobuf::tensor_proto::DataType;

use super::Server;

/// `y = x + 0 * sum(C^k)` over float `[batch]`, C 256 x 256 and `k = max(x)` MatMuls in a
/// `Loop`: the request's own value sets how long its run takes, and the output keeps the input's
/// shape `[batch]` (so runs can be merged and split back).
pub fn slow_model(path: &std::path::Path) {
    let n = 256i64;
    let mut body = GraphBuilder::new("matmul");
    body.input("i", DataType::INT64, &[]);
    body.input("cond_in", DataType::BOOL, &[]);
    body.input("m_in", DataType::FLOAT, &[Dim::Fixed(n), Dim::Fixed(n)]);
    body.node("", "Identity", &["cond_in"], &["cond_out"], vec![]);
    body.node("", "MatMul", &["m_in", "c"], &["m_out"], vec![]);
    body.output("cond_out", DataType::BOOL, &[]);
    body.output("m_out", DataType::FLOAT, &[Dim::Fixed(n), Dim::Fixed(n)]);

    let mut g = GraphBuilder::new("slow");
    g.input("x", DataType::FLOAT, &[Dim::Named("batch")]);
    // C / n with C all ones is idempotent under MatMul: the values stay finite however long.
    let c = g.const_f32("c", &[n, n], vec![1.0 / n as f32; (n * n) as usize]);
    let top = g.op("ReduceMax", &["x"], vec![("keepdims", Attr::Int(0))]);
    let trips = g.op(
        "Cast",
        &[&top],
        vec![("to", Attr::Int(DataType::INT64 as i64))],
    );
    let m = g.fresh("m");
    g.node(
        "",
        "Loop",
        &[&trips, "", &c],
        &[&m],
        vec![("body", Attr::Graph(Box::new(body.into_graph())))],
    );
    let total = g.op("ReduceSum", &[&m], vec![("keepdims", Attr::Int(0))]);
    let zero = g.const_f32("zero", &[], vec![0.0]);
    let nothing = g.op("Mul", &[&total, &zero], vec![]);
    g.node("", "Add", &["x", &nothing], &["y"], vec![]);
    g.output("y", DataType::FLOAT, &[Dim::Named("batch")]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, to_bytes(&g.finish("test", "")).unwrap()).unwrap();
}

/// The request value (number of MatMuls) whose run lasts about `seconds` on this machine: runs
/// are timed with k doubling until one is long enough to measure, then k is scaled.
pub fn busy_value(server: &Server, predict_path: &str, seconds: f64) -> f64 {
    let mut k = 8.0f64;
    loop {
        let start = Instant::now();
        let (status, text) = server.post(predict_path, &format!(r#"{{"instances": [{k}]}}"#));
        assert_eq!(status, 200, "{text}");
        let took = start.elapsed().as_secs_f64();
        if took >= 0.2 {
            return (k * seconds / took).ceil();
        }
        k *= 2.0;
    }
}

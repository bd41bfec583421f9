//! Who may call what: the management API closed to other networks without tokens, bearer tokens
//! with their scopes, and TLS, driven by the real clients (google-api-python-client, grpcio).

mod common;

use std::path::Path;

use common::*;
use mlengine::census::fixture;
use serde_json::Value;

/// A CA and a server certificate for 127.0.0.1 and localhost it signed: (ca, cert, key) files.
fn certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mlengine test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let files = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, cert.pem()).unwrap();
    std::fs::write(&files.2, key.serialize_pem()).unwrap();
    files
}

fn instances(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("instances.jsonl");
    std::fs::write(&path, fixture::to_json_instances(&fixture::rows(5, 2))).unwrap();
    path
}

/// The bundled model served beside the management API (state in `tmp`), with `extra` flags.
fn serve(tmp: &Path, extra: &[&str]) -> Server {
    let state = tmp.join("state");
    let base = bundled_version().parent().unwrap().to_path_buf();
    let mut args = vec![
        "--state-dir",
        state.to_str().unwrap(),
        "--model-base-path",
        base.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn without_tokens_the_management_api_answers_only_the_allowed_networks() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(
        tmp.path(),
        &["--admin-allowed-networks", "::1/128, 10.0.0.0/8"],
    );
    let (status, body) = server.get("/v1/projects/p/models");
    assert_eq!(status, 403, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED", "{body}");
    assert_eq!(body["error"]["code"], 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--admin-allowed-networks"),
        "{body}"
    );
    // Nothing was created behind the refusal.
    let (status, _) = server.post("/v1/projects/p/models", r#"{"name": "m"}"#);
    assert_eq!(status, 403);
    // Predictions stay open.
    let (status, answer) = server.post_json(
        "/v1/projects/p/models/census:predict",
        &serde_json::json!({"instances": [census_instance()]}),
    );
    assert_eq!(status, 200, "{answer}");

    // A network that is not one is a usage error at start.
    let out = run(bin().args([
        "serve",
        "--state-dir",
        tmp.path().join("state").to_str().unwrap(),
        "--admin-allowed-networks",
        "10.0.0.0/99",
    ]));
    assert_one_line_error(&out, "--admin-allowed-networks");
}

#[test]
fn tokens_and_tls_with_the_real_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(tmp.path());
    let tokens = tmp.path().join("tokens");
    std::fs::write(
        &tokens,
        "# token scope\nadmin-secret admin\npredict-secret predict\n",
    )
    .unwrap();
    let server = serve(
        tmp.path(),
        &[
            "--auth-tokens-file",
            tokens.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let instances = instances(tmp.path());
    // Clients that connect and never handshake: the server drops them (after its handshake
    // timeout) instead of holding their sockets for good. Checked at the end of the test.
    let silent: Vec<std::net::TcpStream> = [&server.addr, &server.grpc_addr]
        .iter()
        .map(|addr| std::net::TcpStream::connect(addr.as_str()).unwrap())
        .collect();

    // REST with the `ml` v1 client: each token gets what its scope allows.
    let python = python_env("googleapi", "tests/python/requirements-googleapi.txt");
    let out = run(std::process::Command::new(&python)
        .arg(root().join("tests/python/ml_secure.py"))
        .arg(format!("https://{}", server.addr))
        .arg(&ca)
        .arg(&instances)
        .args(["admin-secret", "predict-secret", "wrong-secret", "-"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let calls = &r["calls"];
    let status = |token: &str, call: &str| calls[token][call]["status"].as_u64().unwrap();
    assert_eq!(status("admin-secret", "list"), 200, "{r}");
    assert_eq!(status("admin-secret", "predict"), 200, "{r}");
    assert_eq!(status("predict-secret", "predict"), 200, "{r}");
    assert_eq!(status("predict-secret", "list"), 403, "{r}");
    assert_eq!(
        calls["predict-secret"]["list"]["error"]["status"], "PERMISSION_DENIED",
        "{r}"
    );
    for token in ["wrong-secret", "-"] {
        for call in ["list", "predict"] {
            assert_eq!(status(token, call), 401, "{token} {call}: {r}");
        }
    }
    assert_eq!(
        calls["-"]["list"]["error"]["status"], "UNAUTHENTICATED",
        "{r}"
    );
    assert_eq!(r["metrics"], 200, "{r}");

    // Plain HTTP on the TLS port gets no answer.
    let plain = http(&server.addr, "GET", "/v1/models/census", &[], b"");
    assert!(!matches!(plain, Ok((200, _))), "{plain:?}");

    // gRPC with grpcio over TLS: the predict token is enough, no token is not.
    let python = python_env("grpc", "tests/python/requirements-grpc.txt");
    let grpc = |token: Option<&str>| {
        let mut cmd = std::process::Command::new(&python);
        cmd.arg(root().join("tests/python/tf_serving_grpc.py"))
            .arg(&server.grpc_addr)
            .arg("census")
            .arg(&instances)
            .arg(tmp.path().join("stubs"))
            .env("MLENGINE_CA_FILE", &ca);
        if let Some(token) = token {
            cmd.env("MLENGINE_TOKEN", token);
        }
        run(&mut cmd)
    };
    let out = grpc(Some("predict-secret"));
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        answer["predict"]["probabilities"].as_array().unwrap().len(),
        5,
        "{answer}"
    );
    let out = grpc(None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("UNAUTHENTICATED"), "{}", stderr(&out));

    // mlengine's own CLI over TLS, trusting the CA; without it the certificate is refused.
    let cli = |extra: &[&str]| {
        let url = format!("https://{}", server.addr);
        let mut cmd = bin();
        cmd.args([
            "models",
            "create",
            "secured",
            "--url",
            &url,
            "--token",
            "admin-secret",
        ])
        .args(extra);
        run(&mut cmd)
    };
    let out = cli(&[]);
    assert_one_line_error(&out, "certificate");
    let out = cli(&["--ca-cert", ca.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(bin().args([
        "models",
        "list",
        "--url",
        &format!("https://{}", server.addr),
        "--ca-cert",
        ca.to_str().unwrap(),
        "--token",
        "predict-secret",
    ]));
    assert_one_line_error(&out, "PERMISSION_DENIED");
    for mut stream in silent {
        use std::io::Read;
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte);
        let closed = matches!(read, Ok(0))
            || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
        assert!(
            closed,
            "a connection that never handshakes is still open after 60 s"
        );
    }
}

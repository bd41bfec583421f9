//! A moto S3 server (from PyPI) on a free loopback port, for the storage layer's tests against a
//! real S3-compatible server.

use std::path::PathBuf;
use std::process::Command;

use super::{python_env, root, run, stderr, stdout, wait_until};

/// A moto S3 server on a free loopback port, stopped on drop.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
    python: PathBuf,
}

impl Moto {
    pub fn start() -> Moto {
        let python = python_env("moto", "tests/python/requirements-moto.txt");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python.parent().unwrap().join("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server");
        wait_until("moto_server to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            python,
        }
    }

    pub fn tool(&self, args: &[&str]) -> String {
        let o = run(Command::new(&self.python)
            .arg(root().join("tests/python/s3_tool.py"))
            .arg(&self.endpoint)
            .args(args));
        assert!(o.status.success(), "s3_tool {args:?}: {}", stderr(&o));
        stdout(&o)
    }

    /// Kills the server at once (SIGKILL), as an object store that goes away mid-transfer.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn env<'a>(&'a self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("AWS_ENDPOINT", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

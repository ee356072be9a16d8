//! A real `hanzo-node serve` for the tests that talk to one over HTTP: started on a free
//! loopback port with a private HANZO_HOME and the WASM runtime only, reached with a
//! minimal HTTP/1.1 client (one request per connection) that shows the node's token:
//! the one given as HANZO_NODE_API_TOKEN, else the one the node created in its data
//! directory (`api-token`).

use crate::util::Home;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A WASI command that copies stdin (the params) to stdout (the output).
pub const CAT: &str = hanzo_testkit::CAT_WAT;

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The error's code and message, asserting the body has the documented shape.
    pub fn error(&self) -> (String, String) {
        let v = self.json();
        let (code, msg) = error_of(&v);
        (code.to_string(), msg.to_string())
    }
}

/// An error body's code and message (`{"error":{"code","message"}}`), asserting the shape.
pub fn error_of(v: &Value) -> (&str, &str) {
    (
        v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code: {v}")),
        v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.message: {v}")),
    )
}

pub struct Server {
    pub child: Child,
    pub port: u16,
    token: Option<String>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts `hanzo-node serve` on a free loopback port with only the WASM runtime
    /// and the given `HANZO_*` settings, and waits for `/healthz`.
    pub fn start(home: &Home, env: &[(&str, &str)]) -> Server {
        Self::start_with(home, env, &[], Stdio::null())
    }

    /// As [`Server::start`], with more arguments to `serve` (`--log-format json`) and
    /// the node's stderr (its log lines) sent to `stderr`.
    pub fn start_with(home: &Home, env: &[(&str, &str)], args: &[&str], stderr: Stdio) -> Server {
        Self::start_bin(home, env!("CARGO_BIN_EXE_hanzo-node"), env, args, stderr)
    }

    /// As [`Server::start_with`], running the binary `bin` (the build with fail points,
    /// say: [`crate::util::failpoints_bin`]).
    pub fn start_bin(home: &Home, bin: &str, env: &[(&str, &str)], args: &[&str], stderr: Stdio) -> Server {
        let port = free_port();
        let mut cmd = home.cmd_of(bin);
        cmd.arg("serve")
            .args(args)
            .env("HANZO_NODE_API_LISTEN", format!("127.0.0.1:{port}"))
            .env("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut token = None;
        // Where the node keeps its token file when none is set: its data dir.
        let mut data_dir = home.path("home");
        for (k, v) in env {
            cmd.env(k, v);
            if *k == "HANZO_NODE_API_TOKEN" {
                token = Some(v.to_string());
            }
            if *k == "HANZO_HOME" {
                data_dir = std::path::PathBuf::from(v);
            }
        }
        let child = cmd.spawn().unwrap();
        let mut s = Server { child, port, token };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("hanzo-node serve exited early: {status}");
            }
            if s.try_req("GET", "/healthz", b"").is_some_and(|r| r.status == 200) {
                if s.token.is_none() {
                    let file = data_dir.join("api-token");
                    let text = std::fs::read_to_string(&file)
                        .unwrap_or_else(|e| panic!("no token in {}: {e}", file.display()));
                    s.token = Some(text.trim().to_string());
                }
                return s;
            }
            assert!(Instant::now() < deadline, "the node never became healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn try_req(&self, method: &str, path: &str, body: &[u8]) -> Option<Resp> {
        self.try_req_as(method, path, body, self.token.as_deref())
    }

    pub fn try_req_as(&self, method: &str, path: &str, body: &[u8], token: Option<&str>) -> Option<Resp> {
        let content_type = if path == "/v1/modules" {
            "application/wasm"
        } else {
            "application/json"
        };
        let host = self.host();
        self.try_raw(
            method,
            path,
            body,
            &[("Host", host.as_str()), ("Content-Type", content_type)],
            token,
        )
    }

    /// `Host: 127.0.0.1:<port>`, as a client that followed `url()` sends it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The token the helper shows the node.
    pub fn token(&self) -> &str {
        self.token.as_deref().unwrap_or_default()
    }

    /// A request with exactly these headers (and Connection, Content-Length, and the
    /// token when given).
    pub fn try_raw(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
        token: Option<&str>,
    ) -> Option<Resp> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let head = format!(
            "{method} {path} HTTP/1.1\r\n{extra}Connection: close\r\n{auth}\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).ok()?;
        // A refused body may be answered (and the socket closed) before it is sent.
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Some(Resp {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        })
    }

    pub fn req(&self, method: &str, path: &str, body: &[u8]) -> Resp {
        self.try_req(method, path, body)
            .unwrap_or_else(|| panic!("{method} {path}: no HTTP answer"))
    }

    pub fn post_json(&self, path: &str, v: &Value) -> Resp {
        self.req("POST", path, v.to_string().as_bytes())
    }

    pub fn module(&self, wat: &str) -> String {
        let r = self.req("POST", "/v1/modules", wat.as_bytes());
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["source"].as_str().unwrap().to_string()
    }

    pub fn job(&self, id: &str) -> Value {
        let r = self.req("GET", &format!("/v1/jobs/{id}"), b"");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    pub fn wait_status(&self, id: &str, pred: impl Fn(&str) -> bool, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let j = self.job(id);
            if pred(j["status"].as_str().unwrap()) {
                return j;
            }
            assert!(Instant::now() < deadline, "job {id} stuck: {j}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_terminal(&self, id: &str) -> Value {
        self.wait_status(
            id,
            |s| matches!(s, "succeeded" | "failed" | "cancelled"),
            Duration::from_secs(60),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The node's URL, for the CLI's `--node`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

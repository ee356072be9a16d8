//! The OpenAPI document (`GET /v1/openapi.json`) checked against the live server:
//! schemathesis (pinned, from PyPI through uv) generates requests for every documented
//! route from the document itself, sends them to a real `hanzo-node serve` (WASM runtime
//! only, a private HANZO_HOME) and checks every answer against the document. Then the
//! regressions for what it found.

use crate::server::{CAT, Server};
use crate::util::Home;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Pinned, so that a new release cannot fail (or pass) the build on its own; uv's cache
/// makes every run after the first start in about a second.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

const TOKEN: &str = "openapi-s3cret";

/// What each answer is checked for: no crash, a documented status, the documented
/// content type, a body that matches the documented schema.
const CHECKS: &str =
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// Cases per operation and phase. A warm run takes about 15 s on two cores.
const MAX_EXAMPLES: &str = "25";

/// Fixed, so that a failure can be replayed; change it to explore further (schemathesis
/// prints the seed of every run).
const SEED: &str = "20251126";

/// The run is killed past this, well under the test runner's patience.
const DEADLINE: Duration = Duration::from_secs(150);

/// schemathesis' configuration. 503 is a documented answer here, not a crash: a job for
/// a runtime this node does not run is refused with `runtime_unavailable` (the test node
/// runs WASM only, and the job spec's `runtime` may name any kind), and `/healthz`
/// answers `unavailable`. Every other 5xx still fails the run.
const CONFIG: &str = r#"
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]
"#;

/// Gives the fuzzed reads something real to find: a module, a tool, a job that
/// succeeded and one that failed.
fn seed(s: &Server) {
    let src = s.module(CAT);
    let r = s.post_json(
        "/v1/tools",
        &json!({"name": "cat", "runtime": "wasm", "source": src, "schema": {"type": "object"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s.post_json(
        "/v1/jobs/execute",
        &json!({"runtime": "wasm", "source": src, "params": {"a": 1}}),
    );
    assert_eq!(r.json()["status"], "succeeded", "{}", r.text());
    let r = s.post_json(
        "/v1/jobs/execute",
        &json!({"runtime": "wasm", "source": "sha256:".to_string() + &"0".repeat(64)}),
    );
    assert_eq!(r.json()["status"], "failed", "{}", r.text());
}

#[test]
fn the_document_matches_the_live_server() {
    let uv = hanzo_testkit::toolchain("uv");
    let h = Home::new();
    let s = Server::start(&h, &[("HANZO_NODE_API_TOKEN", TOKEN)]);
    seed(&s);
    let config = h.file("schemathesis.toml", CONFIG);
    let out = h.path("schemathesis.out");
    let log = std::fs::File::create(&out).unwrap();
    let mut child = Command::new(uv)
        .args([
            "tool",
            "run",
            "--from",
            SCHEMATHESIS,
            "st",
            "--config-file",
            &config,
            "--no-color",
            "run",
        ])
        .arg(format!("{}/v1/openapi.json", s.url()))
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", CHECKS])
        // Never fuzzed: /v1/services deploys real, long-running containers (Docker or
        // Kubernetes) that outlive the test; there is no engine on a test machine, and
        // a fuzzer must not start one where there is. Everything else is fair game,
        // cancel and DELETE included: the node and its data are this test's own.
        .args(["--exclude-path-regex", "^/v1/services"])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .args(["--request-timeout", "30"])
        // Its `.hypothesis` database goes to the private home, not the source tree.
        .current_dir(h.dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = std::fs::read_to_string(&out).unwrap_or_default();
    let tail = &report[report.len().saturating_sub(12_000)..];
    match status {
        None => panic!("schemathesis ran past {DEADLINE:?}:\n{tail}"),
        Some(st) => assert!(st.success(), "schemathesis found mismatches ({st}):\n{tail}"),
    }
    // It really tested: a run that selected nothing would also exit 0.
    assert!(report.contains("Tested:"), "{tail}");
    assert!(!report.contains("Tested: 0"), "{tail}");
}

/// A path segment that is not UTF-8 once percent-decoded was answered by axum's
/// plain-text 400; it is the documented JSON error like every other.
#[test]
fn undecodable_path_segments_answer_json_errors() {
    let h = Home::new();
    let s = Server::start(&h, &[]);
    for (method, path) in [
        ("GET", "/v1/jobs/%FF"),
        ("POST", "/v1/jobs/%FF/cancel"),
        ("GET", "/v1/tools/%FF"),
        ("DELETE", "/v1/tools/%FF"),
        ("POST", "/v1/tools/%FF/call"),
    ] {
        let r = s.req(method, path, b"");
        assert_eq!(r.status, 400, "{method} {path}: {}", r.text());
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{method} {path}: {:?}",
            r.header("content-type")
        );
        let (code, message) = r.error();
        assert_eq!(code, "invalid_input", "{method} {path}");
        assert!(
            message.starts_with("path: ") && message.contains("UTF-8"),
            "{message}"
        );
    }
}

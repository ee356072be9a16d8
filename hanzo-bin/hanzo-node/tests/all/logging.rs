//! The node's own log lines (`tracing` on stderr): what `serve` says at startup, per
//! request and per job, in both formats, and how RUST_LOG and -q filter them; and the
//! exit codes of a node that cannot start (a taken address, a locked data dir).

use crate::server::{CAT, Server, free_port};
use crate::util::{Home, assert_one_error_line};
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A node whose stderr goes to `<home>/node.log`.
fn logged(h: &Home, env: &[(&str, &str)], args: &[&str]) -> (Server, std::path::PathBuf) {
    let log = h.path("node.log");
    let file = std::fs::File::create(&log).unwrap();
    (Server::start_with(h, env, args, Stdio::from(file)), log)
}

/// The log's lines once `done` holds for them (bounded: lines are written before the
/// response they describe is sent, so this rarely waits).
fn lines_until(log: &std::path::Path, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

#[test]
fn json_logs_have_a_line_for_startup_each_request_and_each_job() {
    let h = Home::new();
    let (s, log) = logged(&h, &[], &["--log-format", "json"]);
    assert_eq!(s.req("GET", "/v1/node", b"").status, 200);
    // Refused by the guard: logged all the same.
    assert_eq!(s.try_req_as("GET", "/v1/jobs", b"", None).unwrap().status, 401);
    let m = s.req("POST", "/v1/modules", CAT.as_bytes()).json();
    let spec = serde_json::json!({"runtime": "wasm", "source": m["source"], "params": {"n": 1}});
    let job = s
        .req("POST", "/v1/jobs/execute", spec.to_string().as_bytes())
        .json();
    assert_eq!(job["status"], "succeeded", "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let bad = serde_json::json!({"runtime": "wasm", "source": m["source"], "params": {"n": 1}, "limits": {"max_output_bytes": 1}});
    let failed = s
        .req("POST", "/v1/jobs/execute", bad.to_string().as_bytes())
        .json();
    assert_eq!(failed["status"], "failed", "{failed}");
    let failed_id = failed["id"].as_str().unwrap().to_string();

    let text = lines_until(&log, |t| {
        t.contains(&failed_id) && t.matches("/v1/jobs/execute").count() >= 2
    });
    let lines = json_lines(&text);
    let find = |pred: &dyn Fn(&Value) -> bool| {
        lines
            .iter()
            .find(|l| pred(l))
            .cloned()
            .unwrap_or_else(|| panic!("no such line in\n{text}"))
    };
    let start = find(&|l| l["message"] == "listening");
    assert_eq!(start["level"], "INFO");
    assert_eq!(start["listen"], s.url(), "{start}");
    assert_eq!(start["data_dir"], h.path("home").display().to_string());
    assert_eq!(
        start["token_file"],
        h.path("home").join("api-token").display().to_string()
    );
    assert_eq!(start["runtimes"], "wasm");
    assert!(start["timestamp"].is_string() && start["node_id"].as_str().unwrap().len() == 64);

    let node = find(&|l| l["message"] == "request" && l["path"] == "/v1/node");
    assert_eq!(
        (node["method"].as_str(), node["status"].as_u64()),
        (Some("GET"), Some(200))
    );
    assert!(node["latency_ms"].as_f64().unwrap() >= 0.0, "{node}");
    assert!(
        node["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{node}"
    );
    find(&|l| l["message"] == "request" && l["path"] == "/v1/jobs" && l["status"] == 401);

    let done = find(&|l| l["message"] == "job finished" && l["job"] == id.as_str());
    assert_eq!(done["runtime"], "wasm");
    assert_eq!(done["outcome"], "succeeded");
    assert!(done["duration_ms"].as_f64().unwrap() > 0.0, "{done}");
    let fail = find(&|l| l["message"] == "job finished" && l["job"] == failed_id.as_str());
    assert_eq!(fail["outcome"], "failed");
    assert_eq!(fail["error_code"], "limit_exceeded", "{fail}");

    // A first start recovers nothing and says nothing about it.
    assert!(!text.contains("recovered"), "{text}");
    // /healthz is polled by machines: debug, not info.
    assert!(!lines.iter().any(|l| l["path"] == "/healthz"), "{text}");
}

#[test]
fn text_logs_are_lines_for_people_and_rust_log_or_quiet_filter_them() {
    let h = Home::new();
    let (s, log) = logged(&h, &[], &[]);
    assert_eq!(s.req("GET", "/v1/node", b"").status, 200);
    let text = lines_until(&log, |t| t.contains("/v1/node"));
    let start = text.lines().find(|l| l.contains("listening")).expect(&text);
    assert!(
        start.contains(" INFO ") && start.contains(&format!("listen={}", s.url())),
        "{start}"
    );
    let req = text.lines().find(|l| l.contains("path=/v1/node")).expect(&text);
    assert!(
        req.contains("method=GET") && req.contains("status=200") && req.contains("latency_ms="),
        "{req}"
    );
    drop(s);

    // RUST_LOG wins: warn hides the info lines.
    let h = Home::new();
    let log = h.path("node.log");
    let file = std::fs::File::create(&log).unwrap();
    let s = Server::start_with(&h, &[("RUST_LOG", "warn")], &[], Stdio::from(file));
    assert_eq!(s.req("GET", "/v1/node", b"").status, 200);
    drop(s);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("listening") && !text.contains("request"), "{text}");

    // -q: one level up (warn) for the node's own lines.
    let h = Home::new();
    let (s, log) = logged(&h, &[], &["-q"]);
    assert_eq!(s.req("GET", "/v1/node", b"").status, 200);
    drop(s);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("listening") && !text.contains("request"), "{text}");

    // A malformed RUST_LOG is a usage error naming it.
    let h = Home::new();
    let r = h.run_with(&["runtimes"], |c| {
        c.env("RUST_LOG", "hanzo_api=loud");
    });
    assert_one_error_line(&r, 2, "RUST_LOG");
}

#[test]
fn a_tools_error_cannot_forge_a_log_line() {
    // A tool fails with a message holding a newline, a forged line and an escape
    // sequence: the node's text log shows it quoted on the job's own line.
    let h = Home::new();
    let (s, log) = logged(&h, &[], &[]);
    let forged = r#"{"error":"boom\n2026-01-01T00:00:00Z  INFO hanzo_api::access_log: request path=/forged\u001b[31m"}"#;
    let m = s
        .req("POST", "/v1/modules", crate::util::returning(forged).as_bytes())
        .json();
    assert!(m["source"].is_string(), "{m}");
    let spec = serde_json::json!({"runtime": "wasm", "source": m["source"]});
    let job = s
        .req("POST", "/v1/jobs/execute", spec.to_string().as_bytes())
        .json();
    assert_eq!(job["status"], "failed", "{job}");
    let text = lines_until(&log, |t| t.contains("job finished"));
    assert!(!text.contains('\u{1b}'), "a raw escape reached the log: {text:?}");
    assert!(
        !text.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a forged line: {text}"
    );
    let line = text.lines().find(|l| l.contains("job finished")).expect(&text);
    assert!(
        line.contains(r#"boom\n2026-01-01"#) && line.contains("path=/forged"),
        "{line}"
    );
}

#[test]
fn a_node_that_cannot_start_says_why_with_exit_4() {
    // The address is taken: not an internal error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let h = Home::new();
    let r = h.run(&["serve", "--listen", &addr]);
    assert_one_error_line(&r, 4, &format!("cannot listen on {addr}"));
    assert!(r.error_line().contains("in use"), "{}", r.stderr);

    // The data directory is another node's.
    let s = Server::start(&h, &[]);
    let other = format!("127.0.0.1:{}", free_port());
    let r = h.run(&["serve", "--listen", &other]);
    assert_one_error_line(&r, 4, "in use by another process");
    assert_eq!(
        s.req("GET", "/healthz", b"").status,
        200,
        "the first node is untouched"
    );
}

#[test]
fn serve_listen_overrides_the_configuration() {
    let h = Home::new();
    let port = free_port();
    let log = h.path("node.log");
    let mut child = h
        .cmd()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .env("HANZO_NODE_API_LISTEN", "127.0.0.1:1")
        .env("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    lines_until(&log, |t| t.contains("listening"));
    // The client commands on this data directory find it where it really listens
    // (not at the configuration's address), from <data_dir>/api-url (0600).
    let endpoint = h.path("home").join("api-url");
    assert_eq!(
        std::fs::read_to_string(&endpoint).unwrap().trim(),
        format!("http://127.0.0.1:{port}")
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&endpoint).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let cli = |args: &[&str]| {
        let r = h.run_with(args, |c| {
            c.env("HANZO_NODE_API_LISTEN", "127.0.0.1:1");
        });
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        r
    };
    let cat = h.file("cat.wat", CAT);
    assert_eq!(
        cli(&["tool", "add", "cat", "wasm", &cat, "--json"]).json()["name"],
        "cat"
    );
    assert_eq!(
        cli(&["job", "ls", "--json"]).json()["jobs"],
        serde_json::json!([])
    );
    // module prune asks that node which modules are named: the tool's is kept.
    let pruned = cli(&["module", "prune", "--all", "--json"]).json();
    assert_eq!(pruned["modules"], serde_json::json!([]), "{pruned}");
    assert_eq!(
        cli(&["module", "ls", "--json"]).json()["modules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Stopped (SIGTERM, as systemd stops it): the endpoint file goes with it.
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    let text = lines_until(&log, |t| t.contains("shutting down"));
    let start = json_lines(&text)
        .into_iter()
        .find(|l| l["message"] == "listening")
        .expect(&text);
    assert_eq!(start["listen"], format!("http://127.0.0.1:{port}"));
    assert!(text.contains("shutting down"), "{text}");
    assert!(!endpoint.exists(), "api-url outlived the node");
}

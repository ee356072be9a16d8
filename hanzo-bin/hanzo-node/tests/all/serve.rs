//! `hanzo-node serve` through HTTP: the real binary on a loopback port, a private
//! HANZO_HOME, the WASM runtime with inline WAT modules.

use crate::server::Server;
use crate::util::{Home, returning, with_body};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SPIN: &str = r#"(func (export "run") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))"#;

#[test]
fn submit_get_list_execute_logs() {
    let h = Home::new();
    let s = Server::start(&h, &[]);
    let src = s.module(&returning(r#"{"ok":{"answer":42}}"#));

    let r = s.post_json("/v1/jobs", &json!({"runtime": "wasm", "source": src}));
    assert_eq!(r.status, 202, "{}", r.text());
    let ack = r.json();
    assert_eq!(ack["status"], "queued");
    let id = ack["id"].as_str().unwrap().to_string();
    let job = s.wait_terminal(&id);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["output"], json!({"answer": 42}));
    assert!(job["receipt"].is_object(), "{job}");
    assert!(job["error"].is_null());

    let done = s.post_json(
        "/v1/jobs/execute",
        &json!({"runtime": "wasm", "source": src, "params": {"x": 1}}),
    );
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(done.json()["status"], "succeeded");
    assert_eq!(done.json()["output"], json!({"answer": 42}));
    let waited = s.post_json("/v1/jobs?wait=true", &json!({"runtime": "wasm", "source": src}));
    assert_eq!(waited.status, 200);
    assert_eq!(waited.json()["status"], "succeeded");

    // A tool that fails is a failed job with the runtime's reason.
    let bad = s.post_json(
        "/v1/jobs/execute",
        &json!({"runtime": "wasm", "source": "/no/such/module.wasm"}),
    );
    assert_eq!(bad.json()["status"], "failed");
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/no/such/module.wasm")
    );

    let all = s.req("GET", "/v1/jobs?status=succeeded&runtime=wasm", b"").json();
    let ids: Vec<&str> = all["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{all}");
    assert!(ids.contains(&id.as_str()));
    assert_eq!(
        s.req("GET", "/v1/jobs?status=failed", b"").json()["jobs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Pagination: newest first, the cursor continues without repeats.
    let mut seen = Vec::new();
    let mut path = "/v1/jobs?limit=1".to_string();
    loop {
        let page = s.req("GET", &path, b"").json();
        for j in page["jobs"].as_array().unwrap() {
            seen.push(j["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(c) => path = format!("/v1/jobs?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(seen.last().unwrap(), &id, "oldest last");

    let logs = s.req("GET", &format!("/v1/jobs/{id}/logs"), b"");
    assert_eq!(logs.status, 200);
    assert!(logs.header("content-type").unwrap().starts_with("text/plain"));

    let missing = s.req("GET", "/v1/jobs/0123", b"");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error().0, "not_found");

    let node = s.req("GET", "/v1/node", b"").json();
    assert_eq!(node["id"].as_str().unwrap().len(), 64, "{node}");
    assert_eq!(node["capacity"]["jobs"], 10);
    let rts = s.req("GET", "/v1/runtimes", b"").json();
    let wasm = rts["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["runtime"] == "wasm")
        .unwrap();
    assert_eq!(wasm["available"], true);
    assert!(wasm["capabilities"].is_object());
}

#[test]
fn cancel_queued_and_running() {
    let h = Home::new();
    let s = Server::start(&h, &[("HANZO_COMPUTE_RESOURCES_MAX_CONCURRENT_JOBS", "1")]);
    let spin = s.module(&with_body(SPIN));
    let spec = json!({"runtime": "wasm", "source": spin, "limits": {"timeout_ms": 20000}});
    let running = s.post_json("/v1/jobs", &spec).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let queued = s.post_json("/v1/jobs", &spec).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_status(&running, |st| st == "running", Duration::from_secs(10));
    assert_eq!(s.job(&queued)["status"], "queued");

    let r = s.req("POST", &format!("/v1/jobs/{queued}/cancel"), b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "cancelled");

    let t = Instant::now();
    let r = s.req("POST", &format!("/v1/jobs/{running}/cancel"), b"");
    assert_eq!(r.status, 202, "{}", r.text());
    let j = s.wait_terminal(&running);
    assert_eq!(j["status"], "cancelled", "{j}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the spinning guest was not stopped"
    );

    let again = s.req("POST", &format!("/v1/jobs/{running}/cancel"), b"");
    assert_eq!(again.status, 409);
    assert_eq!(again.error().0, "already_finished");
    assert_eq!(s.req("POST", "/v1/jobs/nope/cancel", b"").status, 404);
    assert_eq!(
        s.job(&queued)["attempts"],
        0,
        "a cancelled queued job never started"
    );
}

#[test]
fn errors_name_the_field() {
    let h = Home::new();
    let s = Server::start(&h, &[]);
    let peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    let cases: [(Value, &str); 11] = [
        (json!({"runtime": "bogus", "source": "x"}), "runtime"),
        // What no node here can give is refused by name (CONTRACTS §8).
        (
            json!({"runtime": "wasm", "source": "x", "verification": {"strategy": "tee"}}),
            "TEE",
        ),
        (
            json!({"runtime": "wasm", "source": "x", "verification": {"strategy": "zk"}}),
            "zkVM",
        ),
        (
            json!({"runtime": "wasm", "source": "x", "verification": {"strategy": "redundant", "min_peers": 1}}),
            "min_peers",
        ),
        (
            json!({"runtime": "wasm", "source": "x", "placement": {"peer": peer},
                   "verification": {"strategy": "redundant", "min_peers": 2}}),
            "pinned to one peer",
        ),
        (
            json!({"runtime": "docker", "source": "x", "deterministic": true}),
            "docker runtime has no deterministic profile",
        ),
        (
            json!({"runtime": "native", "source": "builtin:echo", "deterministic": true}),
            "no deterministic profile",
        ),
        (json!({"runtime": "wasm"}), "source"),
        (json!({"runtime": "wasm", "source": "x", "colour": 1}), "colour"),
        (
            json!({"runtime": "wasm", "source": "x", "limits": {"memory_mb": "lots"}}),
            "limits.memory_mb",
        ),
        (
            json!({"runtime": "wasm", "source": "x", "limits": {"memory_mb": 0}}),
            "memory",
        ),
    ];
    for (body, field) in cases {
        let r = s.post_json("/v1/jobs", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let (code, msg) = r.error();
        assert_eq!(code, "invalid_input");
        assert!(
            msg.contains(field),
            "{body}: message '{msg}' does not name {field}"
        );
    }
    let r = s.req("POST", "/v1/jobs", b"{not json");
    assert_eq!(r.status, 400);
    let r = s.req("GET", "/v1/jobs?status=done", b"");
    assert_eq!(r.status, 400);
    assert!(r.error().1.starts_with("status:"), "{}", r.text());
    let r = s.req("GET", "/v1/jobs?limit=0", b"");
    assert!(r.error().1.starts_with("limit:"));
    let r = s.req("GET", "/v1/jobs?colour=red", b"");
    assert!(r.error().1.contains("colour"));
    let r = s.req("GET", "/v1/jobs?cursor=xyz", b"");
    assert!(r.error().1.starts_with("cursor:"));

    let big = vec![b' '; 2 * 1024 * 1024];
    let r = s.req("POST", "/v1/jobs", &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.error().0, "too_large");

    let r = s.req("POST", "/v1/modules", b"definitely not wasm");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = s.req("GET", "/v1/nothing", b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.error().0, "not_found");
    // Nothing refused at the door was stored.
    assert_eq!(
        s.req("GET", "/v1/jobs", b"").json()["jobs"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn auth_required_and_refused() {
    let h = Home::new();
    let s = Server::start(&h, &[("HANZO_NODE_API_TOKEN", "s3cret-token")]);
    assert_eq!(s.try_req_as("GET", "/healthz", b"", None).unwrap().status, 200);
    for path in [
        "/v1/node",
        "/v1/jobs",
        "/metrics",
        "/v1/openapi.json",
        "/v1/runtimes",
    ] {
        let r = s.try_req_as("GET", path, b"", None).unwrap();
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.error().0, "unauthorized");
        let r = s.try_req_as("GET", path, b"", Some("s3cret-tokeX")).unwrap();
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(s.req("GET", path, b"").status, 200, "{path}");
    }
    let r = s
        .try_req_as("POST", "/v1/jobs", br#"{"runtime":"wasm","source":"x"}"#, None)
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        s.req("GET", "/v1/jobs", b"").json()["jobs"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Without `node.api_token` the node used to serve loopback with no token at all, so
/// any web page the operator visited could submit jobs to it. Now it makes one on first
/// start (`<data_dir>/api-token`, 0600), keeps it across restarts, and wants it on
/// every route but /healthz, loopback included; the CLI finds it by itself.
#[test]
fn a_first_start_makes_a_private_token_and_loopback_needs_it() {
    let h = Home::new();
    let s = Server::start(&h, &[]);
    let file = h.path("home").join("api-token");
    assert_eq!(mode(&file), 0o600);
    let token = s.token().to_string();
    assert_eq!(token.len(), 64, "{token}");
    assert_eq!(s.try_req_as("GET", "/healthz", b"", None).unwrap().status, 200);
    for (method, path, body) in [
        ("GET", "/v1/jobs", &b""[..]),
        ("GET", "/v1/node", b""),
        ("GET", "/metrics", b""),
        ("POST", "/v1/jobs", br#"{"runtime":"wasm","source":"sha256:00"}"#),
        ("GET", "/no/such/route", b""),
    ] {
        let r = s.try_req_as(method, path, body, None).unwrap();
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text());
        assert_eq!(r.error().0, "unauthorized");
    }
    assert_eq!(s.req("GET", "/v1/jobs", b"").status, 200);
    // The CLI reads the token from the data directory: no --token, no config.
    let r = h.run_with(&["job", "ls", "--json"], |c| {
        c.env("HANZO_NODE_API_LISTEN", s.host());
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["jobs"], json!([]));
    // A restart keeps the token.
    drop(s);
    let s = Server::start(&h, &[]);
    assert_eq!(s.token(), token);
}

/// A web page can make the browser send requests to 127.0.0.1 with any `Host` (DNS
/// rebinding), any `Origin`, and `text/plain` bodies without a preflight. Each is refused
/// before any route runs, even with the right token.
#[test]
fn foreign_hosts_origins_and_body_types_are_refused() {
    let h = Home::new();
    let s = Server::start(
        &h,
        &[
            ("HANZO_NODE_API_HOSTS", "node.example"),
            ("HANZO_NODE_API_ORIGINS", "http://app.example:8080"),
        ],
    );
    let t = Some(s.token());
    let port = s.port.to_string();
    let json_type = ("Content-Type", "application/json");
    let get = |headers: &[(&str, &str)]| s.try_raw("GET", "/v1/jobs", b"", headers, t).unwrap();

    let evil_port = format!("evil.example:{port}");
    for host in ["evil.example", evil_port.as_str(), "127.0.0.1:1"] {
        let r = get(&[("Host", host)]);
        assert_eq!(r.status, 421, "Host {host}: {}", r.text());
        assert_eq!(r.error().0, "misdirected");
    }
    // No Host at all (hyper may refuse that itself).
    let st = get(&[]).status;
    assert!(st == 421 || st == 400, "{st}");
    let localhost = format!("localhost:{port}");
    for host in [
        s.host().as_str(),
        localhost.as_str(),
        "node.example",
        "node.example:443",
    ] {
        assert_eq!(get(&[("Host", host)]).status, 200, "Host {host}");
    }
    // /healthz answers probes by any name, without a token.
    let r = s
        .try_raw("GET", "/healthz", b"", &[("Host", "10.0.0.9:3690")], None)
        .unwrap();
    assert_eq!(r.status, 200);

    let own = s.host();
    let host = ("Host", own.as_str());
    let r = get(&[host, ("Origin", "http://evil.example")]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error().0, "forbidden_origin");
    assert_eq!(get(&[host, ("Origin", "null")]).status, 403);
    let r = get(&[host, ("Origin", "http://app.example:8080")]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.example:8080")
    );
    // The listed origin's preflight is answered (it carries no token by design).
    let r = s
        .try_raw(
            "OPTIONS",
            "/v1/jobs",
            b"",
            &[
                host,
                ("Origin", "http://app.example:8080"),
                ("Access-Control-Request-Method", "POST"),
            ],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(
        r.header("access-control-allow-headers")
            .is_some_and(|h| h.contains("authorization")),
        "{:?}",
        r.headers
    );

    let src = s.module(CAT_WAT);
    let spec = json!({"runtime": "wasm", "source": src}).to_string();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut headers = vec![host];
        headers.extend(ct.map(|c| ("Content-Type", c)));
        for path in ["/v1/jobs", "/v1/jobs/execute", "/v1/tools/x/call"] {
            let r = s.try_raw("POST", path, spec.as_bytes(), &headers, t).unwrap();
            assert_eq!(r.status, 415, "{path} with {ct:?}: {}", r.text());
            assert_eq!(r.error().0, "unsupported_media_type");
        }
    }
    // A module is bytes, never JSON or text.
    let r = s
        .try_raw("POST", "/v1/modules", CAT_WAT.as_bytes(), &[host, json_type], t)
        .unwrap();
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(
        s.req("GET", "/v1/jobs", b"").json()["jobs"],
        json!([]),
        "nothing ran"
    );
    let r = s
        .try_raw(
            "POST",
            "/v1/jobs",
            spec.as_bytes(),
            &[host, ("Content-Type", "application/json; charset=utf-8")],
            t,
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let r = s
        .try_raw(
            "POST",
            "/v1/modules",
            CAT_WAT.as_bytes(),
            &[host, ("Content-Type", "application/octet-stream")],
            t,
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
}

const CAT_WAT: &str = crate::server::CAT;

/// Another job's secret `env` sat in a world-readable jobs.db in a 0755 directory.
/// At every start the data directory becomes 0700 and the store, its WAL and shared
/// memory, the node key and the API token 0600, also when they existed before.
#[test]
fn the_data_dir_and_its_secrets_are_tightened_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let h = Home::new();
    let dir = h.path("home");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("jobs.db"), b"").unwrap();
    std::fs::set_permissions(dir.join("jobs.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let check = || {
        assert_eq!(mode(&dir), 0o700, "data dir");
        for f in ["jobs.db", "jobs.db-wal", "jobs.db-shm", "node.key", "api-token"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
    };
    let s = Server::start(&h, &[]);
    let src = s.module(CAT_WAT);
    let r = s.post_json(
        "/v1/jobs/execute",
        &json!({"runtime": "wasm", "source": src, "env": {"SECRET": "hunter2"}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    check();
    drop(s);
    // Loosened again behind the node's back: the next start tightens them again.
    for (p, m) in [
        (dir.clone(), 0o755),
        (dir.join("jobs.db"), 0o644),
        (dir.join("node.key"), 0o644),
        (dir.join("api-token"), 0o644),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let _s = Server::start(&h, &[]);
    check();
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let h = Home::new();
    let s = Server::start(
        &h,
        &[
            ("HANZO_COMPUTE_RESOURCES_MAX_CONCURRENT_JOBS", "1"),
            ("HANZO_COMPUTE_RESOURCES_QUEUE_CAPACITY", "2"),
        ],
    );
    let spin = s.module(&with_body(SPIN));
    let spec = json!({"runtime": "wasm", "source": spin, "limits": {"timeout_ms": 10000}});
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..8 {
        let r = s.post_json("/v1/jobs", &spec);
        match r.status {
            202 => accepted.push(r.json()["id"].as_str().unwrap().to_string()),
            429 => refused.push(r),
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    // One runs, two wait; the burst beyond is refused (a job may start between two
    // submissions, so up to one more can get in).
    assert!((3..=4).contains(&accepted.len()), "{} accepted", accepted.len());
    let r = &refused[0];
    assert_eq!(r.error().0, "queue_full");
    let secs: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&secs));
    let stored = s.req("GET", "/v1/jobs", b"").json()["jobs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(stored, accepted.len(), "a refused job was stored");
    let metrics = s.req("GET", "/metrics", b"").text();
    assert!(
        metrics.contains("hanzo_jobs_rejected_total{code=\"queue_full\"}"),
        "{metrics}"
    );
    for id in &accepted {
        s.req("POST", &format!("/v1/jobs/{id}/cancel"), b"");
    }
}

#[test]
fn metrics_and_openapi() {
    let h = Home::new();
    let s = Server::start(&h, &[]);
    let src = s.module(&returning(r#"{"ok":1}"#));
    for _ in 0..3 {
        let r = s.post_json("/v1/jobs/execute", &json!({"runtime": "wasm", "source": src}));
        assert_eq!(r.json()["status"], "succeeded");
    }
    let m = s.req("GET", "/metrics", b"");
    assert_eq!(m.status, 200);
    let text = m.text();
    for needle in [
        "hanzo_jobs{runtime=\"wasm\",status=\"succeeded\"} 3",
        "hanzo_queue_depth 0",
        "hanzo_jobs_running 0",
        "hanzo_resources_capacity_jobs 10",
        "hanzo_job_duration_seconds_count{runtime=\"wasm\"} 3",
        "hanzo_job_duration_seconds_bucket{runtime=\"wasm\",le=\"+Inf\"} 3",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    let doc = s.req("GET", "/v1/openapi.json", b"").json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/healthz",
        "/v1/jobs",
        "/v1/jobs/execute",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/cancel",
        "/v1/jobs/{id}/logs",
        "/v1/modules",
        "/v1/runtimes",
        "/v1/node",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the OpenAPI document");
    }
    assert!(paths["/v1/jobs"].get("post").is_some() && paths["/v1/jobs"].get("get").is_some());
}

/// A burst of jobs, `kill -9` of the node mid-burst, a restart on the same data
/// directory: every acknowledged job ends, none started more often than its retries
/// allow, and jobs interrupted without retries are failed as such.
#[test]
fn crash_mid_burst_loses_nothing_and_runs_nothing_twice() {
    let h = Home::new();
    let env = [("HANZO_COMPUTE_RESOURCES_MAX_CONCURRENT_JOBS", "2")];
    let mut s = Server::start(&h, &env);
    let spin = s.module(&with_body(SPIN));
    let quick = s.module(&returning(r#"{"ok":"done"}"#));
    // Spinning jobs end at their 300 ms timeout, so some are running at the kill.
    let mut acked = Vec::new();
    for i in 0..40u32 {
        let source = if i % 3 == 0 { &quick } else { &spin };
        let retries = i % 2;
        let spec = json!({"runtime": "wasm", "source": source, "retries": retries,
                          "limits": {"timeout_ms": 300}});
        let r = s.post_json("/v1/jobs", &spec);
        assert_eq!(r.status, 202, "{}", r.text());
        acked.push((r.json()["id"].as_str().unwrap().to_string(), retries));
        if i == 30 {
            std::thread::sleep(Duration::from_millis(100));
            s.child.kill().unwrap(); // SIGKILL
            s.child.wait().unwrap();
            break;
        }
    }
    drop(s);
    let s = Server::start(&h, &env);
    let mut interrupted = 0;
    let mut retried = 0;
    for (id, retries) in &acked {
        let j = s.wait_terminal(id);
        let attempts = j["attempts"].as_u64().unwrap();
        assert!(
            attempts <= 1 + *retries as u64,
            "job {id} started {attempts} times: {j}"
        );
        if j["error"]["code"] == "interrupted" {
            assert_eq!(*retries, 0, "a job with retries left was failed: {j}");
            assert_eq!(j["status"], "failed");
            interrupted += 1;
        }
        if attempts == 2 {
            retried += 1;
        }
    }
    assert!(interrupted + retried > 0, "no job was running at the kill");
    let listed = s.req("GET", "/v1/jobs?limit=1000", b"").json()["jobs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed, acked.len());
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let h = Home::new();
    let mut s = Server::start(&h, &[]);
    let src = s.module(&returning(r#"{"ok":1}"#));
    let r = s.post_json("/v1/jobs/execute", &json!({"runtime": "wasm", "source": src}));
    assert_eq!(r.json()["status"], "succeeded");
    let pid = s.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    // The data directory is free again: a new node starts on it and sees the job.
    let s = Server::start(&h, &[]);
    assert_eq!(
        s.req("GET", "/v1/jobs", b"").json()["jobs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

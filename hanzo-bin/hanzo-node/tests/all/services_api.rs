//! Services through the real `hanzo-node serve` and a real Docker daemon: deploy a web
//! service from a locally built busybox image (nothing is pulled), fetch from the
//! endpoint the 201 names, list, inspect, scale up and down, redeploy, remove (its
//! containers gone); 404s, 400s naming the field, 401 without the token, and 503 when
//! the node's Docker is unavailable or not enabled.

use crate::server::{Server, error_of};
use crate::util::Home;
use hanzo_testkit::docker::{SCRIPT_VAR, busybox_image, docker};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const TOKEN: &str = "svc-token";

/// A served node with Docker (its images local only) and the token.
fn serve(home: &Home) -> Server {
    Server::start(
        home,
        &[
            ("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm,docker"),
            ("HANZO_COMPUTE_DOCKER_PULL_POLICY", "never"),
            ("HANZO_NODE_API_TOKEN", TOKEN),
        ],
    )
}

/// An authorised request; the status and the body as JSON (Null if empty).
fn call(s: &Server, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let r = s.req(method, path, &bytes);
    let v = if r.body.is_empty() { Value::Null } else { r.json() };
    (r.status, v)
}

/// The served node's id: the Docker runtime labels every container with it.
fn node_id(s: &Server) -> String {
    let (st, v) = call(s, "GET", "/v1/node", &Value::Null);
    assert_eq!(st, 200, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// Containers (running or not) of the node's service `name`, by the runtime's labels.
fn service_containers(node: &str, name: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        "label=hanzo.kind=service",
        "--filter",
        &format!("label=hanzo.node={node}"),
        "--filter",
        &format!("label=hanzo.service={name}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// Removes every container of the node when the test ends, however it ends (the test
/// asserts before that the API removed them itself).
struct NodeContainers(String);

impl Drop for NodeContainers {
    fn drop(&mut self) {
        // Never panic here (a panic while unwinding aborts): ignore every error.
        let Ok(out) = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=hanzo.node={}", self.0)])
            .output()
        else {
            return;
        };
        let left = String::from_utf8_lossy(&out.stdout).to_string();
        if !left.trim().is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(left.split_whitespace())
                .output();
        }
    }
}

fn unique_name() -> String {
    format!("web-{}", &hanzo_compute::new_job_id()[24..])
}

/// busybox httpd on port 8080 serving a page that says `page`.
fn web_spec(name: &str, page: &str) -> Value {
    json!({
        "name": name,
        "image": busybox_image(),
        "ports": [8080],
        "limits": {"memory_mb": 64},
        "env": {SCRIPT_VAR: format!("echo {page} > /tmp/index.html && exec httpd -f -p 8080 -h /tmp")},
    })
}

/// One plain HTTP GET of `/` at `endpoint` (`127.0.0.1:49153`).
fn fetch(endpoint: &str) -> Option<String> {
    let addr = endpoint.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Waits until `endpoint` serves `page`; panics with the last answer otherwise.
fn assert_serves(endpoint: &str, page: &str) {
    let t = Instant::now();
    loop {
        let got = fetch(endpoint);
        if got.as_deref().is_some_and(|b| b.contains(page)) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{endpoint} does not serve {page}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn endpoints(status: &Value) -> Vec<String> {
    status["endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("no endpoints: {status}"))
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

fn replica_ids(status: &Value) -> Vec<String> {
    status["replicas"]
        .as_array()
        .unwrap_or_else(|| panic!("no replicas: {status}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn services_api_deploys_serves_lists_inspects_scales_redeploys_and_removes() {
    let h = Home::new();
    let s = serve(&h);
    let node = node_id(&s);
    let _cleanup = NodeContainers(node.clone());
    let name = unique_name();
    let page = format!("hello-{name}");

    // Without the token nothing is deployed or listed.
    let r = s.try_req_as(
        "POST",
        "/v1/services",
        web_spec(&name, &page).to_string().as_bytes(),
        None,
    );
    let r = r.expect("an answer");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.error().0, "unauthorized");
    let r = s
        .try_req_as("GET", "/v1/services", b"", Some("wrong-token"))
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(service_containers(&node, &name).is_empty());

    // Deploy: 201 with the status and the endpoint, which serves the page.
    let (st, v) = call(&s, "POST", "/v1/services", &web_spec(&name, &page));
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["name"], name.as_str());
    assert_eq!(v["runtime"], "docker");
    assert_eq!(v["replicas_desired"], 1);
    assert_eq!(v["spec"]["image"], busybox_image());
    let eps = endpoints(&v);
    assert_eq!(eps.len(), 1, "{v}");
    assert!(eps[0].starts_with("127.0.0.1:"), "{eps:?}");
    assert_serves(&eps[0], &page);
    assert_eq!(service_containers(&node, &name).len(), 1);
    let first = replica_ids(&v);

    // Listed, and inspected with or without the runtime named.
    let (st, list) = call(&s, "GET", "/v1/services", &Value::Null);
    assert_eq!(st, 200, "{list}");
    assert_eq!(list["unavailable"], json!([]), "{list}");
    let listed: Vec<&Value> = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["name"] == name.as_str())
        .collect();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(endpoints(listed[0]), eps);
    for path in [
        format!("/v1/services/{name}"),
        format!("/v1/services/{name}?runtime=docker"),
    ] {
        let (st, one) = call(&s, "GET", &path, &Value::Null);
        assert_eq!(st, 200, "{path}: {one}");
        assert_eq!(one["replicas_running"], 1, "{one}");
        assert_eq!(one["spec"]["env"][SCRIPT_VAR], v["spec"]["env"][SCRIPT_VAR]);
        assert_eq!(replica_ids(&one), first);
    }
    // The node has no k8s service runtime: 503 with why, not 404.
    let (st, e) = call(
        &s,
        "GET",
        &format!("/v1/services/{name}?runtime=k8s"),
        &Value::Null,
    );
    assert_eq!(st, 503, "{e}");
    let (code, msg) = error_of(&e);
    assert_eq!(code, "runtime_unavailable");
    assert!(msg.contains("k8s"), "{msg}");

    // Scale to 2: the first replica keeps running, the second serves too.
    let (st, two) = call(
        &s,
        "POST",
        &format!("/v1/services/{name}/scale"),
        &json!({"replicas": 2}),
    );
    assert_eq!(st, 200, "{two}");
    assert_eq!(two["replicas_desired"], 2);
    let ids = replica_ids(&two);
    assert_eq!(ids.len(), 2, "{two}");
    assert_eq!(ids[0], first[0], "scaling up replaced the running replica");
    let eps2 = endpoints(&two);
    assert_eq!(eps2.len(), 2, "{two}");
    for ep in &eps2 {
        assert_serves(ep, &page);
    }
    assert_eq!(service_containers(&node, &name).len(), 2);

    // And back to 1: the second replica's container is gone, the first still serves.
    let (st, one) = call(
        &s,
        "POST",
        &format!("/v1/services/{name}/scale"),
        &json!({"replicas": 1}),
    );
    assert_eq!(st, 200, "{one}");
    assert_eq!(one["replicas_desired"], 1);
    assert_eq!(replica_ids(&one), first);
    assert_eq!(service_containers(&node, &name), vec![first[0].clone()]);
    assert_serves(&eps[0], &page);

    // Redeploy with a new page: every replica replaced, the new page served.
    let page2 = format!("{page}-v2");
    let (st, v2) = call(&s, "POST", "/v1/services", &web_spec(&name, &page2));
    assert_eq!(st, 201, "{v2}");
    assert_ne!(replica_ids(&v2), first, "redeploy kept the old replica");
    assert_serves(&endpoints(&v2)[0], &page2);
    assert_eq!(service_containers(&node, &name).len(), 1);

    // Remove: 204, every container gone, then 404 everywhere.
    let (st, v) = call(&s, "DELETE", &format!("/v1/services/{name}"), &Value::Null);
    assert_eq!(st, 204, "{v}");
    assert!(v.is_null(), "{v}");
    assert!(service_containers(&node, &name).is_empty());
    for (method, path, body) in [
        ("GET", format!("/v1/services/{name}"), Value::Null),
        ("DELETE", format!("/v1/services/{name}"), Value::Null),
        (
            "POST",
            format!("/v1/services/{name}/scale"),
            json!({"replicas": 2}),
        ),
    ] {
        let (st, e) = call(&s, method, &path, &body);
        assert_eq!(st, 404, "{method} {path}: {e}");
        let (code, msg) = error_of(&e);
        assert_eq!(code, "not_found");
        assert!(msg.starts_with("name: no service"), "{msg}");
    }
    let (st, list) = call(&s, "GET", "/v1/services", &Value::Null);
    assert_eq!(st, 200, "{list}");
    assert_eq!(list["services"], json!([]), "{list}");
    assert!(
        service_containers(&node, &name).is_empty(),
        "a 404 scale created replicas"
    );
}

#[test]
fn services_api_refuses_bad_specs_naming_the_field_and_deploys_nothing() {
    let h = Home::new();
    let s = serve(&h);
    let node = node_id(&s);
    let _cleanup = NodeContainers(node.clone());
    let name = unique_name();
    let good = web_spec(&name, "never-served");
    let with = |k: &str, v: Value| {
        let mut spec = good.clone();
        spec[k] = v;
        spec
    };
    let mut no_image = good.clone();
    no_image.as_object_mut().unwrap().remove("image");
    let cases = [
        (no_image, "service: missing field `image`"),
        (
            with("name", json!("Bad_Name")),
            "name: invalid service name 'Bad_Name'",
        ),
        (with("replicas", json!("two")), "replicas: invalid type"),
        (with("replicas", json!(0)), "replicas: 0 is not from 1 to 64"),
        (with("replicas", json!(65)), "replicas: 65 is not from 1 to 64"),
        (with("ports", json!([0])), "ports: port 0 is not a port"),
        (with("ports", json!([8080, 70000])), "ports[1]: invalid value"),
        (
            with("limits", json!({"memory_mb": "lots"})),
            "limits.memory_mb: invalid type",
        ),
        (with("restart", json!("sometimes")), "restart: unknown variant"),
        (with("colour", json!("blue")), "colour: unknown field"),
        (
            with("ports", json!((1..=17).collect::<Vec<u16>>())),
            "service: ports: 17 ports",
        ),
        (
            with("ports", json!([80, 80])),
            "service: ports: 80 is listed twice",
        ),
        (
            with("env", json!({"A=B": "C"})),
            "service: env: invalid variable name",
        ),
        (
            with(
                "health_check",
                json!({"command": ["true"], "interval_ms": 10_000_000_000_000u64}),
            ),
            "service: health_check.interval_ms",
        ),
    ];
    for (spec, want) in cases {
        let (st, e) = call(&s, "POST", "/v1/services", &spec);
        assert_eq!(st, 400, "{spec}: {e}");
        let (code, msg) = error_of(&e);
        assert_eq!(code, "invalid_input");
        assert!(msg.starts_with(want), "{spec}: {msg}");
    }
    let r = s.req("POST", "/v1/services", b"{not json");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().1.starts_with("service: "), "{}", r.text());

    // Query parameters, names in paths, and scale bodies.
    for (method, path, body, want) in [
        (
            "POST",
            "/v1/services?runtime=cobol".to_string(),
            good.clone(),
            "runtime: ",
        ),
        (
            "POST",
            "/v1/services?replicas=3".to_string(),
            good.clone(),
            "replicas: unknown query parameter",
        ),
        (
            "GET",
            "/v1/services/Bad_Name".to_string(),
            Value::Null,
            "name: invalid service name",
        ),
        (
            "DELETE",
            "/v1/services/-web".to_string(),
            Value::Null,
            "name: invalid service name",
        ),
        (
            "POST",
            format!("/v1/services/{name}/scale"),
            json!({"replicas": 0}),
            "replicas: 0 is not",
        ),
        (
            "POST",
            format!("/v1/services/{name}/scale"),
            json!({"replica": 2}),
            "replica: unknown field",
        ),
        (
            "POST",
            format!("/v1/services/{name}/scale"),
            json!({}),
            "scale: missing field `replicas`",
        ),
    ] {
        let (st, e) = call(&s, method, &path, &body);
        assert_eq!(st, 400, "{method} {path}: {e}");
        let (code, msg) = error_of(&e);
        assert_eq!(code, "invalid_input");
        assert!(msg.starts_with(want), "{method} {path}: {msg}");
    }
    // Docker publishes each port of each replica on the host (a docker-proxy each):
    // bounded per service.
    let mut many = with("ports", json!([80, 81]));
    many["replicas"] = json!(33);
    let (st, e) = call(&s, "POST", "/v1/services", &many);
    assert_eq!(st, 400, "{e}");
    assert!(error_of(&e).1.contains("66 host ports"), "{e}");
    // A replica that could never fit this node is refused as a job would be.
    let (st, e) = call(
        &s,
        "POST",
        "/v1/services",
        &with("limits", json!({"memory_mb": 100_000_000})),
    );
    assert_eq!(st, 422, "{e}");
    assert_eq!(error_of(&e).0, "too_large", "{e}");
    // A runtime that runs no services: 503 with why, nothing deployed.
    let (st, e) = call(&s, "POST", "/v1/services?runtime=wasm", &good);
    assert_eq!(st, 503, "{e}");
    assert_eq!(error_of(&e).0, "runtime_unavailable");
    assert!(error_of(&e).1.contains("does not run services"), "{e}");
    let left = docker(&["ps", "-aq", "--filter", &format!("label=hanzo.node={node}")]);
    assert!(left.is_empty(), "a refused spec left containers: {left}");
}

#[test]
fn services_api_answers_503_with_the_reason_when_docker_is_unavailable() {
    let h = Home::new();
    let socket = h.path("no-docker.sock").display().to_string();
    let s = Server::start(
        &h,
        &[
            ("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm,docker"),
            ("HANZO_COMPUTE_DOCKER_SOCKET", socket.as_str()),
        ],
    );
    // The spec is checked first: a bad one is still a 400.
    let (st, e) = call(&s, "POST", "/v1/services", &json!({"name": "web"}));
    assert_eq!(st, 400, "{e}");
    let spec = json!({"name": "web", "image": "hanzo-test/busybox:latest", "ports": [8080]});
    for (method, path, body) in [
        ("POST", "/v1/services", spec),
        ("GET", "/v1/services", Value::Null),
        ("GET", "/v1/services/web", Value::Null),
        ("POST", "/v1/services/web/scale", json!({"replicas": 2})),
        ("DELETE", "/v1/services/web", Value::Null),
    ] {
        let (st, e) = call(&s, method, path, &body);
        assert_eq!(st, 503, "{method} {path}: {e}");
        let (code, msg) = error_of(&e);
        assert_eq!(code, "runtime_unavailable", "{method} {path}");
        assert!(msg.contains(&socket), "{method} {path}: {msg}");
    }

    // A node without Docker at all: 503 naming the runtime.
    let h = Home::new();
    let s = Server::start(&h, &[]);
    let (st, e) = call(&s, "POST", "/v1/services", &json!({"name": "web", "image": "x"}));
    assert_eq!(st, 503, "{e}");
    let (code, msg) = error_of(&e);
    assert_eq!(code, "runtime_unavailable");
    assert!(msg.contains("docker runtime is not enabled"), "{msg}");
    let (st, e) = call(&s, "GET", "/v1/services", &Value::Null);
    assert_eq!(st, 503, "{e}");
}

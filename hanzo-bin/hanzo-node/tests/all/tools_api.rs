//! Named tools through the real `hanzo-node serve` (WASM runtime only, a private
//! HANZO_HOME): register, list, get, call with params checked against the schema,
//! delete, auth; and the CLI `hanzo-node tool add|ls|call|rm` against it.

use crate::server::{CAT, Server, error_of};
use crate::util::{Home, assert_one_error_line};
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-token";

/// The tool routes through a served node with [`TOKEN`], and the CLI against it.
trait ToolsApi {
    fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, Value);
    fn post(&self, path: &str, v: &Value) -> (u16, Value);
    fn job_count(&self) -> usize;
    fn tool(&self, home: &Home, args: &[&str]) -> crate::util::Run;
}

impl ToolsApi for Server {
    /// An authorised request; answers the status and the body as JSON (Null if empty).
    fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        let r = self.req(method, path, body);
        let v = if r.body.is_empty() { Value::Null } else { r.json() };
        (r.status, v)
    }

    fn post(&self, path: &str, v: &Value) -> (u16, Value) {
        self.call("POST", path, v.to_string().as_bytes())
    }

    fn job_count(&self) -> usize {
        let (st, page) = self.call("GET", "/v1/jobs", b"");
        assert_eq!(st, 200, "{page}");
        page["jobs"].as_array().unwrap().len()
    }

    /// `hanzo-node tool <args> --node <url> --token <token>`.
    fn tool(&self, home: &Home, args: &[&str]) -> crate::util::Run {
        let url = self.url();
        let mut all = vec!["tool"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--node", &url, "--token", TOKEN]);
        home.run(&all)
    }
}

/// The served node, with the token set.
fn serve(home: &Home) -> Server {
    Server::start(home, &[("HANZO_NODE_API_TOKEN", TOKEN)])
}

fn greet_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1},
            "times": {"type": "integer", "minimum": 1, "maximum": 3}
        },
        "required": ["text"],
        "additionalProperties": false
    })
}

#[test]
fn register_list_get_call_validate_delete() {
    let h = Home::new();
    let s = serve(&h);
    let (st, m) = s.call("POST", "/v1/modules", CAT.as_bytes());
    assert_eq!(st, 201, "{m}");
    let src = m["source"].as_str().unwrap().to_string();

    let (st, t) = s.post(
        "/v1/tools",
        &json!({"name": "greet", "runtime": "wasm", "source": src, "description": "echoes",
                "schema": greet_schema(), "limits": {"memory_mb": 64, "timeout_ms": 5000}}),
    );
    assert_eq!(st, 201, "{t}");
    assert_eq!(t["name"], "greet");
    assert_eq!(t["limits"]["memory_mb"], 64);
    assert_eq!(
        t["limits"]["cpu_shares"], 1024,
        "missing limits take the defaults: {t}"
    );

    let (st, list) = s.call("GET", "/v1/tools", b"");
    assert_eq!(st, 200);
    let names: Vec<&str> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["greet"]);
    let (st, got) = s.call("GET", "/v1/tools/greet", b"");
    assert_eq!(st, 200);
    assert_eq!(got["schema"], greet_schema());
    assert_eq!(got["source"], src.as_str());

    // Valid params: a job with the tool's source, limits and these params.
    let params = json!({"text": "hello", "times": 2});
    let (st, job) = s.post("/v1/tools/greet/call?wait=true", &params);
    assert_eq!(st, 200, "{job}");
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["output"], params);
    assert_eq!(job["spec"]["limits"]["memory_mb"], 64);
    assert_eq!(job["spec"]["source"], src.as_str());
    let (st, ack) = s.post("/v1/tools/greet/call", &json!({"text": "async"}));
    assert_eq!(st, 202, "{ack}");
    assert_eq!(ack["status"], "queued");
    assert_eq!(s.job_count(), 2);

    // Invalid params: 400 invalid_params naming the field; nothing stored.
    let cases = [
        (json!({"text": 5}), "params/text"),
        (json!({"text": "x", "times": 9}), "params/times"),
        (json!({"times": 1}), "\"text\" is a required property"),
        (json!({"text": "x", "colour": "red"}), "colour"),
    ];
    for (bad, needle) in cases {
        let (st, e) = s.post("/v1/tools/greet/call?wait=true", &bad);
        assert_eq!(st, 400, "{bad}: {e}");
        let (code, msg) = error_of(&e);
        assert_eq!(code, "invalid_params", "{e}");
        assert!(msg.contains(needle), "{bad}: message {msg:?} lacks {needle:?}");
    }
    let (st, e) = s.call("POST", "/v1/tools/greet/call", b"{not json");
    assert_eq!(st, 400);
    assert!(error_of(&e).1.starts_with("params:"), "{e}");
    assert_eq!(s.job_count(), 2, "a refused call stores no job");

    // Re-posting a name replaces the tool (200); without a schema any params pass.
    let (st, t) = s.post(
        "/v1/tools",
        &json!({"name": "greet", "runtime": "wasm", "source": src}),
    );
    assert_eq!(st, 200, "{t}");
    let (st, job) = s.post("/v1/tools/greet/call?wait=true", &json!({"text": 5}));
    assert_eq!((st, &job["output"]), (200, &json!({"text": 5})), "{job}");

    // Delete, then the tool is gone.
    let (st, _) = s.call("DELETE", "/v1/tools/greet", b"");
    assert_eq!(st, 204);
    let (st, e) = s.post("/v1/tools/greet/call", &json!({"text": "x"}));
    assert_eq!(st, 404, "{e}");
    assert_eq!(error_of(&e).0, "not_found");
    assert_eq!(s.call("GET", "/v1/tools/greet", b"").0, 404);
    assert_eq!(s.call("DELETE", "/v1/tools/greet", b"").0, 404);
    assert_eq!(s.job_count(), 3);

    // The tool routes are in the OpenAPI document.
    let (_, doc) = s.call("GET", "/v1/openapi.json", b"");
    assert!(doc["paths"]["/v1/tools/{name}/call"]["post"].is_object(), "{doc}");
}

#[test]
fn bad_registrations_are_refused_and_auth_applies() {
    let h = Home::new();
    let s = serve(&h);
    let cases = [
        (
            json!({"name": "x", "runtime": "wasm", "source": "sha256:00", "schema": {"type": "strng"}}),
            "schema",
        ),
        (
            json!({"name": "x", "runtime": "wasm", "source": "sha256:00", "schema": {"minLength": -1}}),
            "schema",
        ),
        (
            json!({"name": "x", "runtime": "wasm", "source": "sha256:00", "schema": 7}),
            "schema",
        ),
        (
            json!({"name": "Bad Name", "runtime": "wasm", "source": "sha256:00"}),
            "name",
        ),
        (
            json!({"name": "-x", "runtime": "wasm", "source": "sha256:00"}),
            "name",
        ),
        (
            json!({"name": "a".repeat(65), "runtime": "wasm", "source": "sha256:00"}),
            "name",
        ),
        (
            json!({"name": "x", "runtime": "cobol", "source": "sha256:00"}),
            "runtime",
        ),
        (json!({"name": "x", "runtime": "wasm"}), "source"),
        (
            json!({"name": "x", "runtime": "wasm", "source": "s", "limits": {"memory_mb": 0}}),
            "memory_mb",
        ),
        (
            json!({"name": "x", "runtime": "wasm", "source": "s", "colour": 1}),
            "colour",
        ),
    ];
    for (body, needle) in cases {
        let (st, e) = s.post("/v1/tools", &body);
        assert_eq!(st, 400, "{body}: {e}");
        let (code, msg) = error_of(&e);
        assert_eq!(code, "invalid_input");
        assert!(
            msg.starts_with(needle) || msg.contains(needle),
            "{body}: {msg:?} lacks {needle:?}"
        );
    }
    assert_eq!(
        s.call("GET", "/v1/tools", b"").1,
        json!({"tools": []}),
        "nothing stored"
    );

    let body = json!({"name": "ok", "runtime": "wasm", "source": "sha256:00"}).to_string();
    for (method, path, body) in [
        ("POST", "/v1/tools", body.as_bytes()),
        ("GET", "/v1/tools", &b""[..]),
        ("GET", "/v1/tools/ok", b""),
        ("DELETE", "/v1/tools/ok", b""),
        ("POST", "/v1/tools/ok/call", b"{}"),
    ] {
        for token in [None, Some("wrong")] {
            let st = s.try_req_as(method, path, body, token).unwrap().status;
            assert_eq!(st, 401, "{method} {path} with {token:?}");
        }
    }
    assert_eq!(s.call("GET", "/v1/tools", b"").1, json!({"tools": []}));
}

#[test]
fn cli_tool_add_ls_call_rm() {
    let h = Home::new();
    let s = serve(&h);
    let cat = h.file("cat.wat", CAT);
    let schema = h.file("schema.json", &greet_schema().to_string());

    let r = s.tool(
        &h,
        &[
            "add",
            "greet",
            "wasm",
            &cat,
            "--schema",
            &schema,
            "--description",
            "echoes",
            "--timeout-ms",
            "4000",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("added greet (wasm sha256:"), "{}", r.stdout);
    // Inline JSON works as well; the second add replaces.
    let inline = json!({"type": "object", "required": ["n"]}).to_string();
    let r = s.tool(&h, &["add", "other", "wasm", &cat, "--schema", &inline]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = s.tool(&h, &["add", "other", "wasm", &cat]);
    assert!(r.stdout.starts_with("replaced other"), "{}", r.stdout);

    let r = s.tool(&h, &["ls"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{}", r.stdout);
    assert!(
        lines[1].starts_with("greet") && lines[1].ends_with("echoes"),
        "{}",
        r.stdout
    );
    assert!(lines[2].starts_with("other"), "{}", r.stdout);
    let r = s.tool(&h, &["ls", "--json"]);
    let tools = r.json();
    assert_eq!(tools["tools"][0]["limits"]["timeout_ms"], 4000, "{tools}");

    let r = s.tool(&h, &["call", "greet", "--params", r#"{"text":"hi"}"#, "--wait"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json(), json!({"text": "hi"}));
    let r = s.tool(&h, &["call", "greet", "--params", r#"{"text":"hi"}"#]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim().len(), 32, "a job id: {}", r.stdout);

    let r = s.tool(&h, &["call", "greet", "--params", r#"{"text":1}"#, "--wait"]);
    assert_one_error_line(&r, 2, "params/text");
    assert!(r.stdout.is_empty());
    let r = s.tool(&h, &["call", "greet", "--params", "{oops"]);
    assert_one_error_line(&r, 2, "--params");
    let r = s.tool(
        &h,
        &["add", "broken", "wasm", &cat, "--schema", r#"{"type":"strng"}"#],
    );
    assert_one_error_line(&r, 2, "schema");

    let r = s.tool(&h, &["rm", "greet"]);
    assert_eq!((r.code, r.stdout.trim()), (0, "removed greet"), "{}", r.stderr);
    let r = s.tool(&h, &["call", "greet", "--wait"]);
    assert_one_error_line(&r, 2, "no tool greet");
    let r = s.tool(&h, &["rm", "greet"]);
    assert_one_error_line(&r, 2, "no tool greet");
    let names: Vec<String> = s.tool(&h, &["ls", "--json"]).json()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["other"]);
}

//! Agents (CONTRACTS §10): a model looping over the node's named tools, each call a job
//! with its receipt.
//!
//! No model can run on these machines, so the model is the one test double here: a
//! scripted OpenAI-compatible endpoint on loopback (`fixtures/openai_script.py`) that
//! checks every request as a real endpoint would (route, bearer key, model, tool
//! definitions, that every tool call is answered by a tool message naming its id) and
//! answers from a script. Everything else is real: node processes, the WASM and
//! Python runtimes, the job store, `receipt verify`.

use crate::server::{CAT, Server};
use crate::util::{Home, Run};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "agent-test-token";
const KEY: &str = "sk-hanzo-test-5e1f0c2a9b";
const MODEL: &str = "scripted-llm";
const RUNTIMES: &str = "wasm,python,agent";

/// The scripted model: a process serving one script.
struct Model {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Model {
    fn start(h: &Home, name: &str, script: &Value) -> Model {
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/all/fixtures/openai_script.py");
        let script_path = h.file(&format!("{name}.json"), &script.to_string());
        let port_file = h.path(&format!("{name}.port"));
        let log = h.path(&format!("{name}.log"));
        let child = Command::new("python3")
            .args([fixture, &script_path])
            .arg(&port_file)
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the scripted model");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p.trim().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "the scripted model never started");
            std::thread::sleep(Duration::from_millis(20));
        };
        Model { child, port, log }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Every request it got, as logged.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Asserts that every request was well-formed and met its turn's expectations.
    fn assert_clean(&self, turns: usize) {
        let reqs = self.requests();
        for r in &reqs {
            assert!(r["violation"].is_null(), "the endpoint refused a request: {r}");
            assert_eq!(r["path"], "/v1/chat/completions");
        }
        assert_eq!(reqs.len(), turns, "{reqs:#?}");
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script(key: Option<&str>, turns: Value) -> Value {
    json!({"key": key, "model": MODEL, "turns": turns})
}

fn call(name: &str, args: Value) -> Value {
    json!({"name": name, "arguments": args.to_string()})
}

/// An agent file for `model` with these tools, and more lines.
fn agent_file(h: &Home, name: &str, model: &Model, tools: &[&str], extra: &str) -> String {
    h.file(
        &format!("{name}.toml"),
        &format!(
            "endpoint = \"{}\"\nmodel = \"{MODEL}\"\napi_key_env = \"AGENT_TEST_KEY\"\nsystem = \"You use tools.\"\ntools = {}\n{extra}",
            model.endpoint(),
            json!(tools)
        ),
    )
}

fn serve(h: &Home, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("HANZO_NODE_API_TOKEN", TOKEN),
        ("HANZO_COMPUTE_ENABLED_RUNTIMES", RUNTIMES),
        ("HANZO_NETWORK_ENABLED", "false"),
    ];
    env.extend_from_slice(extra);
    Server::start(h, &env)
}

fn add_tool(s: &Server, def: &Value) {
    let r = s.post_json("/v1/tools", def);
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
}

/// A WASM tool (`wasm-cat`: echoes its params), a Python tool (`py-shout`) and a slow
/// Python tool (`py-sleep`), each with a schema.
fn tools(h: &Home, s: &Server) {
    let m = s.module(CAT);
    let text = json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]});
    add_tool(
        s,
        &json!({"name": "wasm-cat", "runtime": "wasm", "source": m, "description": "echoes, in WASM", "schema": text}),
    );
    let shout = h.file(
        "shout.py",
        "def run(p):\n    return {\"shout\": p[\"text\"].upper()}\n",
    );
    add_tool(
        s,
        &json!({"name": "py-shout", "runtime": "python", "source": shout, "description": "shouts", "schema": text}),
    );
    let sleep = h.file(
        "sleep.py",
        "import time\n\ndef run(p):\n    time.sleep(p[\"s\"])\n    return {\"slept\": p[\"s\"]}\n",
    );
    add_tool(
        s,
        &json!({"name": "py-sleep", "runtime": "python", "source": sleep,
                "schema": {"type": "object", "properties": {"s": {"type": "number"}}, "required": ["s"]},
                "limits": {"timeout_ms": 60000}}),
    );
}

fn run_agent(h: &Home, file: &str, params: &Value, extra: &[&str]) -> Run {
    let p = params.to_string();
    let mut args = vec!["run", "agent", file, "--params", p.as_str()];
    args.extend_from_slice(extra);
    h.run_with(&args, |c| {
        c.env("AGENT_TEST_KEY", KEY)
            .env("HANZO_NODE_API_TOKEN", TOKEN)
            .env("HANZO_COMPUTE_ENABLED_RUNTIMES", RUNTIMES)
            .env("HANZO_NETWORK_ENABLED", "false");
    })
}

/// The two-tool conversation: the model calls both tools, then answers.
fn two_tools_script() -> Value {
    script(
        Some(KEY),
        json!([
            {"expect": {"tools": ["wasm-cat", "py-shout"], "user": "shout hi", "system": "You use tools."},
             "reply": {"tool_calls": [call("wasm-cat", json!({"text": "hi"})), call("py-shout", json!({"text": "hi"}))]}},
            {"expect": {"tool_contents": ["{\"text\":\"hi\"}", "{\"shout\":\"HI\"}"]},
             "reply": {"content": "HI, said the tools"}}
        ]),
    )
}

#[test]
fn an_agent_calls_a_wasm_and_a_python_tool_and_its_receipt_binds_every_call() {
    let h = Home::new();
    let s = serve(&h, &[]);
    tools(&h, &s);
    let model = Model::start(&h, "model", &two_tools_script());
    let file = agent_file(
        &h,
        "a",
        &model,
        &["wasm-cat", "py-shout"],
        "max_steps = 4\ntemperature = 0.1\n",
    );
    // A node serves from this data directory: `run agent` relays the calls to it.
    let receipt = h.path("agent-receipt.json");
    let r = run_agent(
        &h,
        &file,
        &json!({"prompt": "shout hi"}),
        &["--receipt", receipt.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = r.json();
    assert_eq!(out["answer"], "HI, said the tools");
    assert_eq!(out["model"], MODEL);
    assert_eq!(out["steps"].as_array().unwrap().len(), 2);
    assert_eq!(out["steps"][0]["tool"], "wasm-cat");
    assert_eq!(out["steps"][0]["params"], json!({"text": "hi"}));
    assert_eq!(out["steps"][0]["output"], json!({"text": "hi"}));
    assert_eq!(out["steps"][1]["output"], json!({"shout": "HI"}));
    assert_eq!(out["usage"]["requests"], 2);
    assert_eq!(out["usage"]["total_tokens"], 15 + 25);
    // Each step streamed to the logs as it happened.
    assert!(r.stderr.contains("step 1: wasm-cat"), "{}", r.stderr);
    assert!(r.stderr.contains("step 2: py-shout"), "{}", r.stderr);
    // The endpoint saw well-formed requests with the key.
    model.assert_clean(2);
    assert_eq!(model.requests()[0]["auth"], format!("Bearer {KEY}"));
    let first = &model.requests()[0]["body"];
    assert_eq!(
        first["tools"][0]["function"]["parameters"]["required"],
        json!(["text"])
    );
    assert_eq!(first["tools"][0]["function"]["description"], "echoes, in WASM");
    assert_eq!(first["temperature"], 0.1);
    // Each child was a job of the serving node.
    for step in out["steps"].as_array().unwrap() {
        let id = step["job_id"].as_str().unwrap();
        assert_eq!(s.job(id)["status"], "succeeded");
    }
    // The agent's receipt binds the file, the input and every call: anyone can check
    // which tools ran with which params and outputs.
    let v = h.run(&[
        "receipt",
        "verify",
        receipt.to_str().unwrap(),
        "--code",
        &file,
        "--params",
        r#"{"prompt": "shout hi"}"#,
        "--output",
        r.stdout.trim(),
    ]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(
        v.stdout.contains("ok: step 1: wasm-cat ran as job"),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout.contains("ok: step 2: py-shout ran as job"),
        "{}",
        v.stdout
    );
    let rec: Value = serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    assert_eq!(rec["runtime"], "agent");
    // A lie about a step (another output than the tool gave) is caught, though the
    // agent's own receipt is not re-signed: the output hash no longer matches, and
    // the step's receipt disagrees with the step.
    let mut forged = out.clone();
    forged["steps"][1]["output"] = json!({"shout": "BYE"});
    let v = h.run(&[
        "receipt",
        "verify",
        receipt.to_str().unwrap(),
        "--output",
        &forged.to_string(),
    ]);
    assert_eq!(v.code, 1, "{}", v.stdout);
}

#[test]
fn over_the_api_an_agent_is_a_job_with_live_steps_and_a_named_tool_even_on_a_one_slot_node() {
    let h = Home::new();
    let model = Model::start(
        &h,
        "model",
        &script(
            Some(KEY),
            json!([
                {"reply": {"tool_calls": [call("wasm-cat", json!({"text": "one"}))]}},
                {"expect": {"tool_contents": ["one"]}, "reply": {"content": "done"}},
                {"expect": {"user": "again"}, "reply": {"tool_calls": [call("wasm-cat", json!({"text": "two"}))]}},
                {"reply": {"content": "done again"}},
                {"expect": {"user": "over mcp"}, "reply": {"content": "done over mcp"}}
            ]),
        ),
    );
    let endpoint = model.endpoint();
    // One slot: an agent waiting on its tool call holds none, so the call runs.
    let s = serve(
        &h,
        &[
            ("HANZO_COMPUTE_RESOURCES_MAX_CONCURRENT_JOBS", "1"),
            ("HANZO_COMPUTE_AGENT_ALLOWED_ENDPOINTS", &endpoint),
            // A named agent tool's key is the operator's: no caller's env reaches it.
            ("HANZO_COMPUTE_AGENT_KEY_VARS", "AGENT_TEST_KEY"),
            ("AGENT_TEST_KEY", KEY),
        ],
    );
    tools(&h, &s);
    let text = std::fs::read_to_string(agent_file(&h, "a", &model, &["wasm-cat"], "")).unwrap();
    let r = s.post_json(
        "/v1/jobs?wait=true",
        &json!({"runtime": "agent", "source": text, "params": {"prompt": "go"},
                "env": {"AGENT_TEST_KEY": KEY}, "limits": {"timeout_ms": 60000}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let job = r.json();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["output"]["answer"], "done");
    let logs = s.req(
        "GET",
        &format!("/v1/jobs/{}/logs", job["id"].as_str().unwrap()),
        b"",
    );
    assert!(logs.text().contains("step 1: wasm-cat"), "{}", logs.text());
    // As a named tool (the CLI sends the file's text), callable like any other.
    let file = agent_file(&h, "helper", &model, &["wasm-cat"], "");
    let r = h.run(&[
        "tool",
        "add",
        "helper",
        "agent",
        &file,
        "--node",
        &s.url(),
        "--token",
        TOKEN,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let t = s.req("GET", "/v1/tools/helper", b"").json();
    assert_eq!(t["schema"]["properties"]["prompt"]["type"], "string", "{t}");
    let r = s.req(
        "POST",
        "/v1/tools/helper/call?wait=true",
        br#"{"prompt": "again"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["output"]["answer"], "done again", "{}", r.text());
    // An agent tool's params are checked like any tool's.
    let r = s.req("POST", "/v1/tools/helper/call?wait=true", br#"{"prompt": 3}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    // Over MCP, with the official Python SDK's client: listed with its params' schema,
    // called, its receipt in `_meta`.
    let steps = json!([{"list": true}, {"call": "helper", "args": {"prompt": "over mcp"}}]);
    let out = crate::mcp::sdk_client(
        &h,
        &["http", &format!("{}/mcp", s.url()), TOKEN, &steps.to_string()],
    );
    let helper = out[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "helper")
        .cloned()
        .unwrap_or_else(|| panic!("helper not listed: {}", out[0]));
    assert_eq!(helper["inputSchema"]["properties"]["prompt"]["type"], "string");
    assert_eq!(
        out[1]["result"]["structuredContent"]["answer"], "done over mcp",
        "{}",
        out[1]
    );
    assert!(
        out[1]["result"]["_meta"]["hanzo-node/receipt"].is_object(),
        "{}",
        out[1]
    );
    model.assert_clean(5);
}

#[test]
fn bad_calls_go_back_to_the_model_and_the_run_goes_on() {
    let h = Home::new();
    {
        let s = serve(&h, &[]);
        tools(&h, &s);
    }
    // No node serves now: `run agent` opens the job store and runs the calls itself.
    let model = Model::start(
        &h,
        "model",
        &script(
            Some(KEY),
            json!([
                {"reply": {"tool_calls": [
                    call("py-shout", json!({"text": 5})),
                    call("no-such-tool", json!({})),
                    {"name": "wasm-cat", "arguments": "{not json"},
                    call("wasm-cat", json!(["an", "array"]))
                ]}},
                {"expect": {"tool_contents": ["invalid_params", "unknown_tool", "invalid_arguments", "invalid_arguments"]},
                 "reply": {"tool_calls": [call("py-shout", json!({"text": "ok"}))]}},
                {"expect": {"tool_contents": ["OK"]}, "reply": {"content": "recovered"}}
            ]),
        ),
    );
    let file = agent_file(&h, "a", &model, &["py-shout", "wasm-cat"], "");
    let r = run_agent(&h, &file, &json!({"prompt": "x"}), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = r.json();
    assert_eq!(out["answer"], "recovered");
    let steps = out["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5);
    let codes: Vec<&str> = steps[..4]
        .iter()
        .map(|s| s["error"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "invalid_params",
            "unknown_tool",
            "invalid_arguments",
            "invalid_arguments"
        ]
    );
    assert!(steps[..4].iter().all(|s| s["receipt"].is_null()));
    assert_eq!(steps[4]["output"], json!({"shout": "OK"}));
    assert!(steps[4]["receipt"].is_object());
    model.assert_clean(3);
    // The child ran as a job in this data directory's store.
    let s = serve(&h, &[]);
    assert_eq!(s.job(steps[4]["job_id"].as_str().unwrap())["status"], "succeeded");
}

#[test]
fn max_steps_the_deadline_and_cancelling_stop_the_agent_and_its_calls() {
    let h = Home::new();
    let s = serve(&h, &[]);
    tools(&h, &s);
    // max_steps: the third call is a limit.
    let model = Model::start(
        &h,
        "steps",
        &script(
            Some(KEY),
            json!([
                {"reply": {"tool_calls": [call("wasm-cat", json!({"text": "1"})), call("wasm-cat", json!({"text": "2"}))]}},
                {"reply": {"tool_calls": [call("wasm-cat", json!({"text": "3"}))]}}
            ]),
        ),
    );
    let file = agent_file(&h, "steps", &model, &["wasm-cat"], "max_steps = 2\n");
    let r = run_agent(&h, &file, &json!({"prompt": "x"}), &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.error_line().contains("steps"), "{}", r.stderr);
    assert!(r.error_line().contains("max_steps is 2"), "{}", r.stderr);
    // No output, but the error (which the receipt signs) binds the calls made.
    assert!(
        r.error_line()
            .contains("after 2 tool calls; their receipts hash to"),
        "{}",
        r.stderr
    );
    // The deadline covers the calls: a 30 s tool under a 3 s agent is stopped, and so
    // is its job.
    let model = Model::start(
        &h,
        "slow",
        &script(
            Some(KEY),
            json!([{"reply": {"tool_calls": [call("py-sleep", json!({"s": 30}))]}}]),
        ),
    );
    let file = agent_file(&h, "slow", &model, &["py-sleep"], "");
    let started = Instant::now();
    let r = run_agent(&h, &file, &json!({"prompt": "x"}), &["--timeout-ms", "3000"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.error_line().contains("timeout"), "{}", r.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    let child = s.req("GET", "/v1/jobs?limit=50", b"").json();
    let sleeper = child["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["spec"]["params"]["s"] == 30)
        .cloned()
        .unwrap_or_else(|| panic!("no py-sleep job: {child}"));
    // Cancelled by the agent, or stopped by its own timeout (cut to what the agent
    // had left): either way it did not sleep its 30 s.
    let j = s.wait_terminal(sleeper["id"].as_str().unwrap());
    assert_ne!(j["status"], "succeeded", "{j}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    // Cancelling an agent (over the API) cancels the call it waits on.
    let model = Model::start(
        &h,
        "cancel",
        &script(
            Some(KEY),
            json!([{"reply": {"tool_calls": [call("py-sleep", json!({"s": 40}))]}}]),
        ),
    );
    let endpoint = model.endpoint();
    drop(s);
    let s = serve(&h, &[("HANZO_COMPUTE_AGENT_ALLOWED_ENDPOINTS", &endpoint)]);
    let text = std::fs::read_to_string(agent_file(&h, "cancel", &model, &["py-sleep"], "")).unwrap();
    let r = s.post_json(
        "/v1/jobs",
        &json!({"runtime": "agent", "source": text, "params": {"prompt": "x"}, "env": {"AGENT_TEST_KEY": KEY}}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let agent = r.json()["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let child = loop {
        let list = s.req("GET", "/v1/jobs?limit=50", b"").json();
        if let Some(j) = list["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["spec"]["params"]["s"] == 40 && j["status"] == "running")
        {
            break j["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the agent's call never ran: {list}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let c = s.req("POST", &format!("/v1/jobs/{agent}/cancel"), b"");
    assert!(c.status == 200 || c.status == 202, "{}", c.text());
    assert_eq!(s.wait_terminal(&agent)["status"], "cancelled");
    assert_eq!(s.wait_terminal(&child)["status"], "cancelled");
    // An agent never leaves the node (its env may hold a key; peers never start one).
    let r = s.post_json(
        "/v1/jobs",
        &json!({"runtime": "agent", "source": text, "params": {"prompt": "x"}, "placement": "remote"}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("placement"), "{}", r.text());
}

#[test]
fn errors_are_named_with_the_contracts_exit_codes() {
    let h = Home::new();
    let s = serve(&h, &[]);
    tools(&h, &s);
    // A tool the node does not have: exit 2 before the model is called.
    let model = Model::start(&h, "unused", &script(Some(KEY), json!([])));
    let file = agent_file(&h, "missing", &model, &["wasm-cat", "nope"], "");
    let r = run_agent(&h, &file, &json!({"prompt": "x"}), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.error_line().contains("no tool 'nope'"), "{}", r.stderr);
    assert!(model.requests().is_empty());
    // The key variable unset: exit 2 naming it.
    let file = agent_file(&h, "nokey", &model, &[], "");
    let r = h.run(&["run", "agent", &file, "--params", r#"{"prompt": "x"}"#]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.error_line().contains("AGENT_TEST_KEY"), "{}", r.stderr);
    // A wrong key: the endpoint's 401, exit 2.
    let wrong = Model::start(&h, "wrong", &script(Some("sk-other"), json!([])));
    let file = agent_file(&h, "wrong", &wrong, &[], "");
    let r = run_agent(&h, &file, &json!({"prompt": "x"}), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.error_line().contains("401"), "{}", r.stderr);
    // Nothing listening: exit 4.
    let port = crate::server::free_port();
    let file = h.file(
        "down.toml",
        &format!("endpoint = \"http://127.0.0.1:{port}/v1\"\nmodel = \"m\"\n"),
    );
    let r = run_agent(&h, &file, &json!({"prompt": "x"}), &[]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.error_line().contains("unreachable"), "{}", r.stderr);
    // A reply that is no chat completion: a tool failure, exit 1.
    let junk = Model::start(&h, "junk", &script(None, json!([{"raw": "{\"choices\": 7}"}])));
    let file = agent_file(&h, "junk", &junk, &[], "");
    let r = run_agent(&h, &file, &json!({"prompt": "x"}), &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.error_line().contains("malformed reply"), "{}", r.stderr);
    // Another model: the endpoint's 404, exit 2.
    let file = h.file(
        "other.toml",
        &format!("endpoint = \"{}\"\nmodel = \"other\"\n", junk.endpoint()),
    );
    let r = run_agent(&h, &file, &json!({"prompt": "x"}), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.error_line().contains("404"), "{}", r.stderr);
    // Bad params and a bad file: exit 2.
    let r = run_agent(&h, &file, &json!({"question": "x"}), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let bad = h.file(
        "bad.toml",
        "endpoint = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\nmax_step = 3\n",
    );
    let r = run_agent(&h, &bad, &json!({"prompt": "x"}), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.error_line().contains("max_step"), "{}", r.stderr);
    // An API client may name only the endpoints the operator allows.
    let text = std::fs::read_to_string(agent_file(&h, "api", &wrong, &[], "")).unwrap();
    let r = s.post_json(
        "/v1/jobs",
        &json!({"runtime": "agent", "source": text, "params": {"prompt": "x"}}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("allowed_endpoints"), "{}", r.text());
}

#[test]
fn agents_call_agents_within_max_depth() {
    let h = Home::new();
    // One endpoint for both: the outer agent's first request, the inner agent's, then
    // the outer's last.
    let model = Model::start(
        &h,
        "model",
        &script(
            Some(KEY),
            json!([
                {"expect": {"tools": ["helper"]}, "reply": {"tool_calls": [call("helper", json!({"prompt": "inner question"}))]}},
                {"expect": {"user": "inner question", "tools": ["wasm-cat"]},
                 "reply": {"tool_calls": [call("wasm-cat", json!({"text": "deep"}))]}},
                {"expect": {"tool_contents": ["deep"]}, "reply": {"content": "inner answer"}},
                {"expect": {"tool_contents": ["inner answer"]}, "reply": {"content": "outer answer"}}
            ]),
        ),
    );
    let endpoint = model.endpoint();
    let s = serve(
        &h,
        &[
            ("HANZO_COMPUTE_AGENT_ALLOWED_ENDPOINTS", &endpoint),
            ("HANZO_COMPUTE_RESOURCES_MAX_CONCURRENT_JOBS", "1"),
            ("HANZO_COMPUTE_AGENT_MAX_RUNNING", "1"),
            ("HANZO_COMPUTE_AGENT_KEY_VARS", "AGENT_TEST_KEY"),
            ("AGENT_TEST_KEY", KEY),
        ],
    );
    tools(&h, &s);
    let inner = std::fs::read_to_string(agent_file(&h, "inner", &model, &["wasm-cat"], "")).unwrap();
    add_tool(
        &s,
        &json!({"name": "helper", "runtime": "agent", "source": inner}),
    );
    let outer = std::fs::read_to_string(agent_file(&h, "outer", &model, &["helper"], "")).unwrap();
    // One agent place and one slot: the inner agent takes neither.
    let r = s.post_json(
        "/v1/jobs?wait=true",
        &json!({"runtime": "agent", "source": outer, "params": {"prompt": "outer question"},
                "env": {"AGENT_TEST_KEY": KEY}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let out = &r.json()["output"];
    assert_eq!(out["answer"], "outer answer", "{}", r.text());
    assert_eq!(out["steps"][0]["output"]["answer"], "inner answer");
    assert_eq!(
        out["steps"][0]["output"]["steps"][0]["output"],
        json!({"text": "deep"})
    );
    model.assert_clean(4);
    drop(s);
    // With max_depth 0, an agent may not start another: the model reads why.
    let model = Model::start(
        &h,
        "shallow",
        &script(
            Some(KEY),
            json!([
                {"reply": {"tool_calls": [call("helper", json!({"prompt": "q"}))]}},
                {"expect": {"tool_contents": ["too_deep"]}, "reply": {"content": "fine"}}
            ]),
        ),
    );
    let endpoint = model.endpoint();
    let s = serve(
        &h,
        &[
            ("HANZO_COMPUTE_AGENT_ALLOWED_ENDPOINTS", &endpoint),
            ("HANZO_COMPUTE_AGENT_MAX_DEPTH", "0"),
            ("HANZO_COMPUTE_AGENT_KEY_VARS", "AGENT_TEST_KEY"),
            ("AGENT_TEST_KEY", KEY),
        ],
    );
    let outer = std::fs::read_to_string(agent_file(&h, "outer2", &model, &["helper"], "")).unwrap();
    let r = s.post_json(
        "/v1/jobs?wait=true",
        &json!({"runtime": "agent", "source": outer, "params": {"prompt": "q"}, "env": {"AGENT_TEST_KEY": KEY}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["output"]["steps"][0]["error"]["code"],
        "too_deep",
        "{}",
        r.text()
    );
    model.assert_clean(2);
}

#[test]
fn the_key_never_reaches_logs_outputs_or_receipts() {
    let h = Home::new();
    let log = std::fs::File::create(h.path("node.log")).unwrap();
    let model = Model::start(&h, "model", &two_tools_script());
    let endpoint = model.endpoint();
    let s = Server::start_with(
        &h,
        &[
            ("HANZO_NODE_API_TOKEN", TOKEN),
            ("HANZO_COMPUTE_ENABLED_RUNTIMES", RUNTIMES),
            ("HANZO_NETWORK_ENABLED", "false"),
            ("HANZO_COMPUTE_AGENT_ALLOWED_ENDPOINTS", &endpoint),
            ("HANZO_COMPUTE_AGENT_KEY_VARS", "AGENT_TEST_KEY"),
            ("AGENT_TEST_KEY", KEY),
            ("RUST_LOG", "debug"),
        ],
        &[],
        Stdio::from(log),
    );
    tools(&h, &s);
    // The key comes from the node's own environment (`key_vars`), so the job holds none.
    let text = std::fs::read_to_string(agent_file(&h, "a", &model, &["wasm-cat", "py-shout"], "")).unwrap();
    let r = s.post_json(
        "/v1/jobs?wait=true",
        &json!({"runtime": "agent", "source": text, "params": {"prompt": "shout hi"}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let job = r.json();
    assert_eq!(job["status"], "succeeded", "{job}");
    model.assert_clean(2);
    assert_eq!(model.requests()[1]["auth"], format!("Bearer {KEY}"));
    let id = job["id"].as_str().unwrap();
    let logs = s.req("GET", &format!("/v1/jobs/{id}/logs"), b"").text();
    let mut seen = vec![
        job.to_string(),
        logs,
        s.req("GET", "/v1/jobs?limit=50", b"").text(),
    ];
    for step in job["output"]["steps"].as_array().unwrap() {
        let child = step["job_id"].as_str().unwrap();
        seen.push(s.job(child).to_string());
        seen.push(s.req("GET", &format!("/v1/jobs/{child}/logs"), b"").text());
    }
    drop(s);
    seen.push(std::fs::read_to_string(h.path("node.log")).unwrap());
    for text in &seen {
        assert!(!text.contains(KEY), "the key leaked: {text}");
    }
    // The job's env did not hold it, and the receipt names no env at all.
    assert!(job["spec"]["env"].get("AGENT_TEST_KEY").is_none());
    assert!(job["receipt"].is_object());
}

#[test]
fn each_step_reaches_the_live_log_stream_while_the_agent_runs() {
    use std::io::{BufRead, BufReader, Write};
    let h = Home::new();
    let model = Model::start(
        &h,
        "model",
        &script(
            Some(KEY),
            json!([
                {"reply": {"tool_calls": [call("wasm-cat", json!({"text": "early"}))]}},
                {"reply": {"tool_calls": [call("py-sleep", json!({"s": 3}))]}},
                {"reply": {"content": "late"}}
            ]),
        ),
    );
    let endpoint = model.endpoint();
    let s = serve(
        &h,
        &[
            ("HANZO_COMPUTE_AGENT_ALLOWED_ENDPOINTS", &endpoint),
            ("HANZO_COMPUTE_AGENT_KEY_VARS", "AGENT_TEST_KEY"),
            ("AGENT_TEST_KEY", KEY),
        ],
    );
    tools(&h, &s);
    let text = std::fs::read_to_string(agent_file(&h, "a", &model, &["wasm-cat", "py-sleep"], "")).unwrap();
    let r = s.post_json(
        "/v1/jobs",
        &json!({"runtime": "agent", "source": text, "params": {"prompt": "go"}}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    // Follow the job's logs (server-sent events) from the start.
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        sock,
        "GET /v1/jobs/{id}/logs?follow=true HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n",
        s.port
    )
    .unwrap();
    let mut reader = BufReader::new(sock);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream ended without step 1"
        );
        if line.contains("step 1: wasm-cat") {
            break;
        }
    }
    // Step 1 arrived while step 2 (a 3 s tool) runs: the agent is not done.
    assert_eq!(s.job(&id)["status"], "running");
    let mut rest = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        rest.push_str(&line);
    }
    assert!(rest.contains("step 2: py-sleep"), "{rest}");
    assert_eq!(s.wait_terminal(&id)["output"]["answer"], "late");
}

//! The CLI's data surface: params from stdin (`--params -`, `--params-file -`, a
//! piped stdin), and `--json` on every command that prints data, one shape per noun
//! (a list is always `{"<noun>s": [...]}`), never silently ignored.

use crate::server::{CAT, Server};
use crate::util::{Home, assert_one_error_line, with_body};
use serde_json::json;

const SPIN: &str = r#"(func (export "run") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))"#;

#[test]
fn params_come_from_stdin_when_asked_or_piped() {
    let h = Home::new();
    let cat = h.file("cat.wat", CAT);
    // Piped, with neither flag: read as `docker run -i` reads it.
    let r = h.run_stdin(&["run", "wasm", &cat], r#"{"from": "pipe"}"#);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json(), json!({"from": "pipe"}));
    // `-` for either flag.
    let r = h.run_stdin(&["run", "wasm", &cat, "--params", "-"], r#"{"from": "dash"}"#);
    assert_eq!(r.json(), json!({"from": "dash"}), "{}", r.stderr);
    let r = h.run_stdin(
        &["run", "wasm", &cat, "--params-file", "-"],
        "{\"from\":\n \"file dash\"}\n",
    );
    assert_eq!(r.json(), json!({"from": "file dash"}), "{}", r.stderr);
    // The flag wins over a pipe.
    let r = h.run_stdin(
        &["run", "wasm", &cat, "--params", r#"{"from":"flag"}"#],
        r#"{"from":"pipe"}"#,
    );
    assert_eq!(r.json(), json!({"from": "flag"}), "{}", r.stderr);
    // An empty stdin without flags is {} (a closed stdin, `< /dev/null`).
    let r = h.run_stdin(&["run", "wasm", &cat], "");
    assert_eq!(r.json(), json!({}), "{}", r.stderr);
    let r = h.run(&["run", "wasm", &cat]);
    assert_eq!(r.json(), json!({}), "{}", r.stderr);
    // A file redirected in is read as a pipe is.
    let file = h.file("p.json", r#"{"from": "file"}"#);
    let r = h.run_with(&["run", "wasm", &cat], |c| {
        c.stdin(std::fs::File::open(&file).unwrap());
    });
    assert_eq!(r.json(), json!({"from": "file"}), "{}", r.stderr);
    // A socket that is never closed (a supervisor's, Node's child_process) is not read:
    // the run does not wait on it.
    // (Bounded: the other end closes after 12 s, so a regression fails on time, not hangs.)
    let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(12));
        drop(mine);
    });
    let started = std::time::Instant::now();
    let r = h.run_with(&["run", "wasm", &cat], |c| {
        c.stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(theirs)));
    });
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "the run waited on the socket"
    );
    assert_eq!(r.json(), json!({}), "{}", r.stderr);
    // An explicit `-` on an empty stdin, and bad JSON, are bad input.
    assert_one_error_line(
        &h.run_stdin(&["run", "wasm", &cat, "--params", "-"], ""),
        2,
        "stdin is empty",
    );
    assert_one_error_line(
        &h.run_stdin(&["run", "wasm", &cat], "{nope"),
        2,
        "the params on stdin is not valid JSON",
    );
}

#[test]
fn every_data_command_has_one_json_shape_per_noun() {
    let h = Home::new();
    let s = Server::start(&h, &[]);
    let url = s.url();
    let cat = h.file("cat.wat", CAT);
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--node", &url]);
        let r = h.run(&all);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        r
    };
    let cli_stdin = |args: &[&str], input: &str| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--node", &url]);
        let r = h.run_stdin(&all, input);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        r
    };

    // submit without --wait: the id, or with --json the acknowledgement.
    let ack = cli(&["job", "submit", "wasm", &cat, "--json"]).json();
    assert_eq!(ack["status"], "queued", "{ack}");
    let id = ack["id"].as_str().unwrap().to_string();
    let plain = cli(&["job", "submit", "wasm", &cat]);
    assert_eq!(plain.stdout.trim().len(), id.len(), "{}", plain.stdout);
    // --receipt asks for what exists only at the end: it waits, and writes it.
    let receipt = h.path("r.json");
    let r = cli_stdin(
        &[
            "job",
            "submit",
            "wasm",
            &cat,
            "--receipt",
            receipt.to_str().unwrap(),
        ],
        r#"{"piped": true}"#,
    );
    assert_eq!(r.json(), json!({"piped": true}));
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    assert_eq!(written["runtime"], "wasm");

    // Lists: {"jobs": [...]}, {"tools": [...]}, {"runtimes": [...]}.
    let jobs = cli(&["job", "ls", "--json"]).json();
    assert!(jobs["jobs"].as_array().unwrap().len() >= 3, "{jobs}");
    let tool = cli(&["tool", "add", "echo", "wasm", &cat, "--json"]).json();
    assert_eq!(
        (tool["name"].as_str(), tool["runtime"].as_str()),
        (Some("echo"), Some("wasm")),
        "{tool}"
    );
    let tools = cli(&["tool", "ls", "--json"]).json();
    assert_eq!(tools["tools"][0]["name"], "echo", "{tools}");
    let runtimes = h.run(&["runtimes", "--json"]).json();
    assert!(
        runtimes["runtimes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["runtime"] == "wasm")
    );

    // tool call: params piped, the ack with --json, the result with --wait --json.
    let ack = cli_stdin(&["tool", "call", "echo", "--json"], r#"{"a": 1}"#).json();
    assert_eq!(ack["status"], "queued", "{ack}");
    let done = cli_stdin(&["tool", "call", "echo", "--wait", "--json"], r#"{"a": 2}"#).json();
    assert_eq!(done["output"], json!({"a": 2}), "{done}");
    assert!(done["receipt"].is_object());

    // One job, as the node has it; cancel answers with it too.
    let job = cli(&["job", "get", &id, "--json"]).json();
    assert_eq!(job["id"], id.as_str());
    let spin = h.file("spin.wat", &with_body(SPIN));
    let spinning = cli(&["job", "submit", "wasm", &spin, "--json"]).json();
    let spin_id = spinning["id"].as_str().unwrap();
    let cancelled = cli(&["job", "cancel", spin_id, "--json"]).json();
    assert_eq!(cancelled["id"], spin_id, "{cancelled}");
    assert!(cancelled["status"].is_string(), "{cancelled}");
    let rm = cli(&["tool", "rm", "echo", "--json"]).json();
    assert_eq!(rm, json!({"name": "echo", "removed": true}));
}

//! The stdio contract, end to end: the `echo-cmd` executable run as the node runs a native
//! or WASI command tool.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout))
    }

    fn last_stderr_line(&self) -> &str {
        self.stderr.lines().last().unwrap_or("")
    }
}

fn run(function: Option<&str>, stdin: &str) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_echo-cmd"));
    command
        .env_remove("HANZO_FUNCTION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(function) = function {
        command.env("HANZO_FUNCTION", function);
    }
    let mut child = command.spawn().expect("spawn echo-cmd");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[test]
fn default_function_echoes_on_one_line() {
    let params = json!({"text": "hello world", "n": [1, 2, 3], "nested": {"ok": true}});
    let out = run(None, &params.to_string());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), params);
    assert_eq!(out.stdout.matches('\n').count(), 1, "exactly one line");
    assert!(out.stderr.is_empty());
    // `run` named explicitly is the same function.
    assert_eq!(run(Some("run"), "[1]").json(), json!([1]));
}

#[test]
fn failure_exits_one_with_error_on_both_streams() {
    let out = run(Some("fail"), "{}");
    assert_eq!(out.code, 1);
    assert_eq!(out.json(), json!({"error": "requested failure"}));
    assert_eq!(out.last_stderr_line(), "requested failure");
}

#[test]
fn unknown_function_is_a_failure_naming_the_choices() {
    let out = run(Some("nope"), "{}");
    assert_eq!(out.code, 1);
    assert_eq!(
        out.last_stderr_line(),
        "unknown function `nope`; available: run, fail, spin, grow, big_output, log, panic"
    );
}

#[test]
fn invalid_params_are_a_failure() {
    let out = run(Some("big_output"), r#"{"bytes": "many"}"#);
    assert_eq!(out.code, 1);
    assert!(
        out.last_stderr_line().starts_with("invalid params: "),
        "{}",
        out.stderr
    );
}

#[test]
fn logs_go_to_stderr_output_to_stdout() {
    let out = run(Some("log"), r#"{"message": "a log line"}"#);
    assert_eq!(out.code, 0);
    assert_eq!(out.json(), json!({"logged": true}));
    assert_eq!(out.stderr, "a log line\n");
}

#[test]
fn a_panic_is_a_clean_failure() {
    let out = run(Some("panic"), r#"{"message": "kaboom"}"#);
    assert_eq!(out.code, 1);
    let error = out.json()["error"].as_str().unwrap().to_string();
    assert!(error.starts_with("tool panicked at "), "{error}");
    assert!(error.ends_with(": kaboom"), "{error}");
    assert_eq!(out.last_stderr_line(), error);
}

#[test]
fn big_output_is_exact() {
    let out = run(Some("big_output"), r#"{"bytes": 1000000}"#);
    assert_eq!(out.code, 0);
    assert_eq!(out.json().as_str().unwrap().len(), 1_000_000);
}

//! Both tool ABIs (CONTRACTS §1), and the ways a module can be wrong.

use crate::util::*;
use hanzo_compute::{ComputeError, JobSpec, RuntimeKind};
use hanzo_testkit::command_writing;
use serde_json::json;

#[tokio::test]
async fn exports_abi_returns_the_ok_value() {
    let node = Node::new();
    let out = node
        .run_wat(
            &returning("run", r#"{"ok":{"answer":42}}"#),
            json!({"q": 1}),
            |_| {},
        )
        .await;
    assert_eq!(out.result.unwrap(), json!({"answer": 42}));
    let r = out.receipt.expect("receipt");
    r.check_input(&json!({"q": 1})).unwrap();
    r.check_output(&json!({"answer": 42})).unwrap();
}

#[tokio::test]
async fn error_envelope_is_a_tool_failure() {
    let node = Node::new();
    let out = node
        .run_wat(
            &returning("run", r#"{"error":"no such city"}"#),
            json!({}),
            |_| {},
        )
        .await;
    let e = out.result.unwrap_err();
    assert_eq!(e, ComputeError::ToolFailed("no such city".into()));
    assert_eq!(e.exit_code(), 1);
    assert!(out.receipt.is_some(), "a failed run is still receipted");
}

#[tokio::test]
async fn malformed_envelopes_are_clear_tool_errors() {
    let node = Node::new();
    for bad in ["not json", r#"{"result":1}"#, r#"{"ok":1,"error":"x"}"#, "[1,2]"] {
        let out = node.run_wat(&returning("run", bad), json!({}), |_| {}).await;
        let e = out.result.unwrap_err();
        assert!(
            matches!(&e, ComputeError::ToolFailed(m) if m.contains("malformed result envelope")),
            "{bad}: {e:?}"
        );
    }
}

#[tokio::test]
async fn a_result_outside_memory_is_a_tool_error() {
    let node = Node::new();
    let wat = exports_module(
        "",
        r#"(func (export "run") (param i32 i32) (result i64) (i64.const 0x7fff000000000100))"#,
    );
    let e = node.run_wat(&wat, json!({}), |_| {}).await.result.unwrap_err();
    assert!(
        matches!(&e, ComputeError::ToolFailed(m) if m.contains("outside")),
        "{e:?}"
    );
}

#[tokio::test]
async fn unknown_function_names_the_exports() {
    let node = Node::new();
    let out = node
        .run_wat(&returning("summarise", r#"{"ok":1}"#), json!({}), |s| {
            s.function = Some("summarize".into())
        })
        .await;
    let e = out.result.unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let msg = e.to_string();
    assert!(msg.contains("summarize") && msg.contains("summarise"), "{msg}");
    assert!(out.receipt.is_none(), "nothing ran, nothing to attest");
}

#[tokio::test]
async fn the_only_function_or_run_is_the_default() {
    let node = Node::new();
    let out = node
        .run_wat(&returning("score", r#"{"ok":7}"#), json!({}), |_| {})
        .await;
    assert_eq!(out.result.unwrap(), json!(7));
    let two = exports_module(
        r#"{"ok":1}"#,
        &format!(
            "(func (export \"a\") (param i32 i32) (result i64) {p})\n(func (export \"b\") (param i32 i32) (result i64) {p})",
            p = packed(8)
        ),
    );
    let e = node.run_wat(&two, json!({}), |_| {}).await.result.unwrap_err();
    assert!(e.to_string().contains("--function"), "{e}");
}

#[tokio::test]
async fn params_arrive_in_guest_memory() {
    // Returns {"ok": <params>} by wrapping the params the host wrote: it copies them
    // after a 6-byte prefix and appends '}'.
    let node = Node::new();
    let wat = exports_module(
        r#"{"ok":"#,
        r#"(func (export "run") (param $p i32) (param $n i32) (result i64)
    (memory.copy (i32.const 1030) (local.get $p) (local.get $n))
    (i32.store8 (i32.add (i32.const 1030) (local.get $n)) (i32.const 125))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $n) (i32.const 7)))))"#,
    );
    let params = json!({"text": "héllo", "list": [1, 2, 3]});
    let out = node.run_wat(&wat, params.clone(), |_| {}).await;
    assert_eq!(out.result.unwrap(), params);
}

/// A WASI command that copies stdin to stdout.
pub fn cat_command() -> String {
    r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (local $n i32)
    (loop $more
      ;; iovec at 0: buf 1024, len 60000
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 60000))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $n (i32.load (i32.const 8)))
      (if (i32.gt_u (local.get $n) (i32.const 0))
        (then
          (i32.store (i32.const 4) (local.get $n))
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))
          (br $more)))))
)"#
    .to_string()
}

#[tokio::test]
async fn wasi_command_reads_params_on_stdin_and_answers_on_stdout() {
    let node = Node::new();
    let params = json!({"a": [1, 2, {"b": null}], "s": "ünïcode"});
    let out = node.run_wat(&cat_command(), params.clone(), |_| {}).await;
    assert_eq!(out.result.unwrap(), params);
    assert!(out.receipt.is_some());
}

#[tokio::test]
async fn proc_exit_zero_is_success() {
    let node = Node::new();
    let out = node
        .run_wat(
            &command_writing(r#"{"done":true}"#, "log line\n", 0),
            json!({}),
            |_| {},
        )
        .await;
    assert_eq!(out.result.unwrap(), json!({"done": true}));
    assert_eq!(out.logs, b"log line\n");
}

#[tokio::test]
async fn non_zero_exit_reports_the_last_stderr_line() {
    let node = Node::new();
    let out = node
        .run_wat(
            &command_writing("", "working\nboom: bad input\n", 3),
            json!({}),
            |_| {},
        )
        .await;
    let e = out.result.unwrap_err();
    assert_eq!(
        e,
        ComputeError::ToolFailed("exited with code 3: boom: bad input".into())
    );
}

#[tokio::test]
async fn non_zero_exit_prefers_the_error_field_on_stdout() {
    let node = Node::new();
    let out = node
        .run_wat(
            &command_writing(r#"{"error":"quota exceeded"}"#, "noise\n", 1),
            json!({}),
            |_| {},
        )
        .await;
    assert_eq!(
        out.result.unwrap_err(),
        ComputeError::ToolFailed("exited with code 1: quota exceeded".into())
    );
}

#[tokio::test]
async fn output_that_is_not_json_is_a_tool_error() {
    let node = Node::new();
    let e = node
        .run_wat(&command_writing("hello", "", 0), json!({}), |_| {})
        .await
        .result
        .unwrap_err();
    assert!(e.to_string().contains("not one JSON document"), "{e}");
}

#[tokio::test]
async fn a_trap_is_a_tool_error_with_the_trap_named() {
    let node = Node::new();
    let wat = exports_module(
        "",
        r#"(func (export "run") (param i32 i32) (result i64) unreachable)"#,
    );
    let e = node.run_wat(&wat, json!({}), |_| {}).await.result.unwrap_err();
    assert!(
        matches!(&e, ComputeError::ToolFailed(m) if m.contains("trapped") && m.contains("unreachable")),
        "{e:?}"
    );
}

#[tokio::test]
async fn bad_modules_are_bad_input() {
    let node = Node::new();
    let not_wasm = node.dir.path().join("tool.wasm");
    std::fs::write(&not_wasm, b"#!/bin/sh\necho hi\n").unwrap();
    let cases = [
        (not_wasm.display().to_string(), "not a WebAssembly module"),
        ("/nonexistent/tool.wasm".to_string(), "cannot read"),
        (node.fixture("broken", "(module (func"), "not valid WAT"),
        (
            node.fixture(
                "imports",
                r#"(module (import "env" "secret" (func)) (func (export "_start")))"#,
            ),
            "cannot link",
        ),
        (
            node.fixture("inert", "(module (memory 1))"),
            "neither hanzo_alloc",
        ),
        (format!("sha256:{}", "ab".repeat(32)), "unknown module"),
        ("sha256:123".to_string(), "invalid digest"),
    ];
    for (source, expected) in cases {
        let out = node.run(JobSpec::new(RuntimeKind::Wasm, &source)).await;
        let e = out.result.unwrap_err();
        assert_eq!(e.exit_code(), 2, "{source}: {e}");
        assert!(e.to_string().contains(expected), "{source}: {e}");
        assert!(out.receipt.is_none());
    }
}

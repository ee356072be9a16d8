//! Guests that never return are stopped at their timeout, whatever they are doing.

use crate::util::*;
use hanzo_compute::LimitKind;
use serde_json::json;
use std::time::{Duration, Instant};

/// An upper bound for "stopped at the timeout", generous for a loaded CI machine: a
/// check that the limit works, not a benchmark.
const BOUND: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_loop_without_calls_ends_at_the_timeout() {
    let node = Node::new();
    let wat = exports_module(
        "",
        r#"(func (export "run") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))"#,
    );
    let t = Instant::now();
    let out = node.run_wat(&wat, json!({}), |s| s.limits.timeout_ms = 200).await;
    let msg = expect_limit(&out, LimitKind::Timeout);
    assert!(msg.contains("200 ms"), "{msg}");
    assert!(t.elapsed() < BOUND);
    assert!(out.usage.wall_time_ms >= 200.0, "stopped early: {:?}", out.usage);
    assert!(out.receipt.is_some(), "a timed-out job is receipted");
    // The runtime is still healthy.
    let ok = node
        .run_wat(&returning("run", r#"{"ok":1}"#), json!({}), |_| {})
        .await;
    assert_eq!(ok.result.unwrap(), json!(1));
}

#[tokio::test]
async fn a_wasi_command_spinning_in_start_ends_at_the_timeout() {
    let node = Node::new();
    let wat = r#"(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))"#;
    let t = Instant::now();
    let out = node.run_wat(wat, json!({}), |s| s.limits.timeout_ms = 200).await;
    expect_limit(&out, LimitKind::Timeout);
    assert!(t.elapsed() < BOUND);
}

#[tokio::test]
async fn a_guest_asleep_in_a_host_call_ends_at_the_timeout() {
    // poll_oneoff on a 60 s relative clock: the guest sits in the host, where epoch
    // ticks cannot reach it.
    let node = Node::new();
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; subscription at 0: userdata 0, tag 0 (clock), clock id 1 (monotonic),
    ;; timeout 60 s, precision 0, flags 0 (relative)
    (i64.store (i32.const 0) (i64.const 0))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 60000000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 256)))))"#;
    let t = Instant::now();
    let out = node.run_wat(wat, json!({}), |s| s.limits.timeout_ms = 300).await;
    expect_limit(&out, LimitKind::Timeout);
    assert!(t.elapsed() < BOUND, "took {:?}", t.elapsed());
}

#[tokio::test]
async fn many_spinning_guests_all_end() {
    let node = Node::new();
    let path = node.fixture(
        "spin",
        &exports_module(
            "",
            r#"(func (export "run") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))"#,
        ),
    );
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = node.compute.clone();
        let mut spec = hanzo_compute::JobSpec::new(hanzo_compute::RuntimeKind::Wasm, &path);
        spec.limits.timeout_ms = 300;
        tasks.push(tokio::spawn(async move { c.run(spec).await }));
    }
    for t in tasks {
        expect_limit(&t.await.unwrap(), LimitKind::Timeout);
    }
}

//! Unbounded recursion ends in a clean stack-limit error, not a crashed node.

use crate::util::*;
use hanzo_compute::LimitKind;
use serde_json::json;

#[tokio::test]
async fn unbounded_recursion_is_a_clean_stack_limit_error() {
    let node = Node::new();
    let wat = exports_module(
        "",
        r#"(func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))
(func (export "run") (param i32 i32) (result i64) (drop (call $down (i32.const 0))) (i64.const 0))"#,
    );
    for _ in 0..3 {
        let out = node.run_wat(&wat, json!({}), |_| {}).await;
        let msg = expect_limit(&out, LimitKind::Stack);
        assert!(msg.contains("KiB"), "{msg}");
    }
    let ok = node
        .run_wat(&returning("run", r#"{"ok":"still here"}"#), json!({}), |_| {})
        .await;
    assert_eq!(ok.result.unwrap(), json!("still here"));
}

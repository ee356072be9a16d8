//! Unbounded recursion ends in a clean stack-limit error, not a crashed node.

use crate::util::*;
use hanzo_compute::LimitKind;
use hanzo_compute::config::WasmConfig;
use hanzo_wasm_runtime::WasmOptions;
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

/// Recursion `depth` calls deep: ~100 KiB of stack for 3000.
fn deep(depth: u32) -> String {
    exports_module(
        r#"{"ok":1}"#,
        &format!(
            r#"(func $down (param i32) (result i32)
  (if (result i32) (i32.eqz (local.get 0))
    (then (i32.const 0))
    (else (i32.add (i32.const 1) (call $down (i32.sub (local.get 0) (i32.const 1)))))))
(func (export "run") (param i32 i32) (result i64) (drop (call $down (i32.const {depth}))) {})"#,
            packed(8)
        ),
    )
}

#[tokio::test]
async fn a_prewarmed_engine_serves_only_the_configuration_it_was_built_for() {
    // An engine prewarmed for a 16 KiB stack is not the runtime's, whose stack is
    // 512 KiB: the recursion fits.
    hanzo_wasm_runtime::prewarm_without_pool(&WasmConfig {
        max_stack_kb: 16,
        ..test_config()
    });
    let node = Node::with_options(tempfile::tempdir().unwrap(), WasmOptions::without_pooling);
    let out = node.run_wat(&deep(3000), json!({}), |_| {}).await;
    assert_eq!(out.result.unwrap(), json!(1));
    // Prewarmed for the runtime's own configuration, it runs its jobs, limits included.
    hanzo_wasm_runtime::prewarm_without_pool(&test_config());
    let node = Node::with_options(tempfile::tempdir().unwrap(), WasmOptions::without_pooling);
    let out = node.run_wat(&deep(3000), json!({}), |_| {}).await;
    assert_eq!(out.result.unwrap(), json!(1));
    let out = node.run_wat(&deep(1_000_000), json!({}), |_| {}).await;
    expect_limit(&out, LimitKind::Stack);
}

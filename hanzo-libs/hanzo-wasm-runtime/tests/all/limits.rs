//! Memory, fuel and output limits, and requests the node must refuse.

use crate::util::*;
use hanzo_compute::config::{FuelMetering, WasmConfig};
use hanzo_compute::{ComputeError, LimitKind, Network};
use hanzo_wasm_runtime::WasmOptions;
use serde_json::json;

#[tokio::test]
async fn a_memory_grow_bomb_hits_the_memory_limit() {
    memory_grow_bomb(Node::new()).await;
}

/// `hanzo-node run` maps its one instance rather than reserving a pool
/// ([`WasmOptions::without_pooling`]); the limit holds there the same.
#[tokio::test]
async fn without_the_pool_a_memory_grow_bomb_hits_the_memory_limit_the_same() {
    let node = Node::with_options(tempfile::tempdir().unwrap(), WasmOptions::without_pooling);
    assert!(!node.wasm.pooling());
    memory_grow_bomb(node).await;
}

/// The pool's slots hold one memory and one table of at most 20,000 elements. A
/// module of another shape is refused as bad input naming it, with the pool (whose
/// compiler process has none: the artifact it wrote is dropped, not kept to be
/// compiled again by every job) and without it.
#[tokio::test]
async fn a_module_outside_the_pools_shape_is_refused_with_or_without_the_pool() {
    for node in [
        Node::new(),
        Node::with_options(tempfile::tempdir().unwrap(), WasmOptions::without_pooling),
    ] {
        for (wat, named) in [
            (
                r#"(module (memory 1) (memory 1) (func (export "_start")))"#,
                "2 linear memories",
            ),
            (
                r#"(module (table 1 funcref) (table 1 funcref) (func (export "_start")))"#,
                "2 tables",
            ),
            (
                r#"(module (table 20001 funcref) (func (export "_start")))"#,
                "20001 elements",
            ),
        ] {
            let out = node.run_wat(wat, json!({}), |_| {}).await;
            assert!(
                matches!(&out.result, Err(ComputeError::InvalidInput(m)) if m.contains(named)),
                "pooling {}: {wat}: {:?}",
                node.wasm.pooling(),
                out.result
            );
        }
        let artifacts = std::fs::read_dir(node.dir.path().join("modules"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "cwasm")
            })
            .count();
        // Without the pool the three artifacts load, and the shape is refused from them
        // without compiling again; a pooled engine cannot load them, so none is kept.
        let expected = if node.wasm.pooling() { 0 } else { 3 };
        assert_eq!(artifacts, expected, "pooling {}", node.wasm.pooling());
    }
}

/// Growing a table past 20,000 elements fails (`table.grow` gives -1) with or without
/// the pool; the guest answers only when it did.
#[tokio::test]
async fn a_table_grows_to_the_pools_slot_and_no_further_with_or_without_the_pool() {
    let envelope = r#"{"ok":"refused"}"#;
    let wat = exports_module(
        envelope,
        &format!(
            r#"(table $t 1 funcref)
(func (export "run") (param i32 i32) (result i64)
    (if (i32.eq (table.grow $t (ref.null func) (i32.const 19999)) (i32.const -1)) (then unreachable))
    (if (i32.ne (table.grow $t (ref.null func) (i32.const 1)) (i32.const -1)) (then unreachable))
    {})"#,
            packed(envelope.len())
        ),
    );
    for node in [
        Node::new(),
        Node::with_options(tempfile::tempdir().unwrap(), WasmOptions::without_pooling),
    ] {
        let out = node.run_wat(&wat, json!({}), |s| s.limits.memory_mb = 16).await;
        assert_eq!(
            out.result.unwrap(),
            json!("refused"),
            "pooling: {}",
            node.wasm.pooling()
        );
    }
}

async fn memory_grow_bomb(node: Node) {
    let wat = exports_module(
        "",
        r#"(func (export "run") (param i32 i32) (result i64)
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    (i64.const 0))"#,
    );
    let out = node.run_wat(&wat, json!({}), |s| s.limits.memory_mb = 16).await;
    let msg = expect_limit(&out, LimitKind::Memory);
    assert!(msg.contains("memory"), "{msg}");
    let peak = out.usage.peak_memory_bytes.unwrap();
    assert!(peak <= 16 * 1024 * 1024, "peak {peak} above the limit");
    assert!(out.receipt.is_some());
}

#[tokio::test]
async fn a_module_whose_initial_memory_is_too_large_is_refused() {
    let node = Node::new();
    // 1000 pages = 62.5 MiB before any code runs.
    let wat = r#"(module (memory (export "memory") 1000) (func (export "_start")))"#;
    let out = node.run_wat(wat, json!({}), |s| s.limits.memory_mb = 16).await;
    expect_limit(&out, LimitKind::Memory);
}

#[tokio::test]
async fn tables_count_against_the_memory_limit() {
    // 15 pages (960 KiB) of linear memory leave room under 1 MiB for a table of about
    // 8,000 elements (8 bytes each) but not 16,000: the second growth must trap.
    let node = Node::new();
    let wat = exports_module(
        "",
        r#"(table $t 1 funcref)
(func (export "run") (param i32 i32) (result i64)
    (loop $l (br_if $l (i32.ne (table.grow $t (ref.null func) (i32.const 8000)) (i32.const -1))))
    (i64.const 0))"#,
    )
    .replace(
        "(memory (export \"memory\") 2)",
        "(memory (export \"memory\") 15)",
    );
    let out = node.run_wat(&wat, json!({}), |s| s.limits.memory_mb = 1).await;
    let msg = expect_limit(&out, LimitKind::Memory);
    assert!(msg.contains("table"), "{msg}");
}

#[tokio::test]
async fn fuel_is_metered_and_enforced() {
    let node = Node::new();
    let counting = exports_module(
        r#"{"ok":1}"#,
        &format!(
            r#"(func (export "run") (param i32 i32) (result i64)
    (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
             (br_if $l (i32.lt_u (local.get $i) (i32.const 100000))))
    {})"#,
            packed(8)
        ),
    );
    // A job that sets no fuel limit is not metered (fuel_metering = "on_demand").
    let free = node.run_wat(&counting, json!({}), |_| {}).await;
    assert_eq!(free.result.unwrap(), json!(1));
    assert_eq!(free.usage.fuel_consumed, None);
    assert_eq!(free.receipt.unwrap().usage.fuel_consumed, None);

    let plenty = |s: &mut hanzo_compute::JobSpec| s.limits.fuel = Some(u64::MAX);
    let a = node.run_wat(&counting, json!({}), plenty).await;
    let b = node.run_wat(&counting, json!({}), plenty).await;
    let used = a.usage.fuel_consumed.unwrap();
    assert!(used > 100_000, "fuel {used}");
    assert_eq!(used, b.usage.fuel_consumed.unwrap(), "fuel is exact, run to run");
    assert_eq!(a.receipt.unwrap().usage.fuel_consumed, Some(used));
    // The deterministic profile always counts fuel (verification compares it).
    let d = node
        .run_wat(&counting, json!({}), |s| s.deterministic = true)
        .await;
    assert_eq!(d.usage.fuel_consumed, Some(used));

    let out = node
        .run_wat(&counting, json!({}), |s| s.limits.fuel = Some(10_000))
        .await;
    expect_limit(&out, LimitKind::Fuel);
    let out = node
        .run_wat(&counting, json!({}), |s| s.limits.fuel = Some(used))
        .await;
    assert_eq!(out.result.unwrap(), json!(1), "exactly enough fuel is enough");
}

#[tokio::test]
async fn fuel_metering_always_meters_every_job() {
    let dir = tempfile::tempdir().unwrap();
    let options = WasmOptions::new(
        dir.path(),
        WasmConfig {
            fuel_metering: FuelMetering::Always,
            ..test_config()
        },
    )
    .with_compiler(compiler_process());
    let node = Node::with_options(dir, |_| options);
    let out = node
        .run_wat(&returning("run", r#"{"ok":7}"#), json!({}), |_| {})
        .await;
    assert_eq!(out.result.unwrap(), json!(7));
    assert!(out.usage.fuel_consumed.is_some_and(|f| f > 0), "{:?}", out.usage);
}

#[tokio::test]
async fn an_envelope_over_the_output_cap_is_a_limit_error() {
    let node = Node::new();
    // Claims 2 MiB at offset 1024 of a 64-page (4 MiB) memory.
    let wat = exports_module(
        "",
        &format!(
            r#"(func (export "run") (param i32 i32) (result i64) {})"#,
            packed(2 << 20)
        ),
    )
    .replace(
        "(memory (export \"memory\") 2)",
        "(memory (export \"memory\") 64)",
    );
    let out = node
        .run_wat(&wat, json!({}), |s| s.limits.max_output_bytes = 1 << 20)
        .await;
    expect_limit(&out, LimitKind::Output);
}

#[tokio::test]
async fn stdout_over_the_cap_stops_a_command() {
    let node = Node::new();
    // Writes 64 KiB to stdout forever.
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 65536))
    (loop $l (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))) (br $l))))"#;
    let out = node
        .run_wat(wat, json!({}), |s| s.limits.max_output_bytes = 1 << 20)
        .await;
    expect_limit(&out, LimitKind::Output);
}

#[tokio::test]
async fn logs_are_bounded_and_never_fail_the_job() {
    let node = Node::new();
    // 64 KiB to stderr, 40 times (2.5 MiB), then a valid answer.
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 100) "{}")
  (func (export "_start")
    (local $i i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 65536))
    (loop $l (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 40))))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#;
    let out = node.run_wat(wat, json!({}), |_| {}).await;
    assert_eq!(out.result.unwrap(), json!({}));
    assert!(out.logs.len() < 2 << 20, "logs kept: {}", out.logs.len());
    assert!(String::from_utf8_lossy(&out.logs).contains("bytes of logs dropped"));
}

#[tokio::test]
async fn requests_beyond_the_node_are_refused() {
    let node = Node::new();
    let wat = returning("run", r#"{"ok":1}"#);
    let e = node
        .run_wat(&wat, json!({}), |s| s.limits.memory_mb = 1 << 20)
        .await
        .result
        .unwrap_err();
    assert!(
        matches!(&e, ComputeError::InvalidInput(m) if m.contains("max_memory_mb")),
        "{e:?}"
    );
    let e = node
        .run_wat(&wat, json!({}), |s| s.network = Network::Full)
        .await
        .result
        .unwrap_err();
    assert!(
        matches!(&e, ComputeError::InvalidInput(m) if m.contains("network")),
        "{e:?}"
    );
    let e = node
        .run_wat(&wat, json!({}), |s| s.limits.timeout_ms = 0)
        .await
        .result
        .unwrap_err();
    assert_eq!(e.exit_code(), 2);
}

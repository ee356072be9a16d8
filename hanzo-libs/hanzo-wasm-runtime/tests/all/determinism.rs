//! The deterministic profile: the same module and params give the same output hash
//! and fuel, run after run and runtime after runtime.

use crate::util::*;
use hanzo_compute::{JobOutcome, JobSpec, RuntimeKind};
use serde_json::{Value, json};

/// A command that gathers what usually differs between runs and machines (16 random
/// bytes, both clocks, the bits of a NaN computed at run time) and prints them as hex.
const PROBE: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 4000) "0123456789abcdef")
  (func (export "_start")
    (local $i i32) (local $b i32) (local $zero f32)
    (drop (call $random (i32.const 1000) (i32.const 16)))
    (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 1016)))
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 1024)))
    ;; 0/0 from a value the compiler cannot see: the length of stdin.
    (i32.store (i32.const 0) (i32.const 5000))
    (i32.store (i32.const 4) (i32.const 1000))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $zero (f32.mul (f32.convert_i32_u (i32.load (i32.const 8))) (f32.const 0)))
    (f32.store (i32.const 1032) (f32.div (local.get $zero) (local.get $zero)))
    ;; hex-encode bytes 1000..1036 into 2001.., wrapped in quotes
    (i32.store8 (i32.const 2000) (i32.const 34))
    (loop $l
      (local.set $b (i32.load8_u (i32.add (i32.const 1000) (local.get $i))))
      (i32.store8 (i32.add (i32.const 2001) (i32.shl (local.get $i) (i32.const 1)))
        (i32.load8_u (i32.add (i32.const 4000) (i32.shr_u (local.get $b) (i32.const 4)))))
      (i32.store8 (i32.add (i32.const 2002) (i32.shl (local.get $i) (i32.const 1)))
        (i32.load8_u (i32.add (i32.const 4000) (i32.and (local.get $b) (i32.const 15)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 36))))
    (i32.store8 (i32.const 2073) (i32.const 34))
    (i32.store (i32.const 0) (i32.const 2000))
    (i32.store (i32.const 4) (i32.const 74))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

async fn probe(node: &Node, deterministic: bool) -> (String, JobOutcome) {
    let src = node.fixture("probe", PROBE);
    let mut spec = JobSpec::new(RuntimeKind::Wasm, src).params(json!({"seed": "same"}));
    spec.deterministic = deterministic;
    let out = node.run(spec).await;
    let hex = match &out.result {
        Ok(Value::String(s)) => s.clone(),
        other => panic!("probe failed: {other:?}"),
    };
    (hex, out)
}

#[tokio::test]
async fn same_module_and_params_give_the_same_hashes_and_fuel() {
    let a = Node::new();
    let b = Node::new(); // another runtime, another data directory, another key
    let (h1, o1) = probe(&a, true).await;
    let (h2, o2) = probe(&a, true).await;
    let (h3, o3) = probe(&b, true).await;
    assert_eq!(h1, h2);
    assert_eq!(h1, h3);
    let r1 = o1.receipt.unwrap();
    let r3 = o3.receipt.unwrap();
    assert!(r1.deterministic);
    assert_eq!(r1.output_hash, o2.receipt.unwrap().output_hash);
    assert_eq!(r1.output_hash, r3.output_hash);
    assert_eq!(r1.code_hash, r3.code_hash);
    assert_eq!(o1.usage.fuel_consumed, o2.usage.fuel_consumed);
    assert_eq!(o1.usage.fuel_consumed, o3.usage.fuel_consumed);
    assert_ne!(r1.node_id, r3.node_id, "two nodes, one answer");
    // The NaN is the canonical one (0x7fc00000, little-endian), not the host's.
    assert_eq!(&h1[64..72], "0000c07f", "NaN bits: {}", &h1[64..72]);
}

#[tokio::test]
async fn the_standard_profile_is_not_deterministic() {
    // The control: without the profile, random bytes and clocks differ run to run,
    // so the equality above is the profile's doing.
    let node = Node::new();
    let (h1, _) = probe(&node, false).await;
    let (h2, _) = probe(&node, false).await;
    assert_ne!(h1[..32], h2[..32], "random bytes repeated");
}

//! Hostile fixtures through the binary: each ends with the right exit code and a
//! one-line error, and the process exits cleanly (no panic, no signal).

use crate::util::*;
use std::time::{Duration, Instant};

fn limit(args: &[&str], h: &Home, needle: &str) {
    let t = Instant::now();
    let r = h.run(args);
    assert_eq!(r.code, 3, "stderr: {}", r.stderr);
    let line = r.error_line();
    assert!(line.starts_with("error: limit exceeded: "), "{line}");
    assert!(line.contains(needle), "{line}");
    assert!(!r.stderr.contains("panicked"));
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn an_infinite_loop_without_calls_is_exit_3() {
    let h = Home::new();
    let m = h.file(
        "loop.wat",
        &with_body(r#"(func (export "run") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))"#),
    );
    limit(&["run", "wasm", &m, "--timeout-ms", "200"], &h, "timeout");
}

#[test]
fn a_memory_grow_bomb_is_exit_3_naming_memory() {
    let h = Home::new();
    let m = h.file(
        "bomb.wat",
        &with_body(
            r#"(func (export "run") (param i32 i32) (result i64)
  (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) (i64.const 0))"#,
        ),
    );
    limit(&["run", "wasm", &m, "--memory-mb", "16"], &h, "memory");
}

#[test]
fn unbounded_recursion_is_exit_3_naming_the_stack() {
    let h = Home::new();
    let m = h.file(
        "rec.wat",
        &with_body(
            r#"(func $f (call $f))
(func (export "run") (param i32 i32) (result i64) (call $f) (i64.const 0))"#,
        ),
    );
    limit(&["run", "wasm", &m], &h, "stack");
}

#[test]
fn output_over_the_cap_is_exit_3() {
    let h = Home::new();
    let m = h.file(
        "big.wat",
        &with_body(r#"(func (export "run") (param i32 i32) (result i64) (i64.const 0x0000040000010000))"#),
    );
    // Claims 64 KiB at 1024; the cap is 1000 bytes.
    limit(&["run", "wasm", &m, "--max-output-bytes", "1000"], &h, "output");
}

#[test]
fn running_out_of_fuel_is_exit_3() {
    let h = Home::new();
    let m = h.file(
        "loop.wat",
        &with_body(r#"(func (export "run") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))"#),
    );
    limit(&["run", "wasm", &m, "--fuel", "100000"], &h, "fuel");
}

#[test]
fn a_trap_is_exit_1() {
    let h = Home::new();
    let m = h.file(
        "trap.wat",
        &with_body(r#"(func (export "run") (param i32 i32) (result i64) unreachable)"#),
    );
    let r = h.run(&["run", "wasm", &m]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.error_line().contains("unreachable"), "{}", r.stderr);
}

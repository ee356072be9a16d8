//! The module store through the binary: uploads are validated (CLI and API), the store
//! keeps `[node] modules_max_mb`, and compiling is part of the job (`hanzo-node
//! __wasm-compile`, killed at the job's deadline).

use crate::server::Server;
use crate::util::*;
use std::time::{Duration, Instant};

/// A core module header followed by bytes that are no section: stored as a module
/// before uploads were validated.
const GARBAGE: &str = "\0asm\u{1}\0\0\0this is no section at all";

#[test]
fn module_add_refuses_an_invalid_module() {
    let h = Home::new();
    let bad = h.file("bad.wasm", GARBAGE);
    assert_one_error_line(&h.run(&["module", "add", &bad]), 2, "invalid WebAssembly module");
    let ill_typed = h.file("ill.wat", "(module (func (result i32) (i64.const 0)))");
    assert_one_error_line(&h.run(&["module", "add", &ill_typed]), 2, "type mismatch");
    assert_eq!(h.run(&["module", "ls"]).stdout.trim(), "", "nothing was stored");
}

#[test]
fn post_modules_refuses_an_invalid_module() {
    let h = Home::new();
    let s = Server::start(&h, &[]);
    let r = s.req("POST", "/v1/modules", GARBAGE.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    let (code, msg) = r.error();
    assert_eq!(code, "invalid_input");
    assert!(msg.starts_with("body: invalid WebAssembly module"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    let ok = s.module(&returning(r#"{"ok":1}"#));
    assert!(ok.starts_with("sha256:"), "{ok}");
}

/// A module of about `kib` KiB (a custom section) returning `{"ok": tag}`.
fn padded(tag: &str, kib: usize) -> String {
    returning(&format!(r#"{{"ok":"{tag}"}}"#)).replacen(
        "(module",
        &format!("(module (@custom \"padding\" \"{}\")", "x".repeat(kib * 1024)),
        1,
    )
}

#[test]
fn the_module_store_keeps_node_modules_max_mb() {
    let h = Home::new();
    let quota = |c: &mut std::process::Command| {
        c.env("HANZO_NODE_MODULES_MAX_MB", "1");
    };
    let mut shas = Vec::new();
    for tag in ["a", "b", "c", "d"] {
        let m = h.file(&format!("{tag}.wat"), &padded(tag, 300));
        let r = h.run_with(&["module", "add", &m], quota);
        assert_eq!(r.code, 0, "{}", r.stderr);
        shas.push(r.stdout.trim().to_string());
        // File times order the modules' last uses.
        std::thread::sleep(Duration::from_millis(30));
    }
    let ls = h.run(&["module", "ls"]).stdout;
    assert!(
        !ls.contains(&shas[0]),
        "the oldest module should be evicted: {ls}"
    );
    for sha in &shas[1..] {
        assert!(ls.contains(sha.as_str()), "{sha} missing: {ls}");
    }
    let r = h.run_with(&["run", "wasm", &shas[0]], quota);
    assert_one_error_line(&r, 2, "unknown module");
    let r = h.run_with(&["run", "wasm", &shas[3]], quota);
    assert_eq!(r.stdout.trim(), "\"d\"", "{}", r.stderr);
}

#[test]
fn a_pathological_compile_ends_at_the_job_timeout() {
    // One function with 2000 i64 locals all live across 6000 branches: cranelift
    // takes far longer than the timeout (minutes for larger ones).
    let body = hanzo_testkit::live_locals_body(2000, 3);
    let h = Home::new();
    let m = h.file(
        "slow.wat",
        &with_body(&format!(
            r#"(func (export "run") (param i32 i32) (result i64) {body} (i64.const 0))"#
        )),
    );
    let t = Instant::now();
    let r = h.run(&["run", "wasm", &m, "--timeout-ms", "1000", "--memory-mb", "2048"]);
    assert_one_error_line(
        &r,
        3,
        "compiling the module did not finish within the 1000 ms timeout",
    );
    assert!(t.elapsed() < Duration::from_secs(30), "took {:?}", t.elapsed());
}

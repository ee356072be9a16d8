//! The module store through the binary: uploads are validated (CLI and API), the store
//! keeps `[node] modules_max_mb`, and compiling is part of the job (`hanzo-node
//! __wasm-compile`, killed at the job's deadline).

use crate::server::Server;
use crate::util::*;
use serde_json::Value;
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
    let h = Home::new();
    let t = Instant::now();
    let r = run_pathological(&h, 2000, 3, &["--timeout-ms", "1000", "--memory-mb", "2048"]);
    assert_one_error_line(
        &r,
        3,
        "compiling the module did not finish within the 1000 ms timeout",
    );
    assert!(t.elapsed() < Duration::from_secs(30), "took {:?}", t.elapsed());
}

#[test]
fn a_compile_over_the_job_memory_is_exit_3_naming_memory() {
    // The compiler is this binary (`__wasm-compile`) under `RLIMIT_DATA`, with the
    // node's allocator: cranelift needs gigabytes for this function, and the limit
    // must stop it at the job's memory, not let it run to the timeout.
    let h = Home::new();
    let t = Instant::now();
    let r = run_pathological(&h, 3000, 4, &["--timeout-ms", "120000", "--memory-mb", "16"]);
    assert_one_error_line(&r, 3, "compiling the module needed more than the job's 16 MiB");
    assert!(t.elapsed() < Duration::from_secs(100), "took {:?}", t.elapsed());
}

/// `run wasm` of a module whose one function keeps `locals` i64 locals live across
/// `locals * rounds` branches (`hanzo_testkit::live_locals_body`), with `args`.
fn run_pathological(h: &Home, locals: usize, rounds: usize, args: &[&str]) -> Run {
    let body = hanzo_testkit::live_locals_body(locals, rounds);
    let m = h.file(
        "pathological.wat",
        &with_body(&format!(
            r#"(func (export "run") (param i32 i32) (result i64) {body} (i64.const 0))"#
        )),
    );
    h.run(&[&["run", "wasm", m.as_str()], args].concat())
}

/// `module add` with the given quota (MiB); returns `sha256:<hex>`.
fn add(h: &Home, wat: &str, name: &str, quota_mb: &str) -> String {
    let m = h.file(name, wat);
    let r = h.run_with(&["module", "add", &m], |c| {
        c.env("HANZO_NODE_MODULES_MAX_MB", quota_mb);
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_string()
}

/// The shas `module ls --json` lists, in its order (least recently used first).
fn listed(h: &Home) -> Vec<String> {
    let r = h.run(&["module", "ls", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    v["modules"]
        .as_array()
        .unwrap_or_else(|| panic!("no modules list: {v}"))
        .iter()
        .map(|m| m["source"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn module_ls_rm_and_prune_through_the_binary() {
    let h = Home::new();
    let mut shas = Vec::new();
    for tag in ["a", "b", "c", "d"] {
        shas.push(add(&h, &padded(tag, 300), &format!("{tag}.wat"), "0"));
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(listed(&h), shas, "least recently used first");
    let v = h.run(&["module", "ls", "--json"]).json();
    let first = &v["modules"][0];
    assert_eq!(first["sha256"].as_str().unwrap(), &shas[0]["sha256:".len()..]);
    assert!(first["module_bytes"].as_u64().unwrap() > 300 << 10, "{v}");
    assert!(first["bytes"].as_u64().unwrap() >= first["module_bytes"].as_u64().unwrap());
    assert!(first["last_used_unix"].as_u64().unwrap() > 0);

    // Prune to the quota: 4 × 300 KiB pass 1 MiB, so the oldest goes.
    let quota = |mb: &'static str| {
        move |c: &mut std::process::Command| {
            c.env("HANZO_NODE_MODULES_MAX_MB", mb);
        }
    };
    let r = h.run_with(&["module", "prune"], quota("0"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("unbounded"), "{}", r.stderr);
    assert_eq!(listed(&h).len(), 4);
    let r = h.run_with(&["module", "prune", "--json"], quota("1"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let removed: Vec<Value> = r.json()["modules"].as_array().unwrap().clone();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0]["source"], shas[0]);
    assert_eq!(listed(&h), &shas[1..]);

    // rm by a prefix, as docker's image ids.
    let prefix = &shas[3]["sha256:".len().."sha256:".len() + 10];
    let r = h.run(&["module", "rm", prefix, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["modules"][0]["source"], shas[3]);
    assert_eq!(listed(&h), &shas[1..3]);
    let gone = h.run(&["module", "rm", &shas[3]]);
    assert_one_error_line(&gone, 2, "no module");
    assert_one_error_line(&h.run(&["module", "rm", "xyz"]), 2, "not a sha256");
    // One bad argument removes nothing.
    let r = h.run(&["module", "rm", &shas[2], &shas[3]]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(listed(&h), &shas[1..3]);
    let r = h.run(&["module", "prune", "--all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("modules: 2 removed"), "{}", r.stdout);
    assert!(listed(&h).is_empty());
}

#[test]
fn an_ambiguous_prefix_removes_nothing() {
    let h = Home::new();
    // Among 17 modules two share their first hex digit.
    let mut by_digit: std::collections::HashMap<char, String> = Default::default();
    let (a, b) = (0..17)
        .find_map(|i| {
            let sha = add(
                &h,
                &returning(&format!(r#"{{"ok":{i}}}"#)),
                &format!("{i}.wat"),
                "0",
            );
            let digit = sha.chars().nth("sha256:".len()).unwrap();
            by_digit.insert(digit, sha.clone()).map(|other| (other, sha))
        })
        .unwrap();
    let digit = &a["sha256:".len().."sha256:".len() + 1];
    let before = listed(&h);
    assert_one_error_line(&h.run(&["module", "rm", digit]), 2, "names 2 modules");
    assert_eq!(listed(&h), before);
    let r = h.run(&["module", "rm", &a, &b]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(listed(&h).len(), before.len() - 2);
}

/// A module a registered tool names is never pruned, and removed only with --force:
/// the CLI asks the serving node's API, or reads the job store when no node runs.
#[test]
fn a_module_a_tool_names_is_kept() {
    let h = Home::new();
    let s = Server::start(&h, &[]);
    let named = s.module(&returning(r#"{"ok":"named"}"#));
    let loose = s.module(&returning(r#"{"ok":"loose"}"#));
    let r = s.post_json(
        "/v1/tools",
        &serde_json::json!({"name": "keeper", "runtime": "wasm", "source": named}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let listen = format!("127.0.0.1:{}", s.port);
    let at_node = |c: &mut std::process::Command| {
        c.env("HANZO_NODE_API_LISTEN", &listen);
    };
    let r = h.run_with(&["module", "rm", &named], at_node);
    assert_one_error_line(&r, 2, "named by tool keeper");
    let r = h.run_with(&["module", "prune", "--all", "--json"], at_node);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["modules"][0]["source"], loose, "{v}");
    assert_eq!(v["spared"][0]["used_by"][0], "tool keeper", "{v}");
    assert_eq!(listed(&h), std::slice::from_ref(&named));
    // The node still runs the tool.
    let r = s.req("POST", "/v1/tools/keeper/call?wait=true", b"{}");
    assert_eq!(r.json()["output"], "named", "{}", r.text());

    // With no node serving, the job store says the same.
    drop(s);
    let r = h.run(&["module", "rm", &named]);
    assert_one_error_line(&r, 2, "named by tool keeper");
    let r = h.run(&["cache", "prune", "--all", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.json()["module_store"]["spared"][0]["sha256"],
        named["sha256:".len()..]
    );
    let r = h.run(&["cache", "ls", "--json"]);
    let caches = r.json()["caches"].clone();
    let modules = caches
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "modules")
        .unwrap_or_else(|| panic!("no modules entry: {caches}"));
    assert_eq!(modules["entries"], 1, "{caches}");
    assert_eq!(modules["quota_setting"], "node.modules_max_mb");
    assert_eq!(modules["quota_bytes"], 2048u64 << 20);
    let table = h.run(&["cache", "ls"]).stdout;
    assert!(table.contains("(node.modules_max_mb)"), "{table}");
    let r = h.run(&["module", "rm", "--force", &named]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(listed(&h).is_empty());
}

/// While a node holds the job store but its API does not answer, the CLI cannot tell
/// what tools and jobs name: it says so (exit 4) and removes nothing.
#[test]
fn without_the_nodes_answer_nothing_is_pruned() {
    let h = Home::new();
    let s = Server::start(&h, &[]);
    s.module(&returning(r#"{"ok":1}"#));
    // The node's word on where it listens is gone (as after a crash of the writer)...
    std::fs::remove_file(h.path("home").join("api-url")).unwrap();
    let r = h.run_with(&["module", "prune", "--all"], |c| {
        // ...and the configuration's address is not where it listens.
        c.env(
            "HANZO_NODE_API_LISTEN",
            format!("127.0.0.1:{}", crate::server::free_port()),
        );
    });
    assert_one_error_line(&r, 4, "its API did not answer");
    assert_eq!(listed(&h).len(), 1);
}

//! The example tools doing real work, and the contract's edges: async functions,
//! exceptions, unknown functions, params that are not objects, bad sources, logs.

use crate::util::{Node, example, expect_err, job};
use hanzo_compute::config::DenoConfig;
use hanzo_compute::{Job, Runtime, RuntimeKind};
use hanzo_deno_runtime::DenoRuntime;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;

#[tokio::test]
async fn csv_tool_computes_column_statistics() {
    let node = Node::new();
    let csv = "city,pop,area\nOslo,709,454\n\"Bergen, Vestland\",291,465\nTromsø,77,2521\n";
    let out = node
        .call(&example("csv.ts"), "run", json!({"csv": csv}))
        .await
        .unwrap();
    assert_eq!(out["columns"], json!(["city", "pop", "area"]));
    assert_eq!(out["rows"], json!(3));
    assert!(out["stats"].get("city").is_none(), "text column has no stats");
    let pops = [709.0, 291.0, 77.0];
    let sum: f64 = pops.iter().sum();
    let stat = |k: &str| out["stats"]["pop"][k].as_f64().unwrap();
    assert_eq!(stat("sum"), sum);
    assert_eq!(stat("min"), 77.0);
    assert_eq!(stat("max"), 709.0);
    assert_eq!(stat("mean"), sum / 3.0);
    assert_eq!(out["stats"]["area"]["count"], 3);
    // Other exported functions, by name.
    let rows = node
        .call(&example("csv.ts"), "parse", json!({"csv": csv}))
        .await
        .unwrap();
    assert_eq!(rows[1]["city"], "Bergen, Vestland");
    let back = node
        .call(&example("csv.ts"), "to_csv", json!({"rows": rows}))
        .await
        .unwrap();
    // (serde_json sorts the keys, so the columns come back sorted.)
    let again = node
        .call(&example("csv.ts"), "parse", json!({"csv": back}))
        .await
        .unwrap();
    assert_eq!(again, rows);
}

#[tokio::test]
async fn text_tool_runs_async_and_hashes() {
    let node = Node::new();
    let text = "The cat sat. The cat ran!\nA dog?";
    let out = node
        .call(&example("text.ts"), "run", json!({"text": text, "top": 2}))
        .await
        .unwrap();
    assert_eq!(out["words"], 8);
    assert_eq!(out["lines"], 2);
    assert_eq!(out["sentences"], 3);
    assert_eq!(out["top_words"], json!([["cat", 2], ["the", 2]]));
    assert_eq!(out["sha256"], hex::encode(Sha256::digest(text.as_bytes())));
    let slug = node
        .call(&example("text.ts"), "slugify", json!({"text": "Héllo, Wörld!"}))
        .await
        .unwrap();
    assert_eq!(slug, "hello-world");
    let wrapped = node
        .call(
            &example("text.ts"),
            "wrap",
            json!({"text": "aa bb cc dd", "width": 5}),
        )
        .await
        .unwrap();
    assert_eq!(wrapped, "aa bb\ncc dd");
}

#[tokio::test]
async fn code_hash_is_the_sha256_of_the_script() {
    let node = Node::new();
    let path = example("text.ts");
    let exec = node.exec(job(&path).params(json!({"text": "x"}))).await;
    exec.result.unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(exec.code_hash.unwrap(), hex::encode(Sha256::digest(bytes)));
}

#[tokio::test]
async fn exceptions_are_tool_failures_with_message_and_stack() {
    let node = Node::new();
    let t = node.tool(
        "throws.ts",
        "function deep() { throw new TypeError(\"bad widget 42\"); }\n\
         export async function run() { await Promise.resolve(); deep(); }\n\
         export function rejects() { return Promise.reject(\"plain string\"); }\n",
    );
    let exec = node.exec(job(&t)).await;
    expect_err(&exec.result, 1, "bad widget 42");
    let logs = String::from_utf8_lossy(&exec.logs);
    assert!(logs.contains("at deep"), "stack in logs: {logs}");
    expect_err(&node.call(&t, "rejects", json!({})).await, 1, "plain string");
    // A throw while loading the module.
    let t = node.tool(
        "top.ts",
        "throw new Error(\"no config\");\nexport function run() {}\n",
    );
    expect_err(
        &node.call(&t, "run", json!({})).await,
        1,
        "failed to load: no config",
    );
}

#[tokio::test]
async fn unknown_function_lists_the_exports() {
    let node = Node::new();
    // Bad input (exit 2), as in the Python and WASM runtimes.
    let msg = expect_err(
        &node.call(&example("csv.ts"), "nope", json!({})).await,
        2,
        "unknown function 'nope'",
    );
    for f in ["'parse'", "'records'", "'run'", "'to_csv'"] {
        assert!(msg.contains(f), "{msg}");
    }
    assert_eq!(msg.lines().count(), 1, "{msg}");
    let t = node.tool("none.ts", "export const x = 1;\n");
    expect_err(&node.call(&t, "run", json!({})).await, 2, "exports no functions");
    let e = node.exec(job(&t).function("")).await.result;
    expect_err(&e, 2, "empty");
    // Only the runner's exit code makes it bad input: the same message thrown, or
    // exit 2 without it, is the tool's failure.
    let t = node.tool(
        "fake.ts",
        "export function run() { throw new Error(\"unknown function 'x': the tool exports 'run'\"); }\n\
         export function two() { Deno.exit(2); }\n",
    );
    expect_err(&node.call(&t, "run", json!({})).await, 1, "unknown function 'x'");
    expect_err(&node.call(&t, "two", json!({})).await, 1, "");
}

#[tokio::test]
async fn params_need_not_be_objects() {
    let node = Node::new();
    let t = node.tool(
        "echo.js",
        "export const run = (p) => p;\nexport function nothing() {}\n",
    );
    for p in [json!([1, "two", null]), json!("text"), json!(3.5), json!(null)] {
        assert_eq!(node.call(&t, "run", p.clone()).await.unwrap(), p);
    }
    // undefined becomes null.
    assert_eq!(node.call(&t, "nothing", json!({})).await.unwrap(), json!(null));
    // A tool that wants an object says so.
    expect_err(
        &node.call(&example("csv.ts"), "run", json!(["a,b"])).await,
        1,
        "params must be an object",
    );
}

#[tokio::test]
async fn results_json_cannot_hold_are_failures() {
    let node = Node::new();
    let t = node.tool(
        "odd.ts",
        "export const run = () => 10n;\nexport const cyc = () => { const a: any = {}; a.a = a; return a; };\n\
         export const f = () => () => 1;\n",
    );
    expect_err(
        &node.call(&t, "run", json!({})).await,
        1,
        "cannot be written as JSON",
    );
    expect_err(
        &node.call(&t, "cyc", json!({})).await,
        1,
        "cannot be written as JSON",
    );
    expect_err(&node.call(&t, "f", json!({})).await, 1, "a function");
}

#[tokio::test]
async fn console_output_goes_to_the_logs() {
    let node = Node::new();
    let t = node.tool(
        "noisy.ts",
        "console.log(\"at load\");\n\
         export function run() {\n\
           console.log(\"L\"); console.info(\"I\"); console.debug(\"D\"); console.dir({d: 1});\n\
           console.table([{t: 1}]); console.count(); console.group(\"G\"); console.log(\"in\"); console.groupEnd();\n\
           console.time(); console.timeEnd(); console.warn(\"W\"); console.error(\"E\");\n\
           Deno.stdout.writeSync(new TextEncoder().encode(\"raw\\n\"));\n\
           return {ok: true};\n\
         }\n",
    );
    let exec = node.exec(job(&t)).await;
    assert_eq!(exec.result.unwrap(), json!({"ok": true}));
    let logs = String::from_utf8_lossy(&exec.logs);
    for s in [
        "at load",
        "L\n",
        "I\n",
        "D\n",
        "d: 1",
        "t: 1",
        "default: 1",
        "  in",
        "W\n",
        "E\n",
        "raw\n",
    ] {
        assert!(logs.contains(s), "{s:?} not in logs: {logs}");
    }
}

#[tokio::test]
async fn bad_sources_are_bad_input() {
    let node = Node::new();
    let missing = node.tools.path().join("missing.ts");
    let e = node.exec(job(missing.to_str().unwrap())).await;
    expect_err(&e.result, 2, "no such file");
    assert!(e.code_hash.is_none());
    let py = node.tool("t.py", "def run(p): return p\n");
    expect_err(&node.exec(job(&py)).await.result, 2, "not a Deno script");
    // A syntax error is found when the modules are loaded, before anything runs.
    let bad = node.tool("bad.ts", "export function run( {\n");
    let e = node.exec(job(&bad)).await;
    expect_err(&e.result, 2, "cannot load the tool's modules");
    // Deno's own variables are the node's.
    let mut spec = job(&example("text.ts"));
    spec.env
        .insert("DENO_V8_FLAGS".into(), "--max-old-space-size=100000".into());
    expect_err(&node.exec(spec).await.result, 2, "DENO_V8_FLAGS");
}

#[tokio::test]
async fn missing_deno_is_unavailable_with_advice() {
    let data = tempfile::tempdir().unwrap();
    let config = DenoConfig {
        binary: "/nonexistent/deno".into(),
    };
    let rt = DenoRuntime::new(
        Arc::new(hanzo_sandbox::Sandbox::detect()),
        &config,
        data.path(),
        64,
    );
    let h = rt.health().await;
    assert!(!h.available);
    let detail = h.detail.unwrap();
    assert!(
        detail.contains("/nonexistent/deno") && detail.contains("pip install deno"),
        "{detail}"
    );
    let spec = hanzo_compute::JobSpec::new(RuntimeKind::Deno, example("text.ts"));
    let e = rt.execute(&Job::new(spec)).await.result;
    expect_err(&e, 4, "pip install deno");
}

#[tokio::test]
async fn health_and_capabilities_name_deno() {
    let node = Node::new();
    let h = node.rt.health().await;
    let out = std::process::Command::new(hanzo_testkit::toolchain("deno"))
        .arg("--version")
        .output()
        .unwrap();
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let version = h.version.expect("version");
    assert!(first.contains(&version), "{first} vs {version}");
    let caps = node.rt.capabilities();
    assert!(
        caps.isolation.contains(&format!("deno {version}")),
        "{}",
        caps.isolation
    );
    let mem = &caps.limits[&hanzo_compute::LimitKind::Memory];
    assert!(mem.how.contains("max-old-space-size"), "{}", mem.how);
    assert!(caps.mounts && caps.network);
}

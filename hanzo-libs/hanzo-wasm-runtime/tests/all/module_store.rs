//! The content-addressed store: `sha256:<hex>` sources, and no recompilation after a
//! restart.

use crate::util::*;
use hanzo_compute::{JobSpec, RuntimeKind};
use serde_json::json;

#[tokio::test]
async fn a_restarted_runtime_loads_the_precompiled_module() {
    let wat = returning("run", r#"{"ok":"from the store"}"#);
    let first = Node::new();
    let path = first.fixture("tool", &wat);
    let out = first.run(JobSpec::new(RuntimeKind::Wasm, &path)).await;
    assert_eq!(out.result.unwrap(), json!("from the store"));
    assert_eq!(first.wasm.compilations(), 1);
    // A second call is served from memory.
    first
        .run(JobSpec::new(RuntimeKind::Wasm, &path))
        .await
        .result
        .unwrap();
    assert_eq!(first.wasm.compilations(), 1);
    let sha = out.receipt.unwrap().code_hash;
    assert_eq!(sha, hanzo_wasm_runtime::module_digest(wat.as_bytes()).unwrap());

    // "Restart": a new runtime over the same data directory.
    let node = Node::in_dir(first.dir);
    let out = node
        .run(JobSpec::new(RuntimeKind::Wasm, format!("sha256:{sha}")))
        .await;
    assert_eq!(out.result.unwrap(), json!("from the store"));
    assert_eq!(node.wasm.compilations(), 0, "the restart compiled again");
}

#[tokio::test]
async fn a_corrupt_artifact_is_recompiled() {
    let node = Node::new();
    let sha = node
        .wasm
        .add_module(returning("run", r#"{"ok":2}"#).as_bytes())
        .unwrap();
    node.run(JobSpec::new(RuntimeKind::Wasm, format!("sha256:{sha}")))
        .await
        .result
        .unwrap();
    for entry in std::fs::read_dir(node.wasm.module_store().dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "cwasm") {
            std::fs::write(&p, b"garbage").unwrap();
        }
    }
    let fresh = Node::in_dir(node.dir);
    let out = fresh
        .run(JobSpec::new(RuntimeKind::Wasm, format!("sha256:{sha}")))
        .await;
    assert_eq!(out.result.unwrap(), json!(2));
    assert_eq!(fresh.wasm.compilations(), 1);
}

#[tokio::test]
async fn an_edited_file_is_a_new_module() {
    let node = Node::new();
    let path = node.fixture("tool", &returning("run", r#"{"ok":1}"#));
    let a = node.run(JobSpec::new(RuntimeKind::Wasm, &path)).await;
    // Same length, different bytes, new mtime: must not be served from the cache.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&path, returning("run", r#"{"ok":2}"#)).unwrap();
    let b = node.run(JobSpec::new(RuntimeKind::Wasm, &path)).await;
    assert_eq!(b.result.unwrap(), json!(2));
    assert_ne!(a.receipt.unwrap().code_hash, b.receipt.unwrap().code_hash);
}

//! The content-addressed store (`NativeRuntime::with_store`): a tool is stored once by
//! digest, run read-only in place, and its receipt names exactly the stored bytes.

use crate::util::*;
use hanzo_native_runtime::NativeRuntime;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

fn stored(dir: &std::path::Path) -> Node {
    Node::with(Arc::new(
        NativeRuntime::new(sandbox(), PathBuf::from(HELPER), 128).with_store(dir.join("store")),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_is_stored_once_and_its_hash_follows_its_bytes() {
    let f = Fixtures::new();
    let node = stored(f.path());
    let tool = f.script("tool.sh", "#!/bin/sh\necho '\"v1\"'\n");
    let a = node.run(job(&tool)).await;
    assert_eq!(ok(&a), &json!("v1"));
    let hash = sha256_file(&tool);
    assert_eq!(a.receipt.as_ref().unwrap().code_hash, hash);
    let copy = f.path().join("store").join(&hash);
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o555
    );
    let b = node.run(job(&tool)).await;
    assert_eq!(b.receipt.as_ref().unwrap().code_hash, hash);
    // A changed tool is a new entry with its own hash.
    std::fs::write(&tool, "#!/bin/sh\necho '\"v2\"'\n").unwrap();
    let c = node.run(job(&tool)).await;
    assert_eq!(ok(&c), &json!("v2"));
    assert_eq!(c.receipt.as_ref().unwrap().code_hash, sha256_file(&tool));
    assert_ne!(c.receipt.as_ref().unwrap().code_hash, hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_cannot_rewrite_its_stored_copy() {
    let f = Fixtures::new();
    let node = stored(f.path());
    let tool = f.script(
        "tool.sh",
        "#!/bin/sh\necho 'echo pwned' >> \"$0\" 2>/dev/null && echo '\"wrote\"' || echo '\"refused\"'\n",
    );
    let hash = sha256_file(&tool);
    let out = node.run(job(&tool)).await;
    assert_eq!(ok(&out), &json!("refused"));
    assert_eq!(sha256_file(&f.path().join("store").join(&hash)), hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_library_runs_in_the_helper() {
    let f = Fixtures::new();
    let node = stored(f.path());
    let lib = f.c_library(
        "libok.so",
        "const char *execute_tool(const unsigned char *p, unsigned long n) { return \"{\\\"ok\\\": 7}\"; }\n",
    );
    let out = node.run(job(&lib)).await;
    assert_eq!(ok(&out), &json!(7));
    assert_eq!(out.receipt.as_ref().unwrap().code_hash, sha256_file(&lib));
    let missing = node.run(job(f.path().join("nope"))).await;
    rejected(&missing, "no such file");
}

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
    // The artifacts are mapped by the runtime that loaded them: stop it before
    // corrupting them in place (the node itself only ever replaces files whole).
    let Node { dir, wasm, compute } = node;
    let store_dir = wasm.module_store().dir().to_path_buf();
    drop((compute, wasm));
    for entry in std::fs::read_dir(&store_dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "cwasm") {
            std::fs::write(&p, b"garbage").unwrap();
        }
    }
    let fresh = Node::in_dir(dir);
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

#[tokio::test]
async fn invalid_modules_are_refused_before_they_are_stored() {
    let node = Node::new();
    // A core module header followed by garbage: stored as it was before validation.
    let mut garbage = b"\0asm\x01\0\0\0".to_vec();
    garbage.extend_from_slice(b"this is no section at all");
    // Well formed but ill typed: an i64 returned where an i32 is declared.
    let ill_typed_wat = "(module (func (result i32) (i64.const 0)))";
    let ill_typed = wat::parse_str(ill_typed_wat).unwrap();
    for bytes in [garbage, ill_typed, ill_typed_wat.as_bytes().to_vec()] {
        let e = node.wasm.add_module(&bytes).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        let msg = e.to_string();
        assert!(msg.contains("invalid WebAssembly module"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
    assert!(node.wasm.module_store().list().unwrap().is_empty());
    // A valid one is stored.
    node.wasm
        .add_module(returning("run", r#"{"ok":1}"#).as_bytes())
        .unwrap();
    assert_eq!(node.wasm.module_store().list().unwrap().len(), 1);
}

/// An exports-ABI module returning `{"ok": tag}`, made about `kib` KiB larger by a
/// custom section (which its compiled artifact does not carry).
fn padded(tag: &str, kib: usize, body: &str) -> String {
    let envelope = format!(r#"{{"ok":"{tag}"}}"#);
    format!(
        r#"(module
  (memory (export "memory") 2)
  (func (export "hanzo_alloc") (param i32) (result i32) (i32.const 65536))
  (func (export "run") (param i32 i32) (result i64) {body} {packed})
  (data (i32.const 1024) "{escaped}")
  (@custom "padding" "{pad}"))"#,
        packed = packed(envelope.len()),
        escaped = envelope.replace('"', "\\\""),
        pad = "x".repeat(kib * 1024),
    )
}

fn quota_node(mb: u64) -> Node {
    Node::with_options(tempfile::tempdir().unwrap(), |o| o.with_modules_max_mb(mb))
}

fn pause() {
    // File times order the modules' last uses: keep the steps apart.
    std::thread::sleep(std::time::Duration::from_millis(30));
}

#[tokio::test]
async fn the_store_keeps_its_quota_evicting_the_least_recently_used() {
    let node = quota_node(1);
    let store = node.wasm.module_store();
    let quota = 1 << 20;
    let mut shas = Vec::new();
    for tag in ["a", "b", "c"] {
        shas.push(node.wasm.add_module(padded(tag, 300, "").as_bytes()).unwrap());
        pause();
    }
    let [a, b, c] = [shas[0].clone(), shas[1].clone(), shas[2].clone()];
    assert!(store.usage() <= quota, "{}", store.usage());
    // Using `a` makes it the most recently used, though it was added first.
    let out = node
        .run(JobSpec::new(RuntimeKind::Wasm, format!("sha256:{a}")))
        .await;
    assert_eq!(out.result.unwrap(), json!("a"));
    pause();
    let files = || {
        std::fs::read_dir(store.dir())
            .unwrap()
            .flatten()
            .map(|e| {
                format!(
                    "{} {}",
                    e.file_name().to_string_lossy(),
                    e.metadata().unwrap().len()
                )
            })
            .collect::<Vec<_>>()
    };
    // A fourth module takes the store past its quota: the least recently used, `b`, goes.
    let d = node.wasm.add_module(padded("d", 300, "").as_bytes()).unwrap();
    assert!(store.usage() <= quota, "{}", store.usage());
    assert!(!store.contains(&b), "b should have been evicted: {:?}", files());
    assert!(
        store.contains(&a) && store.contains(&c) && store.contains(&d),
        "{:?}",
        files()
    );
    pause();
    let e = node.wasm.add_module(padded("e", 300, "").as_bytes()).unwrap();
    assert!(store.usage() <= quota, "{}", store.usage());
    assert!(
        !store.contains(&c),
        "c was the least recently used: {:?}",
        files()
    );
    assert!(
        store.contains(&a) && store.contains(&d) && store.contains(&e),
        "{:?}",
        files()
    );

    // A job naming an evicted module fails clearly.
    let out = node
        .run(JobSpec::new(RuntimeKind::Wasm, format!("sha256:{c}")))
        .await;
    let e = out.result.unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("unknown module"), "{e}");
    let out = node
        .run(JobSpec::new(RuntimeKind::Wasm, format!("sha256:{a}")))
        .await;
    assert_eq!(out.result.unwrap(), json!("a"));

    // A module larger than the whole quota is refused, not stored.
    let e = node
        .wasm
        .add_module(padded("huge", 1200, "").as_bytes())
        .unwrap_err();
    assert!(e.to_string().contains("modules_max_mb"), "{e}");
    assert!(store.usage() <= quota);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_in_use_is_not_evicted() {
    let node = quota_node(1);
    let store = node.wasm.module_store().clone();
    let spin = node
        .wasm
        .add_module(padded("spin", 300, "(loop $l (br $l))").as_bytes())
        .unwrap();
    let c = node.compute.clone();
    let sha = spin.clone();
    let job = tokio::spawn(async move {
        let mut spec = JobSpec::new(RuntimeKind::Wasm, format!("sha256:{sha}"));
        spec.limits.timeout_ms = 3000;
        c.run(spec).await
    });
    // Running by now (compiled, its artifact stored): it is the least recently used.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let x = node.wasm.add_module(padded("x", 300, "").as_bytes()).unwrap();
    pause();
    let y = node.wasm.add_module(padded("y", 300, "").as_bytes()).unwrap();
    pause();
    // Past the quota now: `spin` is the least recently used, but running.
    let z = node.wasm.add_module(padded("z", 300, "").as_bytes()).unwrap();
    assert!(store.contains(&spin), "a running module was evicted");
    assert!(!store.contains(&x) && store.contains(&y) && store.contains(&z));
    expect_limit(&job.await.unwrap(), hanzo_compute::LimitKind::Timeout);
}

//! Executables under the stdio contract: what runs is the file's bytes, copied into the
//! work directory; bad sources are rejected with exit code 2 before anything runs.

use crate::util::*;
use hanzo_compute::{Runtime, RuntimeKind};
use serde_json::json;

#[tokio::test]
async fn a_script_gets_params_function_and_job_id() {
    let f = Fixtures::new();
    let tool = f.script(
        "info",
        "#!/bin/sh\nparams=$(cat)\nprintf '{\"function\":\"%s\",\"job\":\"%s\",\"params\":%s,\"cwd\":\"%s\"}' \
         \"$HANZO_FUNCTION\" \"$HANZO_JOB_ID\" \"$params\" \"$(pwd)\"\n",
    );
    let node = Node::new();
    let out = node
        .call(&tool.display().to_string(), "summarise", json!({"a": [1, 2]}))
        .await;
    let v = ok(&out);
    assert_eq!(v["function"], "summarise");
    assert_eq!(v["params"], json!({"a": [1, 2]}));
    assert_eq!(v["job"], json!(out.job_id));
    assert_eq!(v["cwd"], hanzo_sandbox::GUEST_WORKDIR);
    let out = node.run(job(&tool)).await;
    assert_eq!(ok(&out)["function"], "run", "the default function name");
}

#[tokio::test]
async fn code_hash_is_the_hash_of_what_ran() {
    let f = Fixtures::new();
    let tool = f.script("echo", "#!/bin/sh\nexec cat\n");
    let node = Node::new();
    let out = node.run(job(&tool).params(json!({"x": 1}))).await;
    assert_eq!(ok(&out), &json!({"x": 1}));
    let receipt = out.receipt.expect("receipt");
    assert_eq!(receipt.runtime, RuntimeKind::Native);
    assert_eq!(receipt.code_hash, sha256_file(&tool));
    // Another file, another hash.
    let other = f.script("echo2", "#!/bin/sh\n# another tool\nexec cat\n");
    let out = node.run(job(&other)).await;
    assert_ne!(out.receipt.unwrap().code_hash, receipt.code_hash);
}

#[tokio::test]
async fn an_elf_program_runs_from_its_copy() {
    // /bin/cat, a dynamically linked PIE: its bytes are copied to the work directory and
    // run from there, echoing the params.
    let node = Node::new();
    let out = node.run(job("/bin/cat").params(json!({"via": "cat"}))).await;
    assert_eq!(ok(&out), &json!({"via": "cat"}));
    assert_eq!(
        out.receipt.unwrap().code_hash,
        sha256_file(std::path::Path::new("/bin/cat"))
    );
}

#[tokio::test]
async fn the_sdk_command_runs_natively() {
    let node = Node::new();
    let src = example("text-tools-cmd").display().to_string();
    let out = node
        .call(&src, "slugify", json!({"text": "Hello, Native World!"}))
        .await;
    assert!(
        ok(&out).to_string().contains("hello-native-world"),
        "{:?}",
        out.result
    );
    let out = node.call(&src, "nope", json!({})).await;
    let e = err(&out, 1);
    assert!(e.contains("unknown function `nope`"), "{e}");
}

#[tokio::test]
async fn bad_sources_are_rejected_with_exit_code_2() {
    let f = Fixtures::new();
    let node = Node::new();
    let missing = f.path().join("nope");
    rejected(&node.run(job(&missing)).await, "no such file");
    rejected(&node.run(job(f.path())).await, "is a directory");
    let plain = f.file("plain.sh", "#!/bin/sh\necho '{}'\n", 0o644);
    rejected(&node.run(job(&plain)).await, "not executable");
    let text = f.file("notes.txt", "just some text\n", 0o755);
    rejected(&node.run(job(&text)).await, "neither an executable");
    let empty = f.file("empty", "", 0o755);
    rejected(&node.run(job(&empty)).await, "neither an executable");
    let truncated = f.file("truncated", &std::fs::read("/bin/cat").unwrap()[..40], 0o755);
    rejected(&node.run(job(&truncated)).await, "malformed ELF");
    rejected(&node.run(job("/dev/null")).await, "not a regular file");
    rejected(
        &node.run(job(format!("sha256:{}", "a".repeat(64)))).await,
        "not stored modules",
    );
    // Larger than the work directory may hold.
    let big = f.file("big", vec![b'#'; 2 * 1024 * 1024], 0o755);
    let mut spec = job(&big);
    spec.limits.disk_mb = 1;
    rejected(&node.run(spec).await, "disk_mb");
}

#[tokio::test]
async fn a_failing_tool_reports_its_message() {
    let f = Fixtures::new();
    let tool = f.script(
        "fail",
        "#!/bin/sh\necho 'some log' >&2\necho '{\"error\": \"quota exhausted\"}'\nexit 7\n",
    );
    let out = Node::new().run(job(&tool)).await;
    let e = err(&out, 1);
    assert!(e.contains("quota exhausted") && e.contains('7'), "{e}");
    assert!(String::from_utf8_lossy(&out.logs).contains("some log"));
}

#[tokio::test]
async fn health_capabilities_and_a_missing_helper() {
    let rt = runtime();
    assert_eq!(rt.kind(), RuntimeKind::Native);
    assert!(rt.health().await.available);
    assert!(rt.capabilities().isolation.contains("helper process"));
    let gone = std::sync::Arc::new(hanzo_native_runtime::NativeRuntime::new(
        sandbox(),
        "/nonexistent/hanzo-tool-host".into(),
        64,
    ));
    let h = gone.health().await;
    assert!(!h.available);
    assert!(h.detail.unwrap().contains("/nonexistent/hanzo-tool-host"));
    // Executables need no helper; libraries and built-ins do (exit code 4).
    let node = Node::with(gone);
    assert_eq!(ok(&node.run(job("/bin/cat")).await), &json!({}));
    err(&node.run(job("builtin:uuid")).await, 4);
    err(&node.run(job(example("libecho.so"))).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_sparse_file_is_refused_without_reading_it() {
    // 6 GiB that take no disk: the node must not try to hold them in memory, however
    // large a disk_mb the job asks for.
    let f = Fixtures::new();
    let p = f.file("huge", b"\x7fELF", 0o755);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(6 << 30)
        .unwrap();
    let mut spec = job(&p);
    spec.limits.disk_mb = 100_000;
    let out = Node::new().run(spec).await;
    rejected(&out, "larger than 512 MiB");
}

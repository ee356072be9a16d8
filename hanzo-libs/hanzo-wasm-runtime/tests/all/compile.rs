//! Compilation is part of the job: it counts against the job's timeout and memory, is
//! given up at the deadline, and never stalls jobs of other modules.

use crate::util::*;
use hanzo_compute::{JobSpec, LimitKind, RuntimeKind};
use hanzo_wasm_runtime::Compiler;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// An upper bound for "ended at its timeout, not minutes later", generous for a loaded
/// CI machine: a check that the limit works, not a benchmark.
const BOUND: Duration = Duration::from_secs(30);

/// A module whose one function keeps `locals` i64 locals live at once across
/// `locals * rounds` branches: each local is set (conditionally) from the previous one
/// and all are summed at the end. Cranelift's register allocator needs seconds to
/// minutes and gigabytes for the larger ones.
pub fn pathological(locals: usize, rounds: usize) -> String {
    let body = hanzo_testkit::live_locals_body(locals, rounds);
    exports_module(
        r#"{"ok":1}"#,
        &format!(
            r#"(func (export "run") (param i32 i32) (result i64) {body} {})"#,
            packed(8)
        ),
    )
}

/// Asserts that no process still has `dir` on its command line (a compiler given up
/// is killed; a zombie has none) and that no temporary artifact is left in the store.
fn no_compiler_left(dir: &Path) {
    let needle = dir.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&needle))
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "compiler still running: {alive:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("modules"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pathological_compile_ends_at_the_timeout_while_other_jobs_run() {
    let node = Node::new();
    let slow = node.fixture("slow", &pathological(2000, 3));
    let fast = node.fixture("fast", &returning("run", r#"{"ok":"fast"}"#));
    let started = Instant::now();
    let c = node.compute.clone();
    let slow_job = tokio::spawn(async move {
        let mut spec = JobSpec::new(RuntimeKind::Wasm, &slow);
        spec.limits.timeout_ms = 1000;
        // Memory to spare, so that the timeout is what ends it.
        spec.limits.memory_mb = 2048;
        let out = c.run(spec).await;
        (out, Instant::now())
    });
    // Let the pathological compile begin first; the small job must not wait for it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = node.run(JobSpec::new(RuntimeKind::Wasm, &fast)).await;
    let fast_done = Instant::now();
    assert_eq!(out.result.unwrap(), json!("fast"));

    let (slow_out, slow_done) = slow_job.await.unwrap();
    let msg = expect_limit(&slow_out, LimitKind::Timeout);
    assert!(msg.contains("compiling the module"), "{msg}");
    assert!(
        slow_out.receipt.is_some(),
        "a job that timed out compiling is receipted"
    );
    assert!(
        fast_done < slow_done,
        "the small job waited for the pathological compile"
    );
    assert!(slow_done - started < BOUND, "took {:?}", slow_done - started);
    no_compiler_left(node.dir.path());
}

#[tokio::test]
async fn compiling_counts_against_the_job_memory() {
    let node = Node::new();
    let path = node.fixture("big", &pathological(3000, 4));
    let mut spec = JobSpec::new(RuntimeKind::Wasm, &path);
    spec.limits.memory_mb = 16;
    spec.limits.timeout_ms = 120_000;
    let t = Instant::now();
    let out = node.run(spec).await;
    let msg = expect_limit(&out, LimitKind::Memory);
    assert!(msg.contains("compiling the module"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(100), "took {:?}", t.elapsed());
    no_compiler_left(node.dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_thread_is_given_up_at_the_timeout() {
    // The in-process compiler of an embedding: the thread cannot be stopped, but the job
    // ends at its deadline and other jobs go on.
    let node = Node::with_options(tempfile::tempdir().unwrap(), |o| {
        o.with_compiler(Compiler::Thread)
    });
    let slow = node.fixture("slow", &pathological(1500, 1));
    let t = Instant::now();
    let mut spec = JobSpec::new(RuntimeKind::Wasm, &slow);
    spec.limits.timeout_ms = 100;
    let out = node.run(spec).await;
    let msg = expect_limit(&out, LimitKind::Timeout);
    assert!(msg.contains("compiling the module"), "{msg}");
    assert!(t.elapsed() < BOUND);
    let ok = node
        .run_wat(&returning("run", r#"{"ok":1}"#), json!({}), |_| {})
        .await;
    assert_eq!(ok.result.unwrap(), json!(1));
}

//! Jobs per second through the scheduler: tiny WASM echo jobs (the real runtime,
//! signing on and off) and a no-op runtime (the scheduler's own cost), on 2 tokio
//! worker threads.
//!
//! `cargo run --release -p hanzo-scheduler --example throughput`

use hanzo_compute::config::{ResourcesConfig, WasmConfig};
use hanzo_compute::{
    Capabilities, Compute, Execution, Health, Job, JobOutcome, JobSpec, NodeKey, ResourceLimits, Runtime,
    RuntimeKind, Signing, Usage,
};
use hanzo_scheduler::{Hooks, Options, Scheduler};
use hanzo_wasm_runtime::{WasmOptions, WasmRuntime};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::Notify;

const JOBS: usize = 50_000;
const WARMUP: usize = 2_000;

/// An exports-ABI module whose `run` returns `{"ok": <params>}`.
const ECHO: &str = r#"(module
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 65536))
  (func (export "hanzo_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $len)))
    (local.get $p))
  (data (i32.const 1024) "{\"ok\":")
  (func (export "run") (param $p i32) (param $n i32) (result i64)
    (memory.copy (i32.const 1030) (local.get $p) (local.get $n))
    (i32.store8 (i32.add (i32.const 1030) (local.get $n)) (i32.const 125))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $n) (i32.const 7))))))"#;

/// Counts finished jobs and wakes the benchmark at the target.
struct Count {
    done: AtomicUsize,
    failed: AtomicUsize,
    target: AtomicUsize,
    notify: Notify,
}

#[async_trait::async_trait]
impl Hooks for Count {
    async fn finished(&self, _job: &Job, outcome: &JobOutcome) {
        if outcome.result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.target.load(Ordering::Acquire) {
            self.notify.notify_one();
        }
    }
}

/// A runtime that returns its params at once: what is left is the scheduler.
struct Noop;

#[async_trait::async_trait]
impl Runtime for Noop {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Native
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new("none")
    }
    async fn health(&self) -> Health {
        Health::ok("noop")
    }
    async fn execute(&self, job: &Job) -> Execution {
        Execution {
            code_hash: None,
            function: "run".into(),
            result: Ok(job.spec.params.clone()),
            usage: Usage::default(),
            logs: Vec::new(),
        }
    }
}

async fn batch(scheduler: &Scheduler, count: &Count, spec: &JobSpec, n: usize) -> f64 {
    count.done.store(0, Ordering::Release);
    count.target.store(n, Ordering::Release);
    let notified = count.notify.notified();
    let t = Instant::now();
    for i in 0..n {
        let mut s = spec.clone();
        s.params = serde_json::json!({ "i": i, "text": "a tiny job for the scheduler benchmark" });
        scheduler.submit(Job::new(s)).await.expect("accepted");
    }
    notified.await;
    n as f64 / t.elapsed().as_secs_f64()
}

fn row(label: &str, kind: RuntimeKind, signing: Signing, slots: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut compute = Compute::new(Arc::new(NodeKey::load_or_create(dir.path()).unwrap()));
        compute.register(Arc::new(
            WasmRuntime::new(WasmOptions::new(dir.path(), WasmConfig::default())).unwrap(),
        ));
        compute.register(Arc::new(Noop));
        let echo = dir.path().join("echo.wat");
        std::fs::write(&echo, ECHO).unwrap();
        let count = Arc::new(Count {
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            target: AtomicUsize::new(usize::MAX),
            notify: Notify::new(),
        });
        let resources = ResourcesConfig {
            max_concurrent_jobs: slots,
            ..ResourcesConfig::default()
        };
        let options = Options {
            queue_capacity: JOBS,
            signing,
            ..Options::default()
        };
        let scheduler = Scheduler::new(Arc::new(compute), resources, options, count.clone());
        // What a tiny tool declares: 16 MiB, 1/16 of a core.
        let spec = JobSpec::new(kind, echo.display().to_string()).limits(ResourceLimits {
            memory_mb: 16,
            cpu_shares: 64,
            ..ResourceLimits::default()
        });
        batch(&scheduler, &count, &spec, WARMUP).await;
        let rate = batch(&scheduler, &count, &spec, JOBS).await;
        assert_eq!(count.failed.load(Ordering::Relaxed), 0, "some jobs failed");
        let snap = scheduler.snapshot();
        assert_eq!((snap.running, snap.queued), (0, 0));
        println!("{label:<34} {slots:>5} {rate:>12.0} {:>10.1}", 1e6 / rate);
    });
}

fn main() {
    println!("{JOBS} jobs per row after {WARMUP} warm-up, 2 tokio workers, all submitted at once\n");
    println!("{:<34} {:>5} {:>12} {:>10}", "row", "slots", "jobs/s", "µs/job");
    row("wasm echo, signed receipts", RuntimeKind::Wasm, Signing::On, 10);
    row("wasm echo, no signing", RuntimeKind::Wasm, Signing::Off, 10);
    row("wasm echo, signed receipts", RuntimeKind::Wasm, Signing::On, 64);
    row("wasm echo, no signing", RuntimeKind::Wasm, Signing::Off, 64);
    row(
        "no-op runtime (scheduler alone)",
        RuntimeKind::Native,
        Signing::Off,
        10,
    );
    row(
        "no-op runtime (scheduler alone)",
        RuntimeKind::Native,
        Signing::Off,
        64,
    );
}

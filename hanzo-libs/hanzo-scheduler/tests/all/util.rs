//! Shared helpers: a scheduler over the real WASM runtime plus a gated test runtime,
//! hooks that record every call, and WAT fixtures.

use hanzo_compute::config::{ResourcesConfig, WasmConfig};
use hanzo_compute::{
    Capabilities, Compute, ComputeError, Execution, Health, Job, JobOutcome, JobSpec, NodeKey,
    ResourceLimits, Runtime, RuntimeKind, Usage,
};
use hanzo_scheduler::{Hooks, Options, Resources, Scheduler};
use hanzo_wasm_runtime::{WasmOptions, WasmRuntime};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// How long any wait in a test may take before it fails rather than hangs.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Waits until `done()` holds, woken by `notify`; fails the test after [`PATIENCE`].
pub async fn wait_for(notify: &Notify, what: &str, mut done: impl FnMut() -> bool) {
    let wait = async {
        loop {
            let notified = notify.notified();
            if done() {
                return;
            }
            notified.await;
        }
    };
    if tokio::time::timeout(PATIENCE, wait).await.is_err() {
        panic!("timed out waiting for {what}");
    }
}

/// What the gated runtime saw.
#[derive(Default)]
pub struct Seen {
    /// The `n` param of every job it started, in order.
    pub started: Vec<i64>,
    /// Demand of the jobs inside `execute` now.
    pub current: Resources,
    /// The most of each resource held at once.
    pub peak: Resources,
}

/// A test runtime (registered as `native`) that records each job's demand while it
/// runs and finishes a job only when the gate lets it through (or after `auto`).
pub struct Gated {
    pub available: AtomicBool,
    pub health_calls: AtomicUsize,
    gate: Semaphore,
    auto: Mutex<Option<Duration>>,
    pub seen: Mutex<Seen>,
    pub notify: Notify,
}

impl Gated {
    pub fn new() -> Self {
        Gated {
            available: AtomicBool::new(true),
            health_calls: AtomicUsize::new(0),
            gate: Semaphore::new(0),
            auto: Mutex::new(None),
            seen: Mutex::new(Seen::default()),
            notify: Notify::new(),
        }
    }

    /// Lets `n` jobs finish.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// From now on, every job finishes by itself after `d`.
    pub fn auto(&self, d: Duration) {
        *self.auto.lock().unwrap() = Some(d);
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    pub fn started(&self) -> Vec<i64> {
        self.seen.lock().unwrap().started.clone()
    }

    pub async fn wait_started(&self, n: usize) {
        wait_for(&self.notify, &format!("{n} jobs to start"), || {
            self.seen.lock().unwrap().started.len() >= n
        })
        .await;
    }
}

#[async_trait::async_trait]
impl Runtime for Gated {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Native
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new("none (test runtime)")
    }

    async fn health(&self) -> Health {
        self.health_calls.fetch_add(1, Ordering::SeqCst);
        if self.available.load(Ordering::SeqCst) {
            Health::ok("test")
        } else {
            Health::unavailable("the test daemon is down; start it with `testd`")
        }
    }

    async fn execute(&self, job: &Job) -> Execution {
        let demand = Resources::demand(&job.spec.limits);
        if job.spec.params["panic"] == json!(true) {
            panic!("test runtime asked to panic");
        }
        {
            let mut s = self.seen.lock().unwrap();
            s.started.push(job.spec.params["n"].as_i64().unwrap_or(-1));
            s.current = s.current.plus(&demand);
            s.peak = Resources {
                jobs: s.peak.jobs.max(s.current.jobs),
                memory_mb: s.peak.memory_mb.max(s.current.memory_mb),
                cpu_millicores: s.peak.cpu_millicores.max(s.current.cpu_millicores),
            };
        }
        self.notify.notify_waiters();
        let auto = *self.auto.lock().unwrap();
        let result = tokio::select! {
            p = self.gate.acquire() => {
                p.unwrap().forget();
                if let Some(d) = auto {
                    tokio::time::sleep(d).await;
                }
                Ok(job.spec.params.clone())
            }
            _ = job.cancel.cancelled() => Err(ComputeError::Cancelled),
        };
        {
            let mut s = self.seen.lock().unwrap();
            s.current = s.current.minus(&demand);
        }
        self.notify.notify_waiters();
        Execution {
            code_hash: None,
            function: "run".into(),
            result,
            usage: Usage::default(),
            logs: Vec::new(),
        }
    }
}

/// Hooks that record every call and can veto chosen jobs.
#[derive(Default)]
pub struct Recorder {
    pub starting: Mutex<HashMap<String, u32>>,
    pub finished: Mutex<HashMap<String, Vec<JobOutcome>>>,
    pub finished_total: AtomicUsize,
    pub deny: Mutex<HashSet<String>>,
    pub notify: Notify,
}

impl Recorder {
    pub async fn wait_finished(&self, n: usize) {
        wait_for(&self.notify, &format!("{n} jobs to finish"), || {
            self.finished_total.load(Ordering::SeqCst) >= n
        })
        .await;
    }

    /// The one outcome of job `id` (fails if there is not exactly one).
    pub fn outcome(&self, id: &str) -> JobOutcome {
        let f = self.finished.lock().unwrap();
        let v = f.get(id).unwrap_or_else(|| panic!("job {id} has no outcome"));
        assert_eq!(v.len(), 1, "job {id} finished {} times", v.len());
        v[0].clone()
    }

    pub fn starting_calls(&self, id: &str) -> u32 {
        self.starting.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl Hooks for Recorder {
    async fn starting(&self, job: &Job) -> bool {
        *self.starting.lock().unwrap().entry(job.id.clone()).or_default() += 1;
        !self.deny.lock().unwrap().contains(&job.id)
    }

    async fn finished(&self, job: &Job, outcome: &JobOutcome) {
        assert_eq!(job.id, outcome.job_id);
        self.finished
            .lock()
            .unwrap()
            .entry(job.id.clone())
            .or_default()
            .push(outcome.clone());
        self.finished_total.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

/// A scheduler over a fresh data directory with the WASM and gated runtimes.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub gated: Arc<Gated>,
    pub hooks: Arc<Recorder>,
    pub scheduler: Scheduler,
}

pub fn resources(jobs: u32, memory_gb: u64, cores: u32) -> ResourcesConfig {
    ResourcesConfig {
        max_concurrent_jobs: jobs,
        total_memory_gb: Some(memory_gb),
        total_cpu_cores: Some(cores),
        ..ResourcesConfig::default()
    }
}

impl Env {
    pub fn new(res: ResourcesConfig, options: Options) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let wasm = WasmRuntime::new(WasmOptions::new(
            dir.path(),
            WasmConfig {
                max_instances: 32,
                ..WasmConfig::default()
            },
        ))
        .unwrap();
        let gated = Arc::new(Gated::new());
        let mut compute = Compute::new(Arc::new(NodeKey::load_or_create(dir.path()).unwrap()));
        compute.register(Arc::new(wasm));
        compute.register(gated.clone());
        let hooks = Arc::new(Recorder::default());
        let scheduler = Scheduler::new(Arc::new(compute), res, options, hooks.clone());
        Env {
            dir,
            gated,
            hooks,
            scheduler,
        }
    }

    /// Writes a WAT fixture into the data directory; returns its path.
    pub fn fixture(&self, name: &str, wat: &str) -> String {
        let p = self.dir.path().join(format!("{name}.wat"));
        std::fs::write(&p, wat).unwrap();
        p.display().to_string()
    }

    /// Submits a job and insists it is accepted.
    pub async fn submit(&self, job: &Job) {
        self.scheduler.submit(job.clone()).await.unwrap();
    }
}

/// A job for the gated runtime, labelled `n`.
pub fn gated(n: i64, priority: i32) -> Job {
    sized(n, priority, 64, 64)
}

/// A gated job with the given memory (MiB) and CPU shares.
pub fn sized(n: i64, priority: i32, memory_mb: u64, cpu_shares: u32) -> Job {
    let mut spec = JobSpec::new(RuntimeKind::Native, "test").params(json!({ "n": n }));
    spec.priority = priority;
    spec.limits = ResourceLimits {
        memory_mb,
        cpu_shares,
        ..Default::default()
    };
    Job::new(spec)
}

/// A small exports-ABI job's limits: little memory and a fraction of a core, as a
/// tiny tool would declare.
pub fn tiny_limits() -> ResourceLimits {
    ResourceLimits {
        memory_mb: 16,
        cpu_shares: 64,
        ..Default::default()
    }
}

/// An exports-ABI module whose `run` returns `{"ok": <params>}`: it copies the params
/// after a 6-byte `{"ok":` prefix at offset 1024 and appends `}`.
pub const ECHO: &str = r#"(module
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

/// An exports-ABI module whose `run` spins for ever without calling out.
pub const SPIN: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "hanzo_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "run") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0)))"#;

/// The result of job `id` as JSON, failing the test on an error.
pub fn ok(outcome: &JobOutcome) -> Value {
    match &outcome.result {
        Ok(v) => v.clone(),
        Err(e) => panic!("job {} failed: {e}", outcome.job_id),
    }
}

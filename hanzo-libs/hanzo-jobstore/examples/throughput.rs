//! Throughput of the job store: N tiny jobs, each submitted, started and finished (three
//! committed writes, with a ~1 KB signed receipt), from many tasks at once on a 2-worker
//! tokio runtime; then the memory of a fresh process that opens the resulting store.
//!
//! ```text
//! cargo run --release -p hanzo-jobstore --example throughput -- \
//!     [--jobs 100000] [--tasks 64] [--durability normal|full] [--dir DIR]
//! ```

use hanzo_compute::receipt::{ReceiptBody, hash_json};
use hanzo_compute::{JobOutcome, JobSpec, NodeKey, Receipt, ResourceLimits, RuntimeKind, Usage};
use hanzo_jobstore::{Durability, JobStore, ListFilter, Options, Page, Retention};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Resident and peak resident memory of this process, in MiB.
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn options(durability: Durability) -> Options {
    Options {
        durability,
        retention: Retention::keep_all(),
        ..Options::default()
    }
}

fn receipt() -> Receipt {
    let spec = JobSpec::new(RuntimeKind::Wasm, "sha256:00");
    Receipt::sign(
        ReceiptBody {
            job_id: "0".repeat(32),
            runtime: RuntimeKind::Wasm,
            function: "run".into(),
            code_hash: "ab".repeat(32),
            input_hash: hash_json(&spec.params),
            result: Ok(hash_json(&json!({ "ok": true }))),
            usage: Usage::default(),
            limits: ResourceLimits::default(),
            deterministic: false,
            started_at: SystemTime::now(),
            finished_at: SystemTime::now(),
            context_hash: "11".repeat(32),
            runtime_version: "wasm test".into(),
            nonce: None,
        },
        &NodeKey::from_seed([1; 32]),
    )
    .unwrap()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn burst(path: &Path, jobs: usize, tasks: usize, durability: Durability) {
    let (store, _) = JobStore::open(path, options(durability)).unwrap();
    let receipt = Arc::new(receipt());
    let (rss0, _) = rss();
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        let receipt = receipt.clone();
        let share = jobs / tasks + usize::from(t < jobs % tasks);
        handles.push(tokio::spawn(async move {
            let mut submit_us = Vec::with_capacity(share);
            for i in 0..share {
                let spec =
                    JobSpec::new(RuntimeKind::Wasm, "sha256:00").params(json!({ "text": "hello", "i": i }));
                let t0 = Instant::now();
                let job = store.submit(spec).await.unwrap();
                submit_us.push(t0.elapsed().as_micros() as u32);
                assert!(store.start(&job.id).await.unwrap());
                let mut usage = Usage::default();
                usage.set_wall_time(Duration::from_micros(30));
                let outcome = JobOutcome {
                    job_id: job.id,
                    result: Ok(json!({ "text": "HELLO" })),
                    usage,
                    logs: Vec::new(),
                    receipt: Some((*receipt).clone()),
                };
                assert!(store.finish(&outcome).await.unwrap());
            }
            submit_us
        }));
    }
    let mut lat = Vec::with_capacity(jobs);
    for h in handles {
        lat.extend(h.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let (rss1, hwm) = rss();
    println!(
        "{jobs} jobs x (submit + start + finish), {tasks} tasks, durability {durability:?}: \
         {secs:.2} s = {:.0} jobs/s ({:.0} committed writes/s)",
        jobs as f64 / secs,
        3.0 * jobs as f64 / secs
    );
    println!(
        "submit acknowledged: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    println!(
        "RSS: {rss0:.1} MiB before, {rss1:.1} MiB after (peak {hwm:.1} MiB; the latency \
         samples are {:.1} MiB of it)",
        (lat.capacity() * 4) as f64 / 1048576.0
    );
}

/// In a fresh process: open the store with `jobs` finished jobs, read from it, report.
fn reopen(path: &Path) {
    let (rss0, _) = rss();
    let t0 = Instant::now();
    let (store, recovery) = JobStore::open(path, options(Durability::Normal)).unwrap();
    let open_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let t1 = Instant::now();
    let counts = store.counts().unwrap();
    let counts_ms = t1.elapsed().as_secs_f64() * 1000.0;
    let t2 = Instant::now();
    let page = store.list(ListFilter::default(), Page::first(100)).unwrap();
    let list_ms = t2.elapsed().as_secs_f64() * 1000.0;
    let id = page.jobs[0].id.clone();
    let t3 = Instant::now();
    for _ in 0..1000 {
        store.get(&id).unwrap().unwrap();
    }
    let get_us = t3.elapsed().as_secs_f64() * 1000.0;
    let total: u64 = counts.values().sum();
    let (rss1, hwm) = rss();
    println!(
        "reopen (fresh process) of a store with {total} jobs: open+recovery {open_ms:.1} ms \
         ({} queued), counts {counts_ms:.1} ms, a page of 100 {list_ms:.1} ms, get {get_us:.1} µs",
        recovery.queued.len()
    );
    println!("RSS: {rss0:.1} MiB before open, {rss1:.1} MiB after (peak {hwm:.1} MiB)");
    let size: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| {
            let mut p = path.as_os_str().to_owned();
            p.push(s);
            std::fs::metadata(PathBuf::from(p)).ok().map(|m| m.len())
        })
        .sum();
    println!("database on disk: {:.1} MiB", size as f64 / 1048576.0);
}

fn main() {
    if let Some(path) = arg("--reopen") {
        return reopen(Path::new(&path));
    }
    let jobs: usize = arg("--jobs").map_or(100_000, |s| s.parse().unwrap());
    let tasks: usize = arg("--tasks").map_or(64, |s| s.parse().unwrap());
    let durability = match arg("--durability").as_deref() {
        None | Some("normal") => Durability::Normal,
        Some("full") => Durability::Full,
        Some(other) => panic!("--durability normal|full, not {other}"),
    };
    let tmp;
    let dir = match arg("--dir") {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_path_buf()
        }
    };
    let path = dir.join("jobs.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(burst(&path, jobs, tasks, durability));
    drop(rt);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--reopen")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
}

//! # api-bench
//!
//! `hanzo-node serve` measured through its HTTP API, the way a client sees it: the real
//! release binary on loopback with a private HANZO_HOME, the durable job store on, a
//! tiny WASM echo tool (inline WAT, exports ABI) uploaded with `POST /v1/modules`.
//!
//! 1. submit-to-result latency, one call at a time (`POST /v1/jobs/execute`);
//! 2. sustained throughput: N keep-alive clients submitting `POST /v1/jobs` as fast as
//!    they are acknowledged, timed until the store holds every job as `succeeded`;
//! 3. the node's memory with 100,000 finished jobs in the store, and after a restart
//!    on that data directory.
//!
//! Prints a markdown report; see BENCHMARKS.md at the repository root.
//!
//! `cargo run --release -p api-bench [-- --quick]`

mod binary;
mod http;
mod node;
// One copy of the latency statistics for both process benches (`ratio` is process-bench's).
#[path = "../../process-bench/src/stats.rs"]
#[allow(dead_code)]
mod stats;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use http::Conn;
use node::{Mem, Node, Settings};
use serde_json::{Value, json};
use stats::{Latency, ms};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The throughput target, completed WASM jobs per second.
const TARGET: f64 = 2_000.0;
/// About a hundred bytes of params, a typical small tool call (as in wasm-bench).
const PARAMS: &str =
    r#"{"user":"alice","action":"score","values":[1,2,3,4,5],"note":"a hundred bytes of params roughly"}"#;
/// How long a client waits after a 429 before it tries the same job again. The
/// node's Retry-After is whole seconds (1–60); a client honouring it would measure
/// its own sleep, so the back-off is short and every 429 is counted instead.
const BACKOFF: Duration = Duration::from_millis(5);

/// An exports-ABI echo: `run` answers `{"ok": <params>}`, copying the params it was
/// given into a fresh buffer behind a 6-byte prefix kept in a data segment.
const ECHO_WAT: &str = r#"(module
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 1024))
  (data (i32.const 0) "{\"ok\":")
  (func $alloc (export "hanzo_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $len)))
    (local.get $p))
  (func (export "run") (param $ptr i32) (param $len i32) (result i64)
    (local $out i32) (local $n i32)
    (local.set $n (i32.add (local.get $len) (i32.const 7)))
    (local.set $out (call $alloc (local.get $n)))
    (memory.copy (local.get $out) (i32.const 0) (i32.const 6))
    (memory.copy (i32.add (local.get $out) (i32.const 6)) (local.get $ptr) (local.get $len))
    (i32.store8 (i32.add (local.get $out) (i32.sub (local.get $n) (i32.const 1))) (i32.const 125))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (local.get $n)))))"#;

#[derive(Parser, Debug)]
#[command(about = "Benchmark of hanzo-node serve through its HTTP API")]
struct Args {
    /// A short smoke run: few calls and jobs per row.
    #[arg(long)]
    quick: bool,
    /// Timed calls in the latency rows [default: 2000; 300 with --quick].
    #[arg(long)]
    calls: Option<usize>,
    /// Jobs per throughput row [default: 30000; 4000 with --quick].
    #[arg(long)]
    jobs: Option<usize>,
    /// Concurrent clients of the throughput rows (durability normal)
    /// [default: 32,64,128; 64 with --quick].
    #[arg(long, value_delimiter = ',')]
    clients: Option<Vec<usize>>,
    /// Finished jobs put in the store for the memory rows [default: 100000; 10000 with --quick].
    #[arg(long)]
    store_jobs: Option<usize>,
    /// `compute.resources.max_concurrent_jobs` of the node.
    #[arg(long, default_value_t = 64)]
    slots: u32,
    /// `compute.resources.queue_capacity` of the node (10,000 is the default).
    #[arg(long, default_value_t = 10_000)]
    queue: u32,
    /// Do not invoke cargo: use the hanzo-node release binary that is built.
    #[arg(long)]
    no_build: bool,
    /// Run this hanzo-node binary instead of building the workspace's (implies --no-build).
    #[arg(long, value_name = "PATH")]
    node: Option<PathBuf>,
    /// Also write the markdown report to this file.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // One client thread: the node gets the rest of the 2 cores, and the client's own
    // CPU is measured and printed so the reader can see what it took.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("api-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Throughput {
    durability: &'static str,
    slots: u32,
    clients: usize,
    jobs: usize,
    secs: f64,
    ack_secs: f64,
    rejected: u64,
    node_cpu: Duration,
    client_cpu: Duration,
}

struct MemRow {
    moment: &'static str,
    jobs: u64,
    mem: Mem,
    db_bytes: (u64, u64),
}

async fn run(args: Args) -> Result<()> {
    let q = args.quick;
    let calls = args.calls.unwrap_or(if q { 300 } else { 2_000 });
    let warmup = if q { 50 } else { 200 };
    let jobs = args.jobs.unwrap_or(if q { 4_000 } else { 30_000 });
    let clients = args
        .clients
        .clone()
        .unwrap_or(if q { vec![64] } else { vec![32, 64, 128] });
    let store_jobs = args.store_jobs.unwrap_or(if q { 10_000 } else { 100_000 });
    let bin = match &args.node {
        Some(p) => p
            .canonicalize()
            .with_context(|| format!("no hanzo-node at {}", p.display()))?,
        None => binary::node_binary("api-bench", args.no_build)?,
    };
    let tmp = tempfile::tempdir()?;
    let settings = |durability| Settings {
        durability,
        max_concurrent_jobs: args.slots,
        // 64 shares = 1/16 core and 16 MiB per job: the slots, not CPU or memory, are
        // what admission counts out (64 slots hold 4 cores and 1 GiB).
        total_cpu_cores: args.slots.div_ceil(16).max(8),
        total_memory_gb: (args.slots / 64).max(16),
        queue_capacity: args.queue,
    };
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut rows = Vec::new();

    for durability in ["normal", "full"] {
        let home = tmp.path().join(durability);
        let node = Node::start(&bin, &home, &settings(durability)).await?;
        let mut c = node.conn().await?;
        let spec = spec(&upload(&mut c).await?);
        eprintln!("api-bench: {durability}: latency, {calls} calls ...");
        latencies.push((durability, latency(&mut c, &spec, warmup, calls).await?));
        let row_clients = if durability == "normal" {
            clients.clone()
        } else {
            vec![64]
        };
        for &n in &row_clients {
            eprintln!("api-bench: {durability}: throughput, {n} clients, {jobs} jobs ...");
            rows.push(throughput(&node, &spec, (durability, args.slots), n, jobs).await?);
        }
        node.stop().await?;
    }

    // The node as a newcomer starts it: `[compute.resources]` at its defaults.
    let defaults = Settings {
        max_concurrent_jobs: 10,
        total_cpu_cores: 8,
        total_memory_gb: 16,
        queue_capacity: 10_000,
        ..settings("normal")
    };
    eprintln!("api-bench: normal, default resources: throughput, 64 clients, {jobs} jobs ...");
    let node = Node::start(&bin, &tmp.path().join("defaults"), &defaults).await?;
    let spec_d = spec(&upload(&mut node.conn().await?).await?);
    rows.push(throughput(&node, &spec_d, ("normal", defaults.max_concurrent_jobs), 64, jobs).await?);
    node.stop().await?;

    eprintln!("api-bench: memory: {store_jobs} jobs into a fresh store ...");
    let home = tmp.path().join("store");
    let node = Node::start(&bin, &home, &settings("normal")).await?;
    let mut mem = vec![MemRow {
        moment: "started, empty store",
        jobs: 0,
        mem: node.mem()?,
        db_bytes: db_bytes(&home),
    }];
    let mut c = node.conn().await?;
    let spec = spec(&upload(&mut c).await?);
    rows.push(throughput(&node, &spec, ("normal", args.slots), 64, store_jobs).await?);
    let in_store = store_counts(&mut c).await?.0;
    mem.push(MemRow {
        moment: "after the jobs finished",
        jobs: in_store,
        mem: node.mem()?,
        db_bytes: db_bytes(&home),
    });
    node.stop().await?;
    let node = Node::start(&bin, &home, &settings("normal")).await?;
    mem.push(MemRow {
        moment: "restarted on that store",
        jobs: in_store,
        mem: node.mem()?,
        db_bytes: db_bytes(&home),
    });
    let mut c = node.conn().await?;
    let after = store_counts(&mut c).await?.0;
    ensure!(
        after == in_store,
        "the store held {in_store} jobs before the restart, {after} after"
    );
    c.expect("GET", "/v1/jobs?limit=1000", "", 200).await?;
    mem.push(MemRow {
        moment: "restarted, after /metrics and a list of 1000",
        jobs: after,
        mem: node.mem()?,
        db_bytes: db_bytes(&home),
    });
    node.stop().await?;

    let report = report(
        &args,
        &settings("normal"),
        &latencies,
        &rows,
        &mem,
        started.elapsed(),
    );
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

/// The job every row submits: the echo with ~100 bytes of params and tiny limits.
fn spec(source: &str) -> Bytes {
    let params: Value = serde_json::from_str(PARAMS).expect("params");
    Bytes::from(
        json!({
            "runtime": "wasm",
            "source": source,
            "params": params,
            "limits": {"cpu_shares": 64, "memory_mb": 16},
        })
        .to_string(),
    )
}

async fn upload(c: &mut Conn) -> Result<String> {
    let r = c.expect("POST", "/v1/modules", ECHO_WAT, 201).await?;
    Ok(r.json()?["source"].as_str().context("no source")?.to_string())
}

/// `calls` executes one after another on one keep-alive connection; every answer is
/// checked (succeeded, output equal to the params) after its time is taken.
async fn latency(c: &mut Conn, spec: &Bytes, warmup: usize, calls: usize) -> Result<Latency> {
    let params: Value = serde_json::from_str(PARAMS)?;
    let mut samples = Vec::with_capacity(calls);
    for i in 0..warmup + calls {
        let t = Instant::now();
        let r = c.req("POST", "/v1/jobs/execute", spec.clone()).await?;
        let took = t.elapsed();
        ensure!(
            r.status == 200,
            "execute: {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        let job = r.json()?;
        ensure!(
            job["status"] == "succeeded" && job["output"] == params,
            "execute did not echo the params: {job}"
        );
        if i >= warmup {
            samples.push(took);
        }
    }
    Ok(Latency::of(&samples))
}

/// `clients` connections share `jobs` submissions; the row ends when the store
/// counts every one of them `succeeded`.
async fn throughput(
    node: &Node,
    spec: &Bytes,
    (durability, slots): (&'static str, u32),
    clients: usize,
    jobs: usize,
) -> Result<Throughput> {
    let mut probe = node.conn().await?;
    let (_, base_ok, base_failed) = store_counts(&mut probe).await?;
    let base_finished = finished(&mut probe).await?;
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(node.conn().await?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let (cpu0, me0) = (node.cpu()?, node::cpu_of("/proc/self/stat")?);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for mut c in conns {
        let (next, rejected, spec) = (next.clone(), rejected.clone(), spec.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < jobs as u64 {
                loop {
                    let r = c.req("POST", "/v1/jobs", spec.clone()).await?;
                    match r.status {
                        202 => break,
                        429 => {
                            rejected.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(BACKOFF).await;
                        }
                        s => bail!("submit: {s}: {}", String::from_utf8_lossy(&r.body)),
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let ack_secs = t0.elapsed().as_secs_f64();
    // The scheduler's counter first (cheap), then the store's counts: a job is
    // complete when its `succeeded` is committed, which follows the counter.
    let deadline = Instant::now() + Duration::from_secs(300);
    while finished(&mut probe).await? < base_finished + jobs as u64 {
        ensure!(Instant::now() < deadline, "jobs did not finish within 300 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (ok, failed) = loop {
        let (_, ok, failed) = store_counts(&mut probe).await?;
        if ok + failed >= base_ok + base_failed + jobs as u64 {
            break (ok - base_ok, failed - base_failed);
        }
        ensure!(
            Instant::now() < deadline,
            "the store did not record every job within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let secs = t0.elapsed().as_secs_f64();
    ensure!(
        ok == jobs as u64 && failed == 0,
        "{ok} succeeded and {failed} failed of {jobs}"
    );
    Ok(Throughput {
        durability,
        slots,
        clients,
        jobs,
        secs,
        ack_secs,
        rejected: rejected.load(Ordering::Relaxed),
        node_cpu: node.cpu()? - cpu0,
        client_cpu: node::cpu_of("/proc/self/stat")? - me0,
    })
}

/// The scheduler's count of jobs that ran and ended (`GET /v1/node`).
async fn finished(c: &mut Conn) -> Result<u64> {
    let v = c.expect("GET", "/v1/node", "", 200).await?.json()?;
    v["counters"]["finished"]
        .as_u64()
        .context("no counters.finished in /v1/node")
}

/// (all, succeeded, failed) WASM jobs in the store, from `/metrics`.
async fn store_counts(c: &mut Conn) -> Result<(u64, u64, u64)> {
    let r = c.expect("GET", "/metrics", "", 200).await?;
    let text = String::from_utf8_lossy(&r.body);
    let (mut all, mut ok, mut failed) = (0, 0, 0);
    for line in text
        .lines()
        .filter(|l| l.starts_with("hanzo_jobs{runtime=\"wasm\""))
    {
        let n: u64 = line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        all += n;
        if line.contains("status=\"succeeded\"") {
            ok += n;
        } else if line.contains("status=\"failed\"") {
            failed += n;
        }
    }
    Ok((all, ok, failed))
}

/// The sizes of jobs.db and of its WAL.
fn db_bytes(home: &Path) -> (u64, u64) {
    let len = |f: &str| std::fs::metadata(home.join(f)).map(|m| m.len()).unwrap_or(0);
    (len("jobs.db"), len("jobs.db-wal"))
}

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn report(
    args: &Args,
    s: &Settings,
    lat: &[(&str, Latency)],
    rows: &[Throughput],
    mem: &[MemRow],
    took: Duration,
) -> String {
    let mut o = String::new();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    let _ = writeln!(o, "## hanzo-node serve through the HTTP API\n");
    let _ = writeln!(
        o,
        "{cores} cores, load average {load} at the end; node: `[compute.resources]` \
         max_concurrent_jobs {}, total_cpu_cores {}, total_memory_gb {}, queue_capacity {}; \
         jobs: WASM echo (exports ABI, ~100 B params), cpu_shares 64, memory_mb 16; \
         signed receipts; client: one thread, keep-alive HTTP/1.1 (hyper){}; run took {:.0} s.\n",
        s.max_concurrent_jobs,
        s.total_cpu_cores,
        s.total_memory_gb,
        s.queue_capacity,
        if args.quick { ", --quick" } else { "" },
        took.as_secs_f64()
    );
    let _ = writeln!(
        o,
        "### Submit-to-result latency (`POST /v1/jobs/execute`, one at a time)\n"
    );
    let _ = writeln!(
        o,
        "| durability | calls | p50 ms | p90 ms | p99 ms | max ms | mean ms |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    for (d, l) in lat {
        let _ = writeln!(
            o,
            "| {d} | {} | {} | {} | {} | {} | {} |",
            l.n,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.max),
            ms(l.mean)
        );
    }
    let _ = writeln!(
        o,
        "\n### Sustained throughput (`POST /v1/jobs`, timed until the store holds every job `succeeded`; target {TARGET:.0}/s)\n"
    );
    let _ = writeln!(
        o,
        "| durability | slots | clients | jobs | completed jobs/s | acks/s | 429s (share of submits) | node CPU µs/job | client CPU µs/job | target |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let rate = r.jobs as f64 / r.secs;
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {:.0} | {:.0} | {} ({:.1}%) | {:.0} | {:.0} | {} |",
            r.durability,
            r.slots,
            r.clients,
            r.jobs,
            rate,
            r.jobs as f64 / r.ack_secs,
            r.rejected,
            100.0 * r.rejected as f64 / (r.jobs as u64 + r.rejected) as f64,
            r.node_cpu.as_secs_f64() * 1e6 / r.jobs as f64,
            r.client_cpu.as_secs_f64() * 1e6 / r.jobs as f64,
            if rate >= TARGET { "met" } else { "missed" }
        );
    }
    let _ = writeln!(o, "\n### Node memory (VmRSS / VmHWM of the hanzo-node process)\n");
    let _ = writeln!(
        o,
        "| moment | jobs in store | VmRSS MiB | VmHWM MiB | jobs.db MiB | WAL MiB |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for m in mem {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            m.moment,
            m.jobs,
            mb(m.mem.rss_kb),
            mb(m.mem.hwm_kb),
            mb(m.db_bytes.0 / 1024),
            mb(m.db_bytes.1 / 1024)
        );
    }
    o
}

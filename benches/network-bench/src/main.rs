//! # network-bench
//!
//! The network of nodes measured with real `hanzo-node serve` release processes on
//! loopback (libp2p over TCP, mDNS off), through their HTTP API:
//!
//! 1. the latency a remote tiny WASM job adds over a local one: `POST
//!    /v1/jobs/execute` with placement `"local"` and `{"peer": <the other node>}`,
//!    alternated call by call on one connection each (target: under 2 ms added at p50);
//! 2. throughput between two nodes against local throughput on the same node in the
//!    same run: N keep-alive clients each running `POST /v1/jobs/execute` one job at a
//!    time (target: remote at least half); then a burst of `POST /v1/jobs`, where
//!    nothing but the peer bounds the jobs in flight, and optionally the network's
//!    default request and per-peer limits (`--default-limits-row`);
//! 3. failover: in a 3-node network a spinning job with `retries: 1` is placed
//!    `remote`, its executor is killed with SIGKILL, and the time from the kill until
//!    the job's second placement appears in `GET /v1/jobs/{id}` is taken (target:
//!    under 5 s), several times over.
//!
//! With `--verification`, only the cost of verified jobs against one remote run
//! (`verification.rs`).
//!
//! Prints a markdown report; see "The network of nodes" in BENCHMARKS.md.
//!
//! `cargo run --release -p network-bench --bin network-bench [-- --quick]`

// One copy of the HTTP client and of the binary's build for the benches (api-bench's).
#[path = "../../api-bench/src/binary.rs"]
mod binary;
#[path = "../../api-bench/src/http.rs"]
mod http;
mod node;
mod verification;
// One copy of the latency statistics for the benches (`ratio` is process-bench's).
#[path = "../../process-bench/src/stats.rs"]
#[allow(dead_code)]
mod stats;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use http::Conn;
use node::{Node, Settings};
use serde_json::{Value, json};
use stats::{Latency, ms};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// About a hundred bytes of params, as in api-bench and wasm-bench.
const PARAMS: &str =
    r#"{"user":"alice","action":"score","values":[1,2,3,4,5],"note":"a hundred bytes of params roughly"}"#;
/// How long a client waits after a 429 before it submits the same job again.
const BACKOFF: Duration = Duration::from_millis(5);
/// Any one HTTP call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A WASI command that counts to 2^62 (far more than any timeout allows): a job that
/// holds its executor's CPU until it is killed, cancelled or times out.
const SPIN_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i64)
    (loop $more
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $more (i64.lt_u (local.get $i) (i64.const 4611686018427387904))))))"#;

#[derive(Parser, Debug)]
#[command(about = "Benchmark of the network of nodes with real hanzo-node serve processes on loopback")]
struct Args {
    /// A short smoke run.
    #[arg(long)]
    quick: bool,
    /// Timed calls per path in the latency rows [default: 1000; 200 with --quick].
    #[arg(long)]
    calls: Option<usize>,
    /// Warm-up calls per path [default: 100; 30 with --quick].
    #[arg(long)]
    warmup: Option<usize>,
    /// Jobs per throughput row [default: 4000; 600 with --quick].
    #[arg(long)]
    jobs: Option<usize>,
    /// Concurrent clients of the throughput rows [default: 4,8,32; 16 with --quick].
    #[arg(long, value_delimiter = ',')]
    clients: Option<Vec<usize>>,
    /// Kills in the failover rows [default: 7; 3 with --quick].
    #[arg(long)]
    kills: Option<usize>,
    /// `compute.resources.max_concurrent_jobs` of every node.
    #[arg(long, default_value_t = 64)]
    slots: u32,
    /// `network.advert_interval_ms` of every node.
    #[arg(long, default_value_t = 500)]
    advert_interval_ms: u64,
    /// `network.peer_timeout_ms` of every node.
    #[arg(long, default_value_t = 5000)]
    peer_timeout_ms: u64,
    /// `network.max_requests_per_peer_per_sec` of every node (the default, 200, allows
    /// 200 short remote jobs a second from one peer, each one offer; half that for
    /// jobs that also need an await).
    #[arg(long, default_value_t = 100_000)]
    max_requests_per_peer_per_sec: u32,
    /// `network.max_remote_jobs_per_peer` of every node [default: twice the most
    /// clients, at least 4].
    #[arg(long)]
    max_remote_jobs_per_peer: Option<u32>,
    /// Also run one throughput row with the network's defaults (200 requests/s and 4
    /// remote jobs per peer), to show what they cap.
    #[arg(long)]
    default_limits_row: bool,
    /// Node a on CPU 0, node b on CPU 1 (`taskset`), so that a remote job's two halves
    /// run side by side as on two machines; local jobs then have one core.
    #[arg(long)]
    pin: bool,
    /// Do not invoke cargo: use the hanzo-node release binary that is built.
    #[arg(long)]
    no_build: bool,
    /// Run this hanzo-node binary (also HANZO_NODE_BIN; implies --no-build).
    #[arg(long, value_name = "PATH")]
    node: Option<PathBuf>,
    /// Also write the markdown report to this file.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Measure only what redundant verification costs against one remote run (a
    /// submitter and five peers; tiny and 1 s jobs at N = 2, 3, 5).
    #[arg(long)]
    verification: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // One client thread: the nodes get the rest of the machine, and the client's own
    // CPU is measured and printed.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("network-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct LatencyRows {
    local: Latency,
    remote: Latency,
}

/// How the clients submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `POST /v1/jobs/execute`: each client has one job in flight and waits for its end.
    Execute,
    /// `POST /v1/jobs`: each client submits as soon as the previous submission is
    /// acknowledged, so the jobs in flight are bounded only by the node.
    Submit,
}

struct Throughput {
    mode: Mode,
    first_error: Option<String>,
    path: &'static str,
    clients: usize,
    jobs: usize,
    secs: f64,
    succeeded: u64,
    failed: u64,
    rejected: u64,
    cpu_a: Duration,
    cpu_b: Duration,
    client_cpu: Duration,
    limits: &'static str,
}

struct Kill {
    victim: &'static str,
    lost_after: Duration,
    replaced_after: Duration,
    new_executor: &'static str,
}

async fn run(args: Args) -> Result<()> {
    let q = args.quick;
    let calls = args.calls.unwrap_or(if q { 200 } else { 1_000 });
    let warmup = args.warmup.unwrap_or(if q { 30 } else { 100 });
    let jobs = args.jobs.unwrap_or(if q { 600 } else { 4_000 });
    let clients = args
        .clients
        .clone()
        .unwrap_or(if q { vec![16] } else { vec![4, 8, 32] });
    let kills = args.kills.unwrap_or(if q { 3 } else { 7 });
    let given = args
        .node
        .clone()
        .or_else(|| std::env::var_os("HANZO_NODE_BIN").map(PathBuf::from));
    let bin = match &given {
        Some(p) => p
            .canonicalize()
            .with_context(|| format!("no hanzo-node at {}", p.display()))?,
        None => binary::node_binary("network-bench", args.no_build)?,
    };
    let most = clients.iter().copied().max().unwrap_or(1) as u32;
    let settings = Settings {
        slots: args.slots,
        advert_interval_ms: args.advert_interval_ms,
        peer_timeout_ms: args.peer_timeout_ms,
        max_requests_per_peer_per_sec: args.max_requests_per_peer_per_sec,
        max_remote_jobs_per_peer: args.max_remote_jobs_per_peer.unwrap_or((2 * most).max(4)),
        pin: args.pin,
    };
    let tmp = tempfile::tempdir()?;
    if args.verification {
        let reps = args.jobs.unwrap_or(if q { 20 } else { 100 });
        let report = verification::run(&bin, tmp.path(), &settings, reps).await?;
        print!("{report}");
        if let Some(out) = &args.out {
            std::fs::write(out, &report).with_context(|| format!("cannot write {}", out.display()))?;
        }
        return Ok(());
    }
    let started = Instant::now();
    let load_start = loadavg();

    eprintln!("network-bench: starting nodes a and b ...");
    let a = Node::start("a", &bin, tmp.path().join("a"), None, &settings).await?;
    let b = Node::start("b", &bin, tmp.path().join("b"), Some(a.addr.clone()), &settings).await?;
    a.wait_for(&[&b.peer_id], 30).await?;
    b.wait_for(&[&a.peer_id], 30).await?;
    let mut ca = a.conn().await?;
    let cat = upload(&mut ca, hanzo_testkit::CAT_WAT).await?;

    eprintln!("network-bench: latency, {calls} calls per path ...");
    let lat = latency(&a, &b, &cat, warmup, calls).await?;

    let mut rows = Vec::new();
    for &n in &clients {
        // Remote first in one row, local first in the next: drift hits both alike.
        let order: [&'static str; 2] = if rows.len() % 4 == 0 {
            ["remote", "local"]
        } else {
            ["local", "remote"]
        };
        for path in order {
            eprintln!("network-bench: throughput, {path}, {n} clients, {jobs} jobs ...");
            rows.push(throughput(&a, &b, &cat, Mode::Execute, path, n, jobs, "raised").await?);
        }
    }
    // What a burst of asynchronous submissions does: nothing bounds the jobs a node
    // places on peers at once but the peer's answers.
    for path in ["local", "remote"] {
        let n = 8;
        eprintln!("network-bench: throughput, {path}, POST /v1/jobs burst, {n} clients, {jobs} jobs ...");
        rows.push(throughput(&a, &b, &cat, Mode::Submit, path, n, jobs, "raised").await?);
    }
    a.stop().await?;
    b.stop().await?;

    if args.default_limits_row {
        let defaults = Settings {
            max_requests_per_peer_per_sec: 200,
            max_remote_jobs_per_peer: 4,
            ..settings.clone()
        };
        eprintln!("network-bench: throughput with the network's default limits ...");
        let a = Node::start("a", &bin, tmp.path().join("a2"), None, &defaults).await?;
        let b = Node::start("b", &bin, tmp.path().join("b2"), Some(a.addr.clone()), &defaults).await?;
        a.wait_for(&[&b.peer_id], 30).await?;
        let cat = upload(&mut a.conn().await?, hanzo_testkit::CAT_WAT).await?;
        let n = 4;
        let small = jobs.min(500);
        rows.push(throughput(&a, &b, &cat, Mode::Execute, "local", n, small, "defaults").await?);
        rows.push(throughput(&a, &b, &cat, Mode::Execute, "remote", n, small, "defaults").await?);
        a.stop().await?;
        b.stop().await?;
    }

    eprintln!("network-bench: failover, {kills} kills in a 3-node network ...");
    let fail = failover(&bin, tmp.path(), &settings, kills).await?;

    let report = report(
        &args,
        &settings,
        (calls, warmup),
        &lat,
        &rows,
        &fail,
        (load_start, loadavg()),
        started.elapsed(),
    );
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

async fn upload(c: &mut Conn, wat: &str) -> Result<String> {
    let r = c.expect("POST", "/v1/modules", wat.to_string(), 201).await?;
    Ok(r.json()?["source"].as_str().context("no source")?.to_string())
}

fn echo_spec(source: &str, placement: Value) -> Bytes {
    let params: Value = serde_json::from_str(PARAMS).expect("params");
    Bytes::from(
        json!({
            "runtime": "wasm",
            "source": source,
            "params": params,
            "limits": {"cpu_shares": 64, "memory_mb": 16},
            "placement": placement,
        })
        .to_string(),
    )
}

async fn call(c: &mut Conn, method: &str, path: &str, body: Bytes) -> Result<http::Resp> {
    tokio::time::timeout(CALL_TIMEOUT, c.req(method, path, body))
        .await
        .with_context(|| format!("{method} {path}: no answer within {CALL_TIMEOUT:?}"))?
}

/// Local and remote executes alternated call by call, each path on its own
/// keep-alive connection; every answer checked after its time is taken.
async fn latency(a: &Node, b: &Node, cat: &str, warmup: usize, calls: usize) -> Result<LatencyRows> {
    let params: Value = serde_json::from_str(PARAMS)?;
    let local = echo_spec(cat, json!("local"));
    let remote = echo_spec(cat, json!({"peer": b.peer_id}));
    let (mut cl, mut cr) = (a.conn().await?, a.conn().await?);
    let (mut sl, mut sr) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
    for i in 0..warmup + calls {
        for (conn, spec, samples, by) in [
            (&mut cl, &local, &mut sl, &a.peer_id),
            (&mut cr, &remote, &mut sr, &b.peer_id),
        ] {
            let t = Instant::now();
            let r = call(conn, "POST", "/v1/jobs/execute", spec.clone()).await?;
            let took = t.elapsed();
            ensure!(
                r.status == 200,
                "execute: {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            let job = r.json()?;
            ensure!(
                job["status"] == "succeeded" && job["output"] == params && job["executed_by"] == **by,
                "execute did not echo the params on {by}: {job}"
            );
            if i >= warmup {
                samples.push(took);
            }
        }
    }
    Ok(LatencyRows {
        local: Latency::of(&sl),
        remote: Latency::of(&sr),
    })
}

/// (succeeded, failed) WASM jobs in a node's store, from `/metrics`.
async fn store_counts(c: &mut Conn) -> Result<(u64, u64)> {
    let r = c.expect("GET", "/metrics", "", 200).await?;
    let text = String::from_utf8_lossy(&r.body);
    let (mut ok, mut failed) = (0, 0);
    for line in text
        .lines()
        .filter(|l| l.starts_with("hanzo_jobs{runtime=\"wasm\""))
    {
        let n: u64 = line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        if line.contains("status=\"succeeded\"") {
            ok += n;
        } else if line.contains("status=\"failed\"") || line.contains("status=\"cancelled\"") {
            failed += n;
        }
    }
    Ok((ok, failed))
}

/// `clients` connections to node a share `jobs` submissions placed `local` or on b;
/// the row ends when a's store counts every one of them ended.
#[allow(clippy::too_many_arguments)]
async fn throughput(
    a: &Node,
    b: &Node,
    cat: &str,
    mode: Mode,
    path: &'static str,
    clients: usize,
    jobs: usize,
    limits: &'static str,
) -> Result<Throughput> {
    let spec = if path == "local" {
        echo_spec(cat, json!("local"))
    } else {
        echo_spec(cat, json!({"peer": b.peer_id}))
    };
    let mut probe = a.conn().await?;
    let (base_ok, base_failed) = store_counts(&mut probe).await?;
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(a.conn().await?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    // Execute mode: the answers say how each job ended.
    let ended = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let (cpu_a0, cpu_b0, me0) = (a.cpu()?, b.cpu()?, node::cpu_of("/proc/self/stat")?);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    let url = match mode {
        Mode::Execute => "/v1/jobs/execute",
        Mode::Submit => "/v1/jobs",
    };
    for mut c in conns {
        let (next, rejected, spec) = (next.clone(), rejected.clone(), spec.clone());
        let (ended, first_error) = (ended.clone(), first_error.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < jobs as u64 {
                loop {
                    let r = call(&mut c, "POST", url, spec.clone()).await?;
                    match r.status {
                        202 => break,
                        200 => {
                            let job = r.json()?;
                            if job["status"] == "succeeded" {
                                ended[0].fetch_add(1, Ordering::Relaxed);
                            } else {
                                ended[1].fetch_add(1, Ordering::Relaxed);
                                first_error
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .get_or_insert_with(|| job["error"]["message"].to_string());
                            }
                            break;
                        }
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
    let deadline = Instant::now() + Duration::from_secs(600);
    let (ok, failed) = loop {
        if mode == Mode::Execute {
            break (ended[0].load(Ordering::Relaxed), ended[1].load(Ordering::Relaxed));
        }
        let (ok, failed) = store_counts(&mut probe).await?;
        if ok + failed >= base_ok + base_failed + jobs as u64 {
            break (ok - base_ok, failed - base_failed);
        }
        ensure!(
            Instant::now() < deadline,
            "{path}: the store did not record every job within 600 s ({} of {jobs})",
            ok + failed - base_ok - base_failed
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let secs = t0.elapsed().as_secs_f64();
    let mut first_error = first_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if failed > 0 && first_error.is_none() {
        let r = call(&mut probe, "GET", "/v1/jobs?status=failed&limit=1", Bytes::new()).await?;
        first_error = r
            .json()
            .ok()
            .map(|v| v["jobs"][0]["error"]["message"].to_string());
    }
    if let Some(e) = &first_error {
        eprintln!("network-bench: {path}: {failed} jobs failed; the first: {e}");
    }
    Ok(Throughput {
        mode,
        first_error,
        path,
        clients,
        jobs,
        secs,
        succeeded: ok,
        failed,
        rejected: rejected.load(Ordering::Relaxed),
        cpu_a: a.cpu()? - cpu_a0,
        cpu_b: b.cpu()? - cpu_b0,
        client_cpu: node::cpu_of("/proc/self/stat")? - me0,
        limits,
    })
}

/// The placements of a job that went to peers (not the row for a run on this node).
fn peer_placements(job: &Value) -> Vec<Value> {
    job["placements"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter(|x| !x["execution_id"].is_null())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

async fn get_job(c: &mut Conn, id: &str) -> Result<Value> {
    call(c, "GET", &format!("/v1/jobs/{id}"), Bytes::new())
        .await?
        .json()
}

async fn failover(bin: &Path, tmp: &Path, settings: &Settings, kills: usize) -> Result<Vec<Kill>> {
    let a = Node::start("a", bin, tmp.join("fa"), None, settings).await?;
    let mut others = vec![
        Node::start("b", bin, tmp.join("fb"), Some(a.addr.clone()), settings).await?,
        Node::start("c", bin, tmp.join("fc"), Some(a.addr.clone()), settings).await?,
    ];
    let ids: Vec<String> = others.iter().map(|n| n.peer_id.clone()).collect();
    let ids_ref: Vec<&str> = ids.iter().map(String::as_str).collect();
    a.wait_for(&ids_ref, 30).await?;
    let mut c = a.conn().await?;
    let spin = upload(&mut c, SPIN_WAT).await?;
    let spec = Bytes::from(
        json!({
            "runtime": "wasm",
            "source": spin,
            "placement": "remote",
            "retries": 1,
            "limits": {"timeout_ms": 120_000, "cpu_shares": 64, "memory_mb": 16},
        })
        .to_string(),
    );
    let mut out = Vec::new();
    for round in 0..kills {
        let r = call(&mut c, "POST", "/v1/jobs", spec.clone()).await?;
        ensure!(
            r.status == 202,
            "submit: {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        let id = r.json()?["id"].as_str().context("no id")?.to_string();
        // Until the first attempt runs on a peer, then a moment more so that the
        // executor is well into the job.
        let deadline = Instant::now() + Duration::from_secs(30);
        let first = loop {
            let job = get_job(&mut c, &id).await?;
            if let Some(p) = peer_placements(&job).first()
                && p["outcome"] == "running"
            {
                break p["peer_id"].as_str().unwrap_or_default().to_string();
            }
            ensure!(
                Instant::now() < deadline,
                "round {round}: the job was never placed: {job}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let victim = others
            .iter_mut()
            .find(|n| n.peer_id == first)
            .with_context(|| format!("placed on an unknown peer {first}"))?;
        let killed = Instant::now();
        victim.kill9()?;
        let victim_name = victim.name;
        let mut lost_after = None;
        let deadline = killed + Duration::from_secs(60);
        let (replaced_after, second) = loop {
            let job = get_job(&mut c, &id).await?;
            let p = peer_placements(&job);
            if lost_after.is_none() && p.first().is_some_and(|x| x["outcome"] == "lost") {
                lost_after = Some(killed.elapsed());
            }
            if let Some(x) = p.get(1) {
                break (
                    killed.elapsed(),
                    x["peer_id"].as_str().unwrap_or_default().to_string(),
                );
            }
            ensure!(
                Instant::now() < deadline,
                "round {round}: no second placement within 60 s of the kill: {job}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let lost_after = lost_after.unwrap_or(replaced_after);
        let new_executor = others
            .iter()
            .find(|n| n.peer_id == second)
            .map_or("?", |n| n.name);
        eprintln!(
            "network-bench: kill {}: {victim_name} killed; lost after {:.2} s, placed on {new_executor} after {:.2} s",
            round + 1,
            lost_after.as_secs_f64(),
            replaced_after.as_secs_f64()
        );
        out.push(Kill {
            victim: victim_name,
            lost_after,
            replaced_after,
            new_executor,
        });
        // Stop the spin on the second peer, and bring the victim back for the next round.
        // Its answer does not matter: the job's status below does.
        let _ = call(&mut c, "POST", &format!("/v1/jobs/{id}/cancel"), Bytes::new()).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let job = get_job(&mut c, &id).await?;
            if ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap_or("")) {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "round {round}: the job did not end after its cancel: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let victim = others
            .iter_mut()
            .find(|n| n.name == victim_name)
            .expect("the victim");
        victim.spawn().await?;
        a.wait_for(&ids_ref, 60).await?;
        // Let the restarted node's connections and adverts settle before the next kill.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for n in others {
        n.stop().await?;
    }
    a.stop().await?;
    Ok(out)
}

fn loadavg() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    s: &Settings,
    (calls, warmup): (usize, usize),
    lat: &LatencyRows,
    rows: &[Throughput],
    kills: &[Kill],
    (load0, load1): (String, String),
    took: Duration,
) -> String {
    let mut o = String::new();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let _ = writeln!(o, "## The network of nodes: real processes on loopback\n");
    let _ = writeln!(
        o,
        "{cores} cores{}; load average {load0} at the start, \
         {load1} at the end; nodes: `hanzo-node serve` (release), libp2p TCP on 127.0.0.1, mDNS off, \
         WASM only, max_concurrent_jobs {}, advert_interval_ms {}, peer_timeout_ms {}, \
         max_requests_per_peer_per_sec {}, max_remote_jobs_per_peer {}; jobs: the CAT echo \
         (WASI, ~100 B params), cpu_shares 64, memory_mb 16, signed receipts; client: one thread, \
         keep-alive HTTP/1.1{}; run took {:.0} s.\n",
        if s.pin {
            ": node a pinned to CPU 0, nodes b and c to CPU 1 (`--pin`), the client on either"
        } else {
            " shared by every node and the client"
        },
        s.slots,
        s.advert_interval_ms,
        s.peer_timeout_ms,
        s.max_requests_per_peer_per_sec,
        s.max_remote_jobs_per_peer,
        if args.quick { ", --quick" } else { "" },
        took.as_secs_f64()
    );
    let _ = writeln!(
        o,
        "### Remote against local latency (`POST /v1/jobs/execute` on node a, one at a time, the two paths alternated; {warmup} warm-up calls each)\n"
    );
    let _ = writeln!(
        o,
        "| placement | calls | p50 ms | p90 ms | p99 ms | max ms | mean ms |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    for (name, l) in [
        ("\"local\" (runs on a)", &lat.local),
        ("{\"peer\": b} (runs on b)", &lat.remote),
    ] {
        let _ = writeln!(
            o,
            "| {name} | {calls} | {} | {} | {} | {} | {} |",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.max),
            ms(l.mean)
        );
    }
    let added = |r: Duration, l: Duration| r.as_secs_f64() * 1e3 - l.as_secs_f64() * 1e3;
    let p50 = added(lat.remote.p50, lat.local.p50);
    let _ = writeln!(
        o,
        "\nAdded by the remote path: **{p50:.2} ms at p50** (target under 2 ms: {}), {:.2} ms at p90, {:.2} ms at p99.\n",
        if p50 < 2.0 { "met" } else { "missed" },
        added(lat.remote.p90, lat.local.p90),
        added(lat.remote.p99, lat.local.p99),
    );
    let _ = writeln!(
        o,
        "### Throughput, local against remote (node a; `execute`: each client waits for its job's end, `POST /v1/jobs`: each submits when the last is acknowledged, timed until a's store holds every job ended)\n"
    );
    let _ = writeln!(
        o,
        "| network limits | request | clients | placement | jobs | succeeded | failed | succeeded jobs/s | remote / local | 429s | node a CPU µs/job | node b CPU µs/job | client CPU µs/job | target |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let rate = r.succeeded as f64 / r.secs;
        let local = rows
            .iter()
            .find(|x| x.path == "local" && x.clients == r.clients && x.limits == r.limits && x.mode == r.mode)
            .map(|x| x.succeeded as f64 / x.secs);
        let (ratio, target) = match (r.path, local) {
            ("remote", Some(l)) => {
                let q = rate / l;
                let t = if r.failed > 0 {
                    "missed (jobs failed)"
                } else if q >= 0.5 {
                    "met"
                } else {
                    "missed"
                };
                (format!("{q:.2}"), t)
            }
            _ => ("—".to_string(), "—"),
        };
        let per = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1e6 / r.jobs as f64);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            r.limits,
            match r.mode {
                Mode::Execute => "execute",
                Mode::Submit => "POST /v1/jobs",
            },
            r.clients,
            r.path,
            r.jobs,
            r.succeeded,
            r.failed,
            rate,
            ratio,
            r.rejected,
            per(r.cpu_a),
            per(r.cpu_b),
            per(r.client_cpu),
            target
        );
    }
    let errors: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.first_error.as_ref().map(|e| {
                format!(
                    "- {} {} {} clients, {} limits: {} failed; the first: {e}",
                    r.path,
                    match r.mode {
                        Mode::Execute => "execute",
                        Mode::Submit => "POST /v1/jobs",
                    },
                    r.clients,
                    r.limits,
                    r.failed
                )
            })
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(o, "\nWhy jobs failed:\n\n{}", errors.join("\n"));
    }
    let _ = writeln!(
        o,
        "\n### Failover after `kill -9` of the executing peer (3 nodes; a spinning job, placement \"remote\", retries 1, submitted to a)\n"
    );
    let _ = writeln!(
        o,
        "| kill | executor killed | kill → attempt marked lost s | kill → second placement s | placed again on |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|");
    for (i, k) in kills.iter().enumerate() {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            i + 1,
            k.victim,
            secs(k.lost_after),
            secs(k.replaced_after),
            k.new_executor
        );
    }
    if !kills.is_empty() {
        let mut t: Vec<Duration> = kills.iter().map(|k| k.replaced_after).collect();
        t.sort_unstable();
        let median = t[(t.len() - 1) / 2];
        let max = *t.last().expect("not empty");
        let _ = writeln!(
            o,
            "\nKill to second placement: min {} s, median {} s, max {} s (target under 5 s: {}).",
            secs(t[0]),
            secs(median),
            secs(max),
            if max < Duration::from_secs(5) {
                "met"
            } else {
                "missed"
            }
        );
    }
    o
}

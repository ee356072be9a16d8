//! # network-sim
//!
//! 100 to 1,000 hanzo nodes' swarms in one process on libp2p's memory transport
//! (`hanzo_network::Client::start_memory`): the node's real behaviours and event loop
//! (identify, ping, kad, gossipsub adverts checked and rate-limited as on a real node,
//! request-response jobs), with noise and yamux over in-memory channels. What is not
//! real is the work: each node answers offers and awaits itself at once (accepted,
//! then a finished result), so the figures are the network's, not WASM's.
//!
//! For each network size, in a child process of its own (so that its memory and CPU
//! are its own, and a size that does not fit does not take the others down):
//!
//! 1. **formation**: every node starts (each told of 3 random others as bootstrap
//!    nodes); the clock runs until a sample of receivers holds an advert from every
//!    other node (50/90/99/100% of the pairs);
//! 2. **propagation**: every node's next advert carries a new round number; the delay
//!    from its publication to its arrival at a sample of receivers, per pair;
//!    meanwhile the traffic per node (wire bytes below noise, adverts delivered);
//! 3. **placement**: jobs from random submitters, one at a time, as the placement
//!    layer does them: `peers()`, rank with the real chain, offer, await; time of
//!    each step, requests and wire bytes per job.
//!
//! The advert interval is scaled with n so that the process keeps up (one process on
//! 2 cores simulates every node): see `--budget`.
//!
//! `cargo run --release -p network-bench --bin network-sim [-- --nodes 100,250,500,1000]`

use anyhow::{Context, Result, bail};
use clap::Parser;
use hanzo_compute::{JobSpec, RuntimeKind};
use hanzo_network::{
    Advert, Capacity, Ceilings, Client, Inbound, JobRequest, JobResponse, Multiaddr, Offer, PeerId, Price,
    RemoteResult, Settings,
};
use hanzo_placement::rank::{Chain, NodeView};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(about = "Simulation of hanzo-network swarms in one process on libp2p's memory transport")]
struct Args {
    /// Network sizes, each run in its own child process.
    #[arg(long, value_delimiter = ',', default_value = "100,250,500,1000")]
    nodes: Vec<usize>,
    /// Small sizes (25,50,100) and fewer jobs: a smoke run.
    #[arg(long)]
    quick: bool,
    /// Bootstrap nodes each node is told of (random others).
    #[arg(long, default_value_t = 3)]
    bootstrap: usize,
    /// Advert deliveries per second the whole process is sized for: the advert
    /// interval is max(5 s, n(n-1)/budget), so that 2 cores simulating every node keep
    /// up. 5 s is the node's default.
    #[arg(long, default_value_t = 1_000)]
    budget: u64,
    /// `network.max_connections` of every node (the node's default is 256).
    #[arg(long, default_value_t = 256)]
    max_connections: u32,
    /// A fixed advert interval instead (ms).
    #[arg(long)]
    advert_interval_ms: Option<u64>,
    /// Receivers whose advert tables are polled for formation (all n-1 sources each).
    #[arg(long, default_value_t = 100)]
    sample: usize,
    /// Seconds of the propagation phase, when shorter than the advert interval: only
    /// the sources whose next advert falls in it are measured (the traffic is the
    /// same per second). Large networks have intervals of many minutes.
    #[arg(long)]
    propagation_window_s: Option<u64>,
    /// Receivers polled for the propagation delays.
    #[arg(long, default_value_t = 20)]
    propagation_sample: usize,
    /// Seconds to wait after formation before the connections are counted and the
    /// steady-state phases start (idle connections are trimmed after a minute).
    #[arg(long, default_value_t = 75)]
    settle_s: u64,
    /// Jobs placed per size, one at a time [default: 100; 50 with --quick].
    #[arg(long)]
    jobs: Option<usize>,
    /// Longest any phase may run, seconds.
    #[arg(long, default_value_t = 600)]
    phase_timeout_s: u64,
    /// A size's child process is killed past this many seconds.
    #[arg(long, default_value_t = 2_400)]
    size_timeout_s: u64,
    /// A size stops (and reports what it reached) when the process's RSS passes this
    /// many MiB.
    #[arg(long, default_value_t = 14_336)]
    max_rss_mb: u64,
    /// Run one size in this process and print its figures as JSON (what the parent
    /// runs in each child).
    #[arg(long, hide = true)]
    one: Option<usize>,
    /// Also write the markdown report to this file (and each size's raw figures, one
    /// JSON object a line, to the same name with `.jsonl`).
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.quick && args.nodes == [100, 250, 500, 1000] {
        args.nodes = vec![25, 50, 100];
    }
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let r = match args.one {
        Some(n) => one_size(&args, n),
        None => parent(&args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("network-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------
// The parent: one child per size, then the report.

fn parent(args: &Args) -> Result<()> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let mut results: Vec<(usize, Result<Value, String>)> = Vec::new();
    for &n in &args.nodes {
        eprintln!("network-sim: {n} nodes ...");
        let mut cmd = Command::new(&exe);
        cmd.arg("--one")
            .arg(n.to_string())
            .arg("--bootstrap")
            .arg(args.bootstrap.to_string())
            .arg("--budget")
            .arg(args.budget.to_string())
            .arg("--sample")
            .arg(args.sample.to_string())
            .arg("--propagation-sample")
            .arg(args.propagation_sample.to_string())
            .arg("--phase-timeout-s")
            .arg(args.phase_timeout_s.to_string())
            .arg("--max-connections")
            .arg(args.max_connections.to_string())
            .arg("--max-rss-mb")
            .arg(args.max_rss_mb.to_string())
            .arg("--settle-s")
            .arg(args.settle_s.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(ms) = args.advert_interval_ms {
            cmd.arg("--advert-interval-ms").arg(ms.to_string());
        }
        if let Some(s) = args.propagation_window_s {
            cmd.arg("--propagation-window-s").arg(s.to_string());
        }
        if let Some(j) = args.jobs {
            cmd.arg("--jobs").arg(j.to_string());
        } else if args.quick {
            cmd.arg("--jobs").arg("50");
        }
        let mut child = cmd.spawn().context("cannot start the child")?;
        let stdout = child.stdout.take().expect("piped");
        // The child's one line of JSON, read on a thread so that the deadline below holds.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let deadline = Instant::now() + Duration::from_secs(args.size_timeout_s);
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let line = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
        // Each size's raw figures (the formation curve too) beside the report.
        if let Some(out) = &args.out
            && !line.trim().is_empty()
        {
            use std::io::Write as _;
            let path = out.with_extension("jsonl");
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
                let _ = f.write_all(line.as_bytes());
            }
        }
        let r = match (status, serde_json::from_str::<Value>(line.trim())) {
            (Some(s), Ok(v)) if s.success() => Ok(v),
            (None, _) => Err(format!("did not finish within {} s", args.size_timeout_s)),
            (Some(s), _) => Err(format!("the child failed ({s})")),
        };
        results.push((n, r));
    }
    let report = report(args, &results, started.elapsed());
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// One size.

/// A small xorshift generator: the sim's choices (bootstrap peers, samples,
/// submitters) need to be spread, not secret.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("OS randomness");
        Rng(u64::from_le_bytes(b) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// `k` distinct indices in 0..n, none equal to `not`.
    fn pick(&mut self, n: usize, k: usize, not: Option<usize>) -> Vec<usize> {
        let k = k.min(n - usize::from(not.is_some()));
        let mut out = Vec::with_capacity(k);
        while out.len() < k {
            let i = self.below(n);
            if Some(i) != not && !out.contains(&i) {
                out.push(i);
            }
        }
        out
    }
}

fn seed(size: usize, i: usize) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&(size as u64).to_le_bytes());
    s[8..16].copy_from_slice(&(i as u64).to_le_bytes());
    s[16] = 0x5e;
    s
}

/// The advert every simulated node publishes: a 4-slot WASM node, with the round
/// number in `queue_depth` (the ranking scores every node alike on it).
fn advert(round: u64) -> Advert {
    let cap = Capacity {
        slots: 4,
        memory_mb: 8192,
        cpu_millicores: 4000,
    };
    Advert {
        version: hanzo_network::advert::ADVERT_VERSION,
        node_version: String::new(),
        node_id: String::new(),
        addrs: Vec::new(),
        runtimes: vec!["wasm".into()],
        capacity: cap,
        free: cap,
        queue_depth: round,
        remote_jobs: 0,
        ceilings: Ceilings {
            memory_mb: 4096,
            timeout_ms: 3_600_000,
            fuel: u64::MAX,
            disk_mb: 4096,
            output_bytes: 1 << 24,
        },
        price: Price::default(),
        issued_at_ms: 0,
    }
}

struct SimNode {
    client: Client,
}

/// VmRSS / VmHWM of this process, MiB.
fn mem_mb() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let f = |name: &str| -> f64 {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (f("VmRSS:"), f("VmHWM:"))
}

/// CPU seconds this process has used.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> f64 { f.get(i - 3).and_then(|x| x.parse().ok()).unwrap_or(0.0) };
    (num(14) + num(15)) / 100.0
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    json!({
        "n": v.len(),
        "p50": pct(&v, 50.0),
        "p90": pct(&v, 90.0),
        "p99": pct(&v, 99.0),
        "max": v.last().copied().unwrap_or(f64::NAN),
    })
}

/// Counters summed over every node, read from all of them at once.
#[derive(Debug, Default, Clone, Copy)]
struct Snapshot {
    /// When (the middle of the reads), seconds since the size's start.
    at: f64,
    wire_sent: u64,
    wire_received: u64,
    requests_out: u64,
    adverts_accepted: u64,
    adverts_ignored: u64,
    adverts_published: u64,
}

async fn snapshot(nodes: &[SimNode], t_base: Instant) -> Snapshot {
    let t0 = t_base.elapsed().as_secs_f64();
    let mut set = tokio::task::JoinSet::new();
    for n in nodes {
        let c = n.client.clone();
        set.spawn(async move { (c.wire_bytes().unwrap_or((0, 0)), c.metrics().await.ok()) });
    }
    let mut s = Snapshot::default();
    while let Some(r) = set.join_next().await {
        let Ok(((ws, wr), m)) = r else { continue };
        s.wire_sent += ws;
        s.wire_received += wr;
        if let Some(m) = m {
            s.requests_out += m.requests_out;
            s.adverts_accepted += m.adverts_accepted;
            s.adverts_ignored += m.adverts_ignored;
            s.adverts_published += m.adverts_published;
        }
    }
    s.at = (t0 + t_base.elapsed().as_secs_f64()) / 2.0;
    s
}

/// Asks each receiver `(k, node)` of `who` for its peer table, all at once; returns
/// per receiver the sources it holds an advert from with the round that advert
/// carries, and when it answered (ms since `t_base`).
async fn poll(
    nodes: &[SimNode],
    who: &[(usize, usize)],
    t_base: Instant,
    index: Arc<HashMap<String, usize>>,
) -> Vec<(usize, Vec<(usize, u64)>, u64)> {
    let mut set = tokio::task::JoinSet::new();
    for &(k, r) in who {
        let (client, index) = (nodes[r].client.clone(), index.clone());
        set.spawn(async move {
            let list = client.peers().await.unwrap_or_default();
            let at = t_base.elapsed().as_millis() as u64;
            let got = list
                .iter()
                .filter(|p| p.version.is_some())
                .filter_map(|p| Some((*index.get(&p.peer_id)?, p.resources.queue_depth)))
                .collect::<Vec<_>>();
            (k, got, at)
        });
    }
    let mut out = Vec::with_capacity(who.len());
    while let Some(r) = set.join_next().await {
        if let Ok(x) = r {
            out.push(x);
        }
    }
    out
}

/// Counts a node's first connections to peers and last disconnections.
async fn count_churn(
    mut events: tokio::sync::broadcast::Receiver<hanzo_network::PeerEvent>,
    churn: Arc<[AtomicU64; 2]>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(hanzo_network::PeerEvent::Connected(_)) => churn[0].fetch_add(1, Ordering::Relaxed),
            Ok(hanzo_network::PeerEvent::Disconnected(_)) => churn[1].fetch_add(1, Ordering::Relaxed),
            Ok(_) | Err(RecvError::Lagged(_)) => 0,
            Err(RecvError::Closed) => return,
        };
    }
}

fn one_size(args: &Args, n: usize) -> Result<()> {
    if n < 2 {
        bail!("a network needs at least 2 nodes");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let v = rt.block_on(simulate(args, n))?;
    println!("{v}");
    // The swarms are not shut down one by one: the process ends here.
    std::process::exit(0)
}

async fn simulate(args: &Args, n: usize) -> Result<Value> {
    let mut rng = Rng::new();
    let interval_ms = args.advert_interval_ms.unwrap_or_else(|| {
        (((n * (n - 1)) as u64 * 1000 / args.budget.max(1)).max(5_000)).div_ceil(1000) * 1000
    });
    let interval = Duration::from_millis(interval_ms);
    let phase_limit = Duration::from_secs(args.phase_timeout_s);
    let jobs = args.jobs.unwrap_or(100);
    let base_port = 1_000_000u64 * n as u64;
    let peers: Vec<PeerId> = (0..n)
        .map(|i| hanzo_network::identity::keypair(seed(n, i)).public().to_peer_id())
        .collect();
    let index: Arc<HashMap<String, usize>> = Arc::new(
        peers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), i))
            .collect(),
    );
    let addr = |i: usize| -> Multiaddr {
        format!("/memory/{}", base_port + i as u64 + 1)
            .parse()
            .expect("a memory multiaddr")
    };
    let full_addr = |i: usize| -> Multiaddr {
        format!("/memory/{}/p2p/{}", base_port + i as u64 + 1, peers[i])
            .parse()
            .expect("a memory multiaddr")
    };

    // The round number adverts carry, and when each node published adverts carrying it
    // (ms since `t_base`, every publication).
    let round = Arc::new(AtomicU64::new(0));
    let t_base = Instant::now();
    let published: Arc<Vec<Mutex<Vec<u64>>>> = Arc::new((0..n).map(|_| Mutex::new(Vec::new())).collect());

    // Connections opened and closed, over all nodes (from the peer events).
    let churn = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let cpu0 = cpu_s();
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let bootstrap = rng
            .pick(n, args.bootstrap, Some(i))
            .into_iter()
            .map(|j| (peers[j], full_addr(j)))
            .collect();
        let settings = Settings {
            listen: vec![addr(i)],
            bootstrap,
            external: Vec::new(),
            mdns: false,
            allow: Vec::new(),
            deny: Vec::new(),
            max_connections: args.max_connections,
            max_connections_per_peer: 2,
            advert_interval: interval,
            // Nothing expires during a run: the timeout is what a deployment with this
            // advert interval would set (4x), but at least an hour here.
            peer_timeout: (interval * 4).max(Duration::from_secs(3600)),
            max_requests_per_peer_per_sec: 200,
            relay: false,
            node_version: "sim".into(),
        };
        let source = {
            let (round, published) = (round.clone(), published.clone());
            Arc::new(move || {
                let r = round.load(Ordering::Relaxed);
                if r > 0 {
                    let at = t_base.elapsed().as_millis() as u64;
                    published[i].lock().unwrap_or_else(|e| e.into_inner()).push(at);
                }
                advert(r)
            })
        };
        let (client, channels) = Client::start_memory(seed(n, i), settings, source)
            .await
            .with_context(|| format!("node {i}"))?;
        tokio::spawn(respond(client.clone(), channels.inbound));
        tokio::spawn(count_churn(client.events(), churn.clone()));
        nodes.push(SimNode { client });
    }
    let started_s = t_base.elapsed().as_secs_f64();
    eprintln!("network-sim: {n}: {n} swarms started in {started_s:.1} s; advert interval {interval_ms} ms");

    // 1. Formation: a sample of receivers, every source.
    let sample = rng.pick(n, args.sample.min(n), None);
    let pairs = (sample.len() * (n - 1)) as f64;
    let mut done = vec![false; sample.len()];
    let mut held = vec![0usize; sample.len()];
    let mut reached: Vec<(f64, Option<f64>)> = [0.5, 0.9, 0.99, 1.0].iter().map(|f| (*f, None)).collect();
    let mut curve = Vec::new();
    let mut rss_stop = None;
    let poll_every = Duration::from_secs(1);
    let mut poll_round = 0f64;
    loop {
        let ask: Vec<(usize, usize)> = sample
            .iter()
            .enumerate()
            .filter(|(k, _)| !done[*k])
            .map(|(k, &r)| (k, r))
            .collect();
        let t_ask = t_base.elapsed().as_secs_f64();
        for (k, got, _) in poll(&nodes, &ask, t_base, index.clone()).await {
            held[k] = got.len();
            done[k] = held[k] >= n - 1;
        }
        let t = t_base.elapsed().as_secs_f64();
        poll_round = poll_round.max(t - t_ask);
        let frac = held.iter().sum::<usize>() as f64 / pairs;
        curve.push((t, frac));
        for (f, at) in reached.iter_mut() {
            if at.is_none() && frac >= *f - 1e-12 {
                *at = Some(t);
            }
        }
        if done.iter().all(|d| *d) {
            break;
        }
        let (rss, _) = mem_mb();
        if rss > args.max_rss_mb as f64 {
            rss_stop = Some(rss);
            break;
        }
        if t_base.elapsed() > phase_limit {
            break;
        }
        tokio::time::sleep(poll_every).await;
    }
    let formation_cpu = cpu_s() - cpu0;
    let (rss_formed, _) = mem_mb();
    // Let the network settle before the steady-state phases: nodes close idle
    // connections past 32 peers only once they are a minute old.
    if args.settle_s > 0 {
        eprintln!("network-sim: {n}: settling for {} s", args.settle_s);
        tokio::time::sleep(Duration::from_secs(args.settle_s)).await;
    }
    let connections: Vec<f64> = {
        let mut set = tokio::task::JoinSet::new();
        for node in &nodes {
            let c = node.client.clone();
            set.spawn(async move { c.metrics().await.map(|m| m.connected_peers as f64).unwrap_or(0.0) });
        }
        set.join_all().await
    };
    eprintln!(
        "network-sim: {n}: formation: {:.1}% of the sampled pairs at {:.1} s; RSS {rss_formed:.0} MiB",
        100.0 * curve.last().map_or(0.0, |c| c.1),
        curve.last().map_or(0.0, |c| c.0)
    );
    let formation = json!({
        "reached": reached.iter().map(|(f, t)| json!({"fraction": f, "at_s": t})).collect::<Vec<_>>(),
        "final_fraction": curve.last().map_or(0.0, |c| c.1),
        "cpu_s": formation_cpu,
        "curve": curve.iter().map(|(t, f)| json!([t, f])).collect::<Vec<_>>(),
        "stopped_at_rss_mb": rss_stop,
        "poll_round_s": poll_round,
    });
    if rss_stop.is_some() {
        return Ok(json!({
            "n": n, "interval_ms": interval_ms, "started_s": started_s,
            "formation": formation, "rss_mb": rss_formed,
            "connections": summary(connections),
        }));
    }

    // 2. Propagation: round 1 in every node's next advert.
    let psample = rng.pick(n, args.propagation_sample.min(n), None);
    let snap0 = snapshot(&nodes, t_base).await;
    let churn0 = [churn[0].load(Ordering::Relaxed), churn[1].load(Ordering::Relaxed)];
    let (cpu_p0, t_p0) = (cpu_s(), Instant::now());
    let p0_ms = t_base.elapsed().as_millis() as u64;
    round.store(1, Ordering::Relaxed);
    // The sources measured: those whose first advert of the new round is published
    // within `span` (every node when the span is the interval).
    let span = args
        .propagation_window_s
        .map_or(interval, |s| Duration::from_secs(s).min(interval));
    let span_end_ms = p0_ms + span.as_millis() as u64;
    let in_span = |j: usize| {
        published[j]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .is_some_and(|&t| t <= span_end_ms)
    };
    let mut seen: Vec<Vec<Option<u64>>> = vec![vec![None; n]; psample.len()];
    let limit = (span * 2 + Duration::from_secs(30)).min(phase_limit);
    let ppoll = Duration::from_millis(250);
    // Polled until the span is over and every sampled pair of a source that
    // published in it is seen; the traffic is taken over the whole span.
    let mut ppoll_round = 0f64;
    loop {
        let ask: Vec<(usize, usize)> = psample.iter().copied().enumerate().collect();
        let t_ask = t_base.elapsed().as_secs_f64();
        for (k, got, at) in poll(&nodes, &ask, t_base, index.clone()).await {
            for (j, round) in got {
                if round >= 1 && seen[k][j].is_none() {
                    seen[k][j] = Some(at);
                }
            }
        }
        ppoll_round = ppoll_round.max(t_base.elapsed().as_secs_f64() - t_ask);
        let complete = t_p0.elapsed() >= span
            && psample.iter().enumerate().all(|(k, &r)| {
                seen[k]
                    .iter()
                    .enumerate()
                    .all(|(j, s)| j == r || s.is_some() || !in_span(j))
            });
        if complete || t_p0.elapsed() > limit {
            break;
        }
        tokio::time::sleep(ppoll).await;
    }
    let cpu_p = cpu_s() - cpu_p0;
    let snap1 = snapshot(&nodes, t_base).await;
    let window = snap1.at - snap0.at;
    let publications: Vec<Vec<u64>> = published
        .iter()
        .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).clone())
        .collect();
    // From the first advert with the new round (what a node waits for its news to be
    // known), and from the last one published before it was seen (the gossip's own
    // time, at most the poll interval too long).
    let (mut from_first, mut from_last) = (Vec::new(), Vec::new());
    let (mut missing, mut outside) = (0usize, 0usize);
    for (k, &r) in psample.iter().enumerate() {
        for j in 0..n {
            if j == r {
                continue;
            }
            if !in_span(j) {
                outside += 1;
                continue;
            }
            let p = &publications[j];
            match (seen[k][j], p.first()) {
                (Some(at), Some(&first)) => {
                    from_first.push(at.saturating_sub(first) as f64 / 1000.0);
                    let last = p.iter().copied().filter(|&t| t <= at).max().unwrap_or(first);
                    from_last.push(at.saturating_sub(last) as f64 / 1000.0);
                }
                _ => missing += 1,
            }
        }
    }
    let churn1 = [churn[0].load(Ordering::Relaxed), churn[1].load(Ordering::Relaxed)];
    // Publications inside the window only (the list grows until the process ends).
    let (w0, w1) = ((snap0.at * 1000.0) as u64, (snap1.at * 1000.0) as u64);
    let pubs_per_node = publications
        .iter()
        .map(|p| p.iter().filter(|&&t| t >= w0 && t <= w1).count())
        .sum::<usize>() as f64
        / n as f64;
    let advert_bytes = {
        let mut a = advert(1);
        a.node_version = "sim".into();
        a.node_id = "0".repeat(64);
        a.addrs = vec![format!("/memory/{}", base_port + 1)];
        a.issued_at_ms = hanzo_network::advert::now_ms();
        a.encode().len() + hanzo_network::advert::SEAL_BYTES
    };
    let per_node_s = |x: u64| x as f64 / n as f64 / window;
    eprintln!(
        "network-sim: {n}: propagation over {window:.1} s: {} pairs seen, {missing} missing",
        from_first.len()
    );
    let propagation = json!({
        "window_s": window,
        "pairs_seen": from_first.len(),
        "pairs_missing": missing,
        "pairs_of_sources_outside_the_span": outside,
        "span_s": span.as_secs_f64(),
        "delay_s": summary(from_first),
        "gossip_s": summary(from_last),
        "publications_per_node": pubs_per_node,
        "connects_per_node_s": (churn1[0] - churn0[0]) as f64 / n as f64 / window,
        "disconnects_per_node_s": (churn1[1] - churn0[1]) as f64 / n as f64 / window,
        "adverts_ignored_per_node_s": per_node_s(snap1.adverts_ignored - snap0.adverts_ignored),
        "adverts_published_per_node_s": per_node_s(snap1.adverts_published - snap0.adverts_published),
        "poll_ms": ppoll.as_millis() as u64,
        "poll_round_s": ppoll_round,
        "cpu_s": cpu_p,
        "wire_sent_bytes_per_node_s": per_node_s(snap1.wire_sent - snap0.wire_sent),
        "wire_received_bytes_per_node_s": per_node_s(snap1.wire_received - snap0.wire_received),
        "adverts_delivered_per_node_s": per_node_s(
            snap1.adverts_accepted + snap1.adverts_ignored - snap0.adverts_accepted - snap0.adverts_ignored
        ),
        "advert_json_bytes": advert_bytes,
    });
    let baseline_per_node_s = ((snap1.wire_sent - snap0.wire_sent)
        + (snap1.wire_received - snap0.wire_received)) as f64
        / n as f64
        / window;

    // 3. Placement, one job at a time from random submitters.
    let spec = JobSpec::new(RuntimeKind::Wasm, format!("sha256:{}", "0".repeat(64)));
    let spec_text = serde_json::to_string(&spec)?;
    let chain = Chain::default();
    let (mut t_rank, mut t_offer, mut t_await, mut t_total) = (vec![], vec![], vec![], vec![]);
    let mut job_bytes = Vec::new();
    let (mut dialled, mut attempts, mut unmeasured, mut offer_failures, mut failures) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let wire = |c: &Client| c.wire_bytes().map_or(0, |(a, b)| a + b);
    let q0 = snapshot(&nodes, t_base).await.requests_out;
    let t_j0 = Instant::now();
    for k in 0..jobs {
        if t_j0.elapsed() > phase_limit {
            break;
        }
        let s = rng.below(n);
        let sub = &nodes[s].client;
        let t0 = Instant::now();
        let views: Vec<NodeView> = sub
            .peers()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.version.is_some())
            .filter_map(|p| Some(NodeView::of_peer(p.peer_id.parse().ok()?, &p)))
            .collect();
        let (ranked, _) = chain.rank(&spec, views);
        let t1 = Instant::now();
        if ranked.is_empty() {
            failures += 1;
            continue;
        }
        // As the placement layer does: offer to each candidate in turn until one
        // accepts (here for at most 30 s a job).
        let mut placed_on = None;
        for c in &ranked {
            if t1.elapsed() > Duration::from_secs(30) {
                break;
            }
            let Some(peer) = c.node.peer else { continue };
            attempts += 1;
            if c.node.latency_ms.is_none() {
                unmeasured += 1;
            }
            if !sub.is_connected(peer).await {
                dialled += 1;
            }
            let e = index[&peer.to_string()];
            let w0 = wire(sub) + wire(&nodes[e].client);
            let t2 = Instant::now();
            let offer = Offer {
                execution_id: format!("sim{k}"),
                spec: spec_text.clone(),
                code_bytes: 100,
                deadline_ms: 60_000,
                file_ext: None,
                image_id: None,
                // As the node does: a short job's result comes with its acceptance.
                wait_ms: 200,
                attempt: None,
            };
            let reply =
                tokio::time::timeout(Duration::from_secs(30), sub.job(peer, JobRequest::Offer(offer))).await;
            let early = match reply {
                Ok(Ok(JobResponse::Accepted { result, .. })) => result.is_some(),
                _ => {
                    offer_failures += 1;
                    continue;
                }
            };
            placed_on = Some((peer, e, w0, t2, Instant::now(), early));
            break;
        }
        let Some((peer, e, w0, t2, t3, early)) = placed_on else {
            failures += 1;
            continue;
        };
        // Only a result that did not come with the acceptance is awaited.
        if !early {
            let done = tokio::time::timeout(
                Duration::from_secs(30),
                sub.job(
                    peer,
                    JobRequest::Await {
                        execution_id: format!("sim{k}"),
                        wait_ms: 2000,
                    },
                ),
            )
            .await;
            if !matches!(done, Ok(Ok(JobResponse::Finished(_)))) {
                failures += 1;
                continue;
            }
        }
        let t4 = Instant::now();
        let w1 = wire(sub) + wire(&nodes[e].client);
        // Two nodes' background traffic over the job's time is not the job's.
        let background = 2.0 * baseline_per_node_s * (t4 - t2).as_secs_f64();
        job_bytes.push(((w1 - w0) as f64 - background).max(0.0));
        t_rank.push((t1 - t0).as_secs_f64() * 1e3);
        t_offer.push((t3 - t2).as_secs_f64() * 1e3);
        t_await.push((t4 - t3).as_secs_f64() * 1e3);
        t_total.push((t4 - t0).as_secs_f64() * 1e3);
    }
    let placed = t_total.len();
    let q1 = snapshot(&nodes, t_base).await.requests_out;
    let (rss, hwm) = mem_mb();
    eprintln!("network-sim: {n}: {placed} jobs placed, {failures} failed; RSS {rss:.0} MiB (peak {hwm:.0})");
    let mean = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    Ok(json!({
        "n": n,
        "interval_ms": interval_ms,
        "started_s": started_s,
        "bootstrap": args.bootstrap,
        "formation": formation,
        "connections": summary(connections),
        "propagation": propagation,
        "placement": {
            "jobs": placed,
            "failures": failures,
            "offers": attempts,
            "offers_failed": offer_failures,
            "offers_to_unmeasured_peers": unmeasured,
            "offers_needing_a_dial": dialled,
            "rank_ms": summary(t_rank),
            "offer_ms": summary(t_offer),
            "await_ms": summary(t_await),
            "total_ms": summary(t_total),
            "requests_per_job": (q1 - q0) as f64 / placed.max(1) as f64,
            "wire_bytes_per_job": mean(&job_bytes),
        },
        "rss_mb": rss,
        "hwm_mb": hwm,
        "rss_formed_mb": rss_formed,
        "cpu_s": cpu_s() - cpu0,
    }))
}

fn finished(execution_id: String) -> Box<RemoteResult> {
    Box::new(RemoteResult {
        execution_id,
        status: "succeeded".into(),
        output: Some(r#"{"ok":true}"#.into()),
        error: None,
        usage: None,
        logs: Vec::new(),
        receipt: None,
    })
}

/// The in-sim executor: accepts every offer and finishes it at once.
async fn respond(client: Client, mut inbound: tokio::sync::mpsc::Receiver<Inbound>) {
    while let Some(req) = inbound.recv().await {
        match req {
            Inbound::Job { request, channel, .. } => {
                let response = match request {
                    JobRequest::Offer(o) => JobResponse::Accepted {
                        result: (o.wait_ms > 0).then(|| finished(o.execution_id.clone())),
                        execution_id: o.execution_id,
                        price: Price::default(),
                    },
                    JobRequest::Await { execution_id, .. } => JobResponse::Finished(finished(execution_id)),
                    JobRequest::Cancel { execution_id } => JobResponse::Unknown { execution_id },
                    JobRequest::Settle(s) => JobResponse::Settled {
                        recorded: s.len() as u32,
                    },
                };
                client.respond_job(channel, response).await;
            }
            Inbound::Chunk { channel, .. } => {
                client
                    .respond_chunk(channel, hanzo_network::ChunkResponse::NotFound)
                    .await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The report.

fn f(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "—".into(),
    }
}

fn report(args: &Args, results: &[(usize, Result<Value, String>)], took: Duration) -> String {
    let mut o = String::new();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    let _ = writeln!(
        o,
        "## The network of nodes: simulated swarms on the memory transport\n"
    );
    let _ = writeln!(
        o,
        "One process per size on {cores} cores (tokio, 2 workers), load average {load} at the end; \
         every node is a real `hanzo_network` swarm (identify, ping every 2 s, kad, gossipsub with \
         signed and checked adverts, request-response jobs, noise + yamux) on libp2p's memory \
         transport; each node is told of {} random others as bootstrap nodes; the job protocol is \
         answered by an in-sim executor (accepts, then finishes at once: the network is measured, \
         not WASM); advert interval max(5 s, n(n-1)/{} s); run took {:.0} s.\n",
        args.bootstrap,
        args.budget,
        took.as_secs_f64()
    );
    let ok: Vec<(usize, &Value)> = results
        .iter()
        .filter_map(|(n, r)| r.as_ref().ok().map(|v| (*n, v)))
        .collect();
    let _ = writeln!(
        o,
        "### Formation: time from the first start until the sampled receivers hold adverts from every other node\n"
    );
    let _ = writeln!(
        o,
        "| nodes | advert interval s | start of all swarms s | connections per node after settling p50 / max | 50% of pairs s | 90% s | 99% s | 100% s | 100% in intervals | poll round s | CPU s | RSS MiB | RSS per node MiB |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (n, v) in &ok {
        let r = &v["formation"]["reached"];
        let at = |i: usize| f(&r[i]["at_s"], 1);
        let full = r[3]["at_s"].as_f64();
        let interval = v["interval_ms"].as_f64().unwrap_or(0.0) / 1000.0;
        let rss = v["rss_formed_mb"]
            .as_f64()
            .or(v["rss_mb"].as_f64())
            .unwrap_or(0.0);
        let _ = writeln!(
            o,
            "| {n} | {interval:.0} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {rss:.0} | {:.2} |",
            f(&v["started_s"], 1),
            f(&v["connections"]["p50"], 0),
            f(&v["connections"]["max"], 0),
            at(0),
            at(1),
            at(2),
            if full.is_some() {
                at(3)
            } else {
                format!(
                    "not reached ({:.1}%)",
                    100.0 * v["formation"]["final_fraction"].as_f64().unwrap_or(0.0)
                )
            },
            full.map_or("—".into(), |t| format!("{:.2}", t / interval)),
            f(&v["formation"]["poll_round_s"], 2),
            f(&v["formation"]["cpu_s"], 0),
            rss / *n as f64,
        );
    }
    let _ = writeln!(
        o,
        "\n### Steady state: one advert round (every node's next advert carries a new number)\n"
    );
    let _ = writeln!(
        o,
        "| nodes | interval (span measured) s | pairs seen (missing) | first publication → held p50 / p90 / max s | last publication → held p50 / p99 / max s | poll round s | publications per node per interval | adverts delivered per node per s (ignored) | connections opened / closed per node per s | wire KB per node per s (sent + received) | wire bytes per delivered advert | CPU ms per node per s |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (n, v) in &ok {
        let p = &v["propagation"];
        if p.is_null() {
            continue;
        }
        let num = |k: &str| p[k].as_f64().unwrap_or(0.0);
        let interval = v["interval_ms"].as_f64().unwrap_or(0.0) / 1000.0;
        let window = num("window_s").max(1e-9);
        let wire = num("wire_sent_bytes_per_node_s") + num("wire_received_bytes_per_node_s");
        let delivered = num("adverts_delivered_per_node_s");
        let _ = writeln!(
            o,
            "| {n} | {interval:.0} ({:.0}) | {} ({}) | {} / {} / {} | {} / {} / {} | {} | {:.1} | {delivered:.1} ({:.1}) | {:.2} / {:.2} | {:.1} | {} | {:.1} |",
            num("span_s"),
            p["pairs_seen"],
            p["pairs_missing"],
            f(&p["delay_s"]["p50"], 2),
            f(&p["delay_s"]["p90"], 2),
            f(&p["delay_s"]["max"], 2),
            f(&p["gossip_s"]["p50"], 2),
            f(&p["gossip_s"]["p99"], 2),
            f(&p["gossip_s"]["max"], 2),
            f(&p["poll_round_s"], 2),
            num("publications_per_node") * interval / window,
            num("adverts_ignored_per_node_s"),
            num("connects_per_node_s"),
            num("disconnects_per_node_s"),
            wire / 1024.0,
            if delivered > 0.0 {
                format!("{:.0}", wire / delivered)
            } else {
                "—".into()
            },
            1000.0 * num("cpu_s") / window / *n as f64,
        );
    }
    let _ = writeln!(
        o,
        "\n### Placement: `peers()` + rank, offer, await (one job at a time, random submitters)\n"
    );
    let _ = writeln!(
        o,
        "| nodes | jobs | failed | offers (refused or failed) | offers to unmeasured peers | offers needing a dial | rank p50 / p99 ms | offer p50 / p99 ms | await p50 / p99 ms | total p50 / p99 ms | requests per job | wire bytes per job |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (n, v) in &ok {
        let p = &v["placement"];
        if p.is_null() {
            continue;
        }
        let two = |x: &Value| format!("{} / {}", f(&x["p50"], 2), f(&x["p99"], 2));
        let _ = writeln!(
            o,
            "| {n} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} |",
            p["jobs"],
            p["failures"],
            p["offers"],
            p["offers_failed"],
            p["offers_to_unmeasured_peers"],
            p["offers_needing_a_dial"],
            two(&p["rank_ms"]),
            two(&p["offer_ms"]),
            two(&p["await_ms"]),
            two(&p["total_ms"]),
            f(&p["requests_per_job"], 2),
            f(&p["wire_bytes_per_job"], 0),
        );
    }
    let _ = writeln!(o, "\n### Memory and what did not fit\n");
    let _ = writeln!(
        o,
        "| nodes | RSS at the end MiB | peak (VmHWM) MiB | CPU s in all | result |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|");
    for (n, r) in results {
        match r {
            Ok(v) => {
                let stop = v["formation"]["stopped_at_rss_mb"].as_f64();
                let _ = writeln!(
                    o,
                    "| {n} | {} | {} | {} | {} |",
                    f(&v["rss_mb"], 0),
                    f(&v["hwm_mb"], 0),
                    f(&v["cpu_s"], 0),
                    stop.map_or("ran".to_string(), |m| format!("stopped at {m:.0} MiB RSS"))
                );
            }
            Err(e) => {
                let _ = writeln!(o, "| {n} | — | — | — | {e} |");
            }
        }
    }
    o
}

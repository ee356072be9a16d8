//! `network-bench --verification`: what redundant verification (CONTRACTS §8) costs
//! against one remote run of the same job, with real node processes: a submitter and
//! five peers on loopback. For a tiny job (the echo module, deterministic profile) and
//! a one-second job (a WASI `poll_oneoff` sleep, which holds no CPU), it times
//! `POST /v1/jobs/execute` of one remote run (`{"peer": b}`) and of the job verified
//! by N = 2, 3 and 5 peers (placement `remote`, so the submitter does not count), and
//! reads the bytes and requests the submitter sent and received per job from its
//! `/metrics`. Target: a verified job's wall time within 1.2x of a single remote run's
//! (the attempts run in parallel), not N times it.

use crate::http::Conn;
use crate::node::{Node, Settings};
use crate::stats::{Latency, ms};
use crate::upload;
use anyhow::{Result, ensure};
use bytes::Bytes;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// A WASI command that sleeps one second in `poll_oneoff` (no CPU), then prints
/// `{"slept":1}`: the same output on every node, outside the deterministic profile
/// (whose virtual clock does not wait).
const SLEEP_1S_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 512) "{\"slept\":1}")
  (func (export "_start")
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 1000000000))
    (drop (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 256)))
    (i32.store (i32.const 300) (i32.const 512))
    (i32.store (i32.const 304) (i32.const 11))
    (drop (call $write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 320)))))"#;

/// One row: a job kind at one N (N = 1: a single remote run).
struct Row {
    job: &'static str,
    n: u32,
    wall: Latency,
    /// The longest attempt's own run time (`usage.wall_time_ms` of its receipt), p50.
    slowest_run_ms: f64,
    bytes_out: f64,
    bytes_in: f64,
    requests: f64,
}

/// Runs the verification rows and returns their markdown report.
pub async fn run(bin: &Path, tmp: &Path, settings: &Settings, reps: usize) -> Result<String> {
    eprintln!("network-bench: verification: starting a submitter and five peers ...");
    let a = Node::start("a", bin, tmp.join("va"), None, settings).await?;
    let mut peers = Vec::new();
    for (i, name) in ["b", "c", "d", "e", "f"].into_iter().enumerate() {
        peers.push(
            Node::start(
                name,
                bin,
                tmp.join(format!("v{i}")),
                Some(a.addr.clone()),
                settings,
            )
            .await?,
        );
    }
    let ids: Vec<&str> = peers.iter().map(|p| p.peer_id.as_str()).collect();
    a.wait_for(&ids, 30).await?;
    let mut c = a.conn().await?;
    let cat = upload(&mut c, hanzo_testkit::CAT_WAT).await?;
    let sleep = upload(&mut c, SLEEP_1S_WAT).await?;
    let b = peers[0].peer_id.clone();
    let mut rows = Vec::new();
    for (job, source, deterministic, k) in [
        ("tiny (echo)", &cat, true, reps),
        ("1 s sleep", &sleep, false, reps.div_ceil(4).max(3)),
    ] {
        for n in [1u32, 2, 3, 5] {
            eprintln!("network-bench: verification: {job}, N = {n}, {k} jobs ...");
            let mut spec = json!({
                "runtime": "wasm", "source": source, "params": {"n": 7},
                "deterministic": deterministic,
                "limits": {"cpu_shares": 64, "memory_mb": 16},
            });
            if n == 1 {
                spec["placement"] = json!({"peer": b});
            } else {
                spec["placement"] = json!("remote");
                spec["verification"] = json!({"strategy": "redundant", "min_peers": n});
            }
            let body = Bytes::from(spec.to_string());
            // One warm-up job: modules fetched, streams open.
            execute(&mut c, body.clone(), n).await?;
            let before = counters(&mut c).await?;
            let mut walls = Vec::with_capacity(k);
            let mut slowest = Vec::with_capacity(k);
            for _ in 0..k {
                let t = Instant::now();
                let job = execute(&mut c, body.clone(), n).await?;
                walls.push(t.elapsed());
                slowest.push(slowest_run(&job, n));
            }
            let after = counters(&mut c).await?;
            slowest.sort_by(f64::total_cmp);
            let per = |i: usize| (after[i] - before[i]) / k as f64;
            rows.push(Row {
                job,
                n,
                wall: Latency::of(&walls),
                slowest_run_ms: slowest[slowest.len() / 2],
                bytes_out: per(0),
                bytes_in: per(1),
                requests: per(2),
            });
        }
    }
    a.stop().await?;
    for p in peers {
        p.stop().await?;
    }
    Ok(report(&rows, reps))
}

/// Runs one job to its end and checks it: succeeded, and verified by N agreeing nodes.
async fn execute(c: &mut Conn, body: Bytes, n: u32) -> Result<Value> {
    let r = c.req("POST", "/v1/jobs/execute", body).await?;
    ensure!(
        r.status == 200,
        "execute: {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let job = r.json()?;
    ensure!(job["status"] == "succeeded", "the job did not succeed: {job}");
    if n > 1 {
        let v = &job["verification"];
        ensure!(
            v["verdict"] == "agreed" && v["receipts"].as_array().map(Vec::len) == Some(n as usize),
            "not agreed by {n}: {v}"
        );
    }
    Ok(job)
}

/// The longest run among a job's attempts, from their receipts (ms).
fn slowest_run(job: &Value, n: u32) -> f64 {
    let receipts: Vec<&Value> = if n > 1 {
        job["verification"]["receipts"]
            .as_array()
            .into_iter()
            .flatten()
            .collect()
    } else {
        vec![&job["receipt"]]
    };
    receipts
        .iter()
        .filter_map(|r| r["usage"]["wall_time_ms"].as_f64())
        .fold(0.0, f64::max)
}

/// The submitter's payload bytes out and in, and requests out, from `/metrics`.
async fn counters(c: &mut Conn) -> Result<[f64; 3]> {
    let r = c.expect("GET", "/metrics", String::new(), 200).await?;
    let text = String::from_utf8_lossy(&r.body).to_string();
    let read = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    Ok([
        read("hanzo_network_payload_bytes_total{direction=\"out\"} "),
        read("hanzo_network_payload_bytes_total{direction=\"in\"} "),
        read("hanzo_network_requests_out_total "),
    ])
}

fn report(rows: &[Row], reps: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Verified jobs: redundant execution against one remote run\n"
    );
    let _ = writeln!(
        out,
        "A submitter and five peers on loopback; `POST /v1/jobs/execute` one job at a time ({reps} tiny jobs, a quarter as many 1 s jobs, per row, after one warm-up). N = 1 is one remote run on a named peer; N > 1 is `verification: redundant` with `min_peers: N`, placement `remote`. *Slowest run* is the longest attempt's own run time from its receipt; bytes are the job protocol's payload (specs out; outputs, logs and receipts in), requests every request the submitter sent (offers, awaits, settlements).\n"
    );
    let _ = writeln!(
        out,
        "| job | N | wall p50 (ms) | wall p90 (ms) | vs one remote run (p50) | slowest run p50 | payload out / job | payload in / job | requests / job |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let single = rows
            .iter()
            .find(|x| x.job == r.job && x.n == 1)
            .map(|x| x.wall.p50)
            .unwrap_or(r.wall.p50);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2}x | {:.1} ms | {:.0} B | {:.0} B | {:.1} |",
            r.job,
            r.n,
            ms(r.wall.p50),
            ms(r.wall.p90),
            r.wall.p50.as_secs_f64() / single.as_secs_f64(),
            r.slowest_run_ms,
            r.bytes_out,
            r.bytes_in,
            r.requests,
        );
    }
    out
}

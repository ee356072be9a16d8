//! The demo's second part: a small network of nodes on this machine. Three `hanzo-node
//! serve` processes on 127.0.0.1 (mDNS off; nothing leaves the machine), two joining
//! through the first; a job placed on a peer, its receipt checked as that peer's, and
//! the peer killed mid-job so that the job finishes on the third node. Then, with a
//! build that can lie on purpose (`--liar`), verified jobs: four nodes, one of them
//! signing altered outputs, out-voted, named, unpaid and no longer chosen.

use crate::job_cmd::{Client, NodeArgs};
use hanzo_compute::{ComputeError, Receipt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A WASI command that sleeps 3 s (in `poll_oneoff`, no CPU), then prints
/// `{"slept":3}`: long enough to kill the node running it.
const SLEEP_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 512) "{\"slept\":3}")
  (func (export "_start")
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3000000000))
    (drop (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 256)))
    (i32.store (i32.const 300) (i32.const 512))
    (i32.store (i32.const 304) (i32.const 11))
    (drop (call $write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 320)))))"#;

struct Peer {
    name: &'static str,
    child: Child,
    client: Client,
    peer_id: String,
    node_id: String,
    addr: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn fail(msg: impl Into<String>) -> anyhow::Error {
    ComputeError::internal(msg.into()).into()
}

/// Starts one node in `dir` (its data directory) and waits until it serves.
fn start(name: &'static str, dir: &Path, bootstrap: Option<&str>) -> anyhow::Result<Peer> {
    start_bin(name, &std::env::current_exe()?, &[], dir, bootstrap)
}

/// As [`start`], running `exe` with the extra environment `env`.
fn start_bin(
    name: &'static str,
    exe: &Path,
    env: &[(&str, &str)],
    dir: &Path,
    bootstrap: Option<&str>,
) -> anyhow::Result<Peer> {
    let port = free_port()?;
    let log = std::fs::File::create(dir.with_extension("log"))?;
    let mut cmd = Command::new(exe);
    cmd.envs(env.iter().copied());
    cmd.arg("serve")
        .env("HANZO_HOME", dir)
        .env_remove("HANZO_CONFIG")
        .env("HANZO_NODE_API_LISTEN", format!("127.0.0.1:{port}"))
        .env("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm")
        .env("HANZO_NETWORK_ENABLED", "true")
        .env("HANZO_NETWORK_MDNS", "false")
        .env("HANZO_NETWORK_LISTEN", "/ip4/127.0.0.1/tcp/0")
        .env("HANZO_NETWORK_ADVERT_INTERVAL_MS", "500")
        .env("HANZO_NETWORK_PEER_TIMEOUT_MS", "5000")
        // A price, so that the ledgers have something to say.
        .env("HANZO_NETWORK_PRICE_PER_JOB", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    if let Some(b) = bootstrap {
        cmd.env("HANZO_NETWORK_BOOTSTRAP", b);
    }
    let child = cmd.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{port}");
    loop {
        if let Some(token) = crate::secure::read_token(dir) {
            let client = Client::new(
                None,
                &NodeArgs {
                    node: Some(url.clone()),
                    token: Some(token),
                },
            )?;
            if let Ok(r) = client.call("GET", "/v1/node", b"") {
                let info = r.json()?;
                let s = |k: &str| info[k].as_str().unwrap_or_default().to_string();
                let addr = info["listen_addrs"][0].as_str().unwrap_or_default().to_string();
                return Ok(Peer {
                    name,
                    child,
                    client,
                    peer_id: s("peer_id"),
                    node_id: s("node_id"),
                    addr,
                });
            }
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "node {name} did not start; see {}",
                dir.with_extension("log").display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (30 s at most) until `a` has an advert offering WASM from each of `peers`.
fn wait_until_seen(a: &Peer, peers: &[&Peer]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = a.client.call("GET", "/v1/peers", b"")?.json()?;
        let known = |p: &Peer| {
            listed.as_array().is_some_and(|l| {
                l.iter()
                    .any(|x| x["peer_id"] == p.peer_id.as_str() && x["runtimes"] == json!(["wasm"]))
            })
        };
        if peers.iter().all(|p| known(p)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let names: Vec<&str> = peers.iter().map(|p| p.name).collect();
            return Err(fail(format!("{} never saw all of {names:?}: {listed}", a.name)));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn short(id: &str) -> String {
    if id.len() > 16 {
        format!("{}…{}", &id[..8], &id[id.len() - 6..])
    } else {
        id.to_string()
    }
}

/// Runs the network part; `examples` holds the built example modules.
pub fn run(data_dir: &Path, examples: &Path, liar: Option<&Path>) -> anyhow::Result<u32> {
    let root: PathBuf = data_dir.join("demo-network");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    println!(
        "the network of nodes: three nodes on 127.0.0.1 (logs in {})",
        root.display()
    );
    let a = start("A", &root.join("a"), None)?;
    let b = start("B", &root.join("b"), Some(&a.addr))?;
    let c = start("C", &root.join("c"), Some(&a.addr))?;
    for p in [&a, &b, &c] {
        println!("    node {}  peer {}", p.name, p.peer_id);
    }
    // A learns of B and C from their adverts.
    wait_until_seen(&a, &[&b, &c])?;
    println!("    A sees B and C, with what they offer (hanzo-node peers)");
    let mut failures = 0;
    let nodes = [&a, &b, &c];
    let name_of = |peer: &str| nodes.iter().find(|p| p.peer_id == peer).map_or("?", |p| p.name);

    // 1. A job placed on the best peer; the module is only on A and travels by hash.
    let module = std::fs::read(examples.join("text-tools-cmd.wasm"))?;
    let stored = a.client.call("POST", "/v1/modules", &module)?.json()?;
    let source = stored["source"].as_str().unwrap_or_default().to_string();
    let params = json!({"text": "Jobs travel, receipts prove"});
    let spec = json!({"runtime": "wasm", "source": source, "function": "slugify", "params": params, "placement": "remote"});
    let job = a
        .client
        .call("POST", "/v1/jobs/execute", spec.to_string().as_bytes())?
        .json()?;
    let by = job["executed_by"].as_str().unwrap_or_default().to_string();
    println!("\n 1. slugify placed \"remote\" from A");
    println!(
        "    output:  {}   ran on {} (the module was fetched from A by its sha256)",
        job["output"],
        name_of(&by)
    );
    match check(&job, &params, nodes.iter().find(|p| p.peer_id == by).copied()) {
        Ok(line) => println!("    {line}"),
        Err(e) => {
            println!("    receipt FAILED: {e}");
            failures += 1;
        }
    }

    // 2. The peer running a job dies: the job finishes elsewhere.
    let sleeper = a
        .client
        .call("POST", "/v1/modules", SLEEP_WAT.as_bytes())?
        .json()?;
    let spec = json!({"runtime": "wasm", "source": sleeper["source"], "placement": "remote", "retries": 1});
    let ack = a
        .client
        .call("POST", "/v1/jobs", spec.to_string().as_bytes())?
        .json()?;
    let id = ack["id"].as_str().unwrap_or_default().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let j = a.client.call("GET", &format!("/v1/jobs/{id}"), b"")?.json()?;
        if let Some(p) = j["executed_by"].as_str().filter(|_| j["status"] == "running") {
            break p.to_string();
        }
        if Instant::now() > deadline {
            return Err(fail(format!("the job never started on a peer: {j}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "\n 2. a 3 s job placed \"remote\" with retries 1: running on {}; killing {} (kill -9)",
        name_of(&first),
        name_of(&first)
    );
    let mut b = b;
    let mut c = c;
    let victim = if b.peer_id == first { &mut b } else { &mut c };
    victim.child.kill()?;
    victim.child.wait()?;
    let killed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let j = a.client.call("GET", &format!("/v1/jobs/{id}"), b"")?.json()?;
        if matches!(j["status"].as_str(), Some("succeeded" | "failed" | "cancelled")) {
            break j;
        }
        if Instant::now() > deadline {
            return Err(fail(format!("the job never ended: {j}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let nodes = [&a, &b, &c];
    let name_of = |peer: &str| nodes.iter().find(|p| p.peer_id == peer).map_or("?", |p| p.name);
    for p in job["placements"].as_array().into_iter().flatten() {
        println!(
            "    placement on {}: {}{}",
            name_of(p["peer_id"].as_str().unwrap_or_default()),
            p["outcome"].as_str().unwrap_or_default(),
            p["reason"]
                .as_str()
                .map(|r| format!(" ({})", crate::demo::clip(r, 70)))
                .unwrap_or_default()
        );
    }
    let by = job["executed_by"].as_str().unwrap_or_default().to_string();
    println!(
        "    output:  {}   finished on {}, {:.1} s after the kill",
        job["output"],
        name_of(&by),
        killed.elapsed().as_secs_f64()
    );
    let failed_over =
        job["status"] == "succeeded" && job["placements"][0]["outcome"] == "lost" && by != first;
    if !failed_over {
        println!("    UNEXPECTED: {job}");
        failures += 1;
    }
    match check(&job, &json!({}), nodes.iter().find(|p| p.peer_id == by).copied()) {
        Ok(line) => println!("    {line}"),
        Err(e) => {
            println!("    receipt FAILED: {e}");
            failures += 1;
        }
    }
    println!();
    let survivor = if b.peer_id == first { c } else { b };
    failures += verified(&root, &a, survivor, liar)?;
    Ok(failures)
}

/// A WASI command printing 8 random bytes as `{"r": "<hex>"}`: a different answer on
/// every node, except in the deterministic profile.
const RANDOM_WAT: &str = include_str!("../../../hanzo-libs/hanzo-testkit/fixtures/random.wat");

/// Step 3: verified jobs on A, the survivor of step 2, a new honest node E and a
/// lying node D (the failpoints build with `corrupt_output`).
fn verified(root: &Path, a: &Peer, survivor: Peer, liar: Option<&Path>) -> anyhow::Result<u32> {
    let Some(liar) = liar else {
        println!(
            " 3. verified jobs: SKIPPED (no --liar: build hanzo-node with --features failpoints and pass its path; scripts/demo.sh does)\n"
        );
        return Ok(0);
    };
    let e = start("E", &root.join("e"), Some(&a.addr))?;
    let d = start_bin(
        "D",
        liar,
        &[("FAILPOINTS", "corrupt_output=return")],
        &root.join("d"),
        Some(&a.addr),
    )?;
    let nodes = [a, &survivor, &e, &d];
    let name_of = |peer: &str| nodes.iter().find(|p| p.peer_id == peer).map_or("?", |p| p.name);
    println!(
        " 3. verified jobs: nodes {}, {} and E are honest; D signs an altered output for every peer's job",
        a.name, survivor.name
    );
    wait_until_seen(a, &[&survivor, &e, &d])?;
    let stored = a
        .client
        .call("POST", "/v1/modules", RANDOM_WAT.as_bytes())?
        .json()?;
    let source = stored["source"].as_str().unwrap_or_default().to_string();
    let run = |n: u32| -> anyhow::Result<Value> {
        let spec = json!({"runtime": "wasm", "source": source, "deterministic": true,
            "verification": {"strategy": "redundant", "min_peers": n}});
        a.client
            .call("POST", "/v1/jobs/execute", spec.to_string().as_bytes())?
            .json()
    };
    let d_record = || -> anyhow::Result<Value> {
        let peers = a.client.call("GET", "/v1/peers", b"")?.json()?;
        Ok(peers
            .as_array()
            .and_then(|l| l.iter().find(|x| x["peer_id"] == d.peer_id.as_str()).cloned())
            .unwrap_or(Value::Null))
    };
    let mut failures = 0;
    for round in 1..=2 {
        let job = run(4)?;
        let v = &job["verification"];
        println!(
            "    job {round}: random bytes in the deterministic profile, verified by 4 nodes: {} ({}), output {}",
            v["verdict"].as_str().unwrap_or("?"),
            job["status"].as_str().unwrap_or("?"),
            job["output"]
        );
        for r in v["receipts"].as_array().into_iter().flatten() {
            let node = nodes
                .iter()
                .find(|p| p.node_id == r["node_id"].as_str().unwrap_or_default());
            println!(
                "      {}: output_hash {}…  fuel {}  signed, nonce {}…",
                node.map_or("?", |p| p.name),
                r["output_hash"].as_str().unwrap_or("-").get(..12).unwrap_or("-"),
                r["usage"]["fuel_consumed"],
                r["nonce"].as_str().unwrap_or("-").get(..8).unwrap_or("-"),
            );
        }
        let named: Vec<&str> = v["dissenters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .map(name_of)
            .collect();
        let rec = d_record()?;
        println!(
            "      dissenters: {named:?}; D's record here: {} dissents, reputation {:.3}",
            rec["verification"]["dissents"],
            rec["reputation"].as_f64().unwrap_or(f64::NAN)
        );
        if job["status"] != "succeeded" || v["verdict"] != "majority" || named != ["D"] {
            println!("    UNEXPECTED: {job}");
            failures += 1;
        }
    }
    let job = run(3)?;
    let ran: Vec<&str> = job["placements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["peer_id"].as_str())
        .map(name_of)
        .collect();
    println!(
        "    job 3, verified by 3: {} by {ran:?}; D, under the 0.2 credibility line, is not asked",
        job["verification"]["verdict"].as_str().unwrap_or("?")
    );
    if job["verification"]["verdict"] != "agreed" || ran.contains(&"D") {
        println!("    UNEXPECTED: {job}");
        failures += 1;
    }
    // Settlement: E's result was counter-signed by A (in a batch that leaves within
    // 50 ms of the job's end); the record verifies on its own.
    let id = job["id"].as_str().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records = a
            .client
            .call("GET", &format!("/v1/jobs/{id}/billing"), b"")?
            .json()?;
        let has_e = records["records"]
            .as_array()
            .is_some_and(|l| l.iter().any(|r| r["receipt"]["node_id"] == e.node_id.as_str()));
        if has_e || Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ledger = a.client.call("GET", "/v1/ledger", b"")?.json()?;
    let owed = |p: &Peer| {
        ledger["accounts"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["peer_id"] == p.peer_id.as_str()))
            .map_or(0, |x| x["owed"].as_u64().unwrap_or(0))
    };
    println!(
        "    A owes (micro-credits): {} {}, E {}, D {} (a dissent earns nothing)",
        survivor.name,
        owed(&survivor),
        owed(&e),
        owed(&d)
    );
    if owed(&d) != 0 {
        failures += 1;
    }
    let of_e = records["records"].as_array().and_then(|l| {
        l.iter()
            .find(|r| r["receipt"]["node_id"] == e.node_id.as_str())
            .cloned()
    });
    match of_e.map(|r| hanzo_compute::billing::BillingRecord::verify(&r)) {
        Some(Ok(r)) if r.acceptance.submitter == a.node_id && r.receipt.node_id == e.node_id => println!(
            "    billing record of E's result in job 3: E's receipt + A's signed acceptance ({} micro-credits): verifies",
            r.acceptance.amount
        ),
        other => {
            println!("    UNEXPECTED billing record: {other:?}");
            failures += 1;
        }
    }
    // D's own ledger: A told it its results were not taken.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ledger = d.client.call("GET", "/v1/ledger", b"")?.json()?;
        let acc = ledger["accounts"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["peer_id"] == a.peer_id.as_str()).cloned())
            .unwrap_or(Value::Null);
        if acc["jobs_rejected"] == 2 {
            println!(
                "    D's own ledger: earned {} from A, {} results rejected",
                acc["earned"].as_u64().unwrap_or(0),
                acc["jobs_rejected"]
            );
            break;
        }
        if Instant::now() > deadline {
            println!("    UNEXPECTED: D was never told its results were rejected: {acc}");
            failures += 1;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!();
    Ok(failures)
}

/// The receipt verifies, was signed by the node that ran the job, and covers its input
/// and output.
fn check(job: &Value, params: &Value, by: Option<&Peer>) -> Result<String, String> {
    let by = by.ok_or("the executor is not one of the demo's nodes")?;
    let r = Receipt::verify(&job["receipt"]).map_err(|e| e.to_string())?;
    if r.node_id != by.node_id {
        return Err(format!(
            "signed by {}, not by {} ({})",
            r.node_id, by.name, by.node_id
        ));
    }
    let named = hanzo_network::identity::peer_id_of_node(&r.node_id).map_err(|e| e.to_string())?;
    if named.to_string() != by.peer_id {
        return Err(format!(
            "the key {} is not that of peer {}",
            r.node_id, by.peer_id
        ));
    }
    r.check_input(params).map_err(|e| e.to_string())?;
    r.check_output(&job["output"]).map_err(|e| e.to_string())?;
    Ok(format!(
        "receipt verified: signed by {}'s key ({}...), which its peer id {} names",
        by.name,
        &by.node_id[..12],
        short(&by.peer_id)
    ))
}

//! The demo's second part: a small network of nodes on this machine. Three `hanzo-node
//! serve` processes on 127.0.0.1 (mDNS off; nothing leaves the machine), two joining
//! through the first; a job placed on a peer, its receipt checked as that peer's, and
//! the peer killed mid-job so that the job finishes on the third node.

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
    let port = free_port()?;
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(dir.with_extension("log"))?;
    let mut cmd = Command::new(exe);
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

fn short(id: &str) -> String {
    if id.len() > 16 {
        format!("{}…{}", &id[..8], &id[id.len() - 6..])
    } else {
        id.to_string()
    }
}

/// Runs the network part; `examples` holds the built example modules.
pub fn run(data_dir: &Path, examples: &Path) -> anyhow::Result<u32> {
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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let peers = a.client.call("GET", "/v1/peers", b"")?.json()?;
        let known = |p: &Peer| {
            peers.as_array().is_some_and(|l| {
                l.iter()
                    .any(|x| x["peer_id"] == p.peer_id.as_str() && x["runtimes"] == json!(["wasm"]))
            })
        };
        if known(&b) && known(&c) {
            println!("    A sees B and C, with what they offer (hanzo-node peers)");
            break;
        }
        if Instant::now() > deadline {
            return Err(fail(format!("A never saw both peers: {peers}")));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
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

//! The network of nodes (CONTRACTS §7) with real `hanzo-node serve` processes talking
//! libp2p on 127.0.0.1 (mDNS off): discovery through one bootstrap node, each
//! placement mode, code by hash, receipts of the peer that ran the job, declines,
//! `unschedulable`, and the death of the executing peer and of the submitter.

use crate::server::{CAT, Server};
use crate::util::Home;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A WASI command that sleeps `secs` in `poll_oneoff` (no CPU), then prints
/// `{"slept": secs}`.
fn sleep_wat(secs: u64) -> String {
    let out = format!("{{\"slept\":{secs}}}");
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 512) "{data}")
  (func (export "_start")
    (i64.store (i32.const 0) (i64.const 0))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const {nanos}))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 256)))
    (i32.store (i32.const 300) (i32.const 512))
    (i32.store (i32.const 304) (i32.const {len}))
    (drop (call $write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 320)))))"#,
        data = out.replace('"', "\\\""),
        nanos = secs * 1_000_000_000,
        len = out.len(),
    )
}

/// One node of a test network.
pub struct Node {
    pub home: Home,
    pub server: Server,
    pub peer_id: String,
    pub node_id: String,
    /// Its first listen address, `/ip4/127.0.0.1/tcp/N/p2p/<peer id>`.
    pub addr: String,
    env: Vec<(String, String)>,
    /// The binary it runs.
    bin: String,
}

/// The settings every test node has: libp2p on a free loopback port, no mDNS, quick
/// adverts.
fn base_env(bootstrap: Option<&Node>) -> Vec<(String, String)> {
    let mut env = vec![
        ("HANZO_NETWORK_ENABLED", "true"),
        ("HANZO_NETWORK_MDNS", "false"),
        ("HANZO_NETWORK_LISTEN", "/ip4/127.0.0.1/tcp/0"),
        ("HANZO_NETWORK_ADVERT_INTERVAL_MS", "300"),
        ("HANZO_NETWORK_PEER_TIMEOUT_MS", "5000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect::<Vec<_>>();
    if let Some(b) = bootstrap {
        env.push(("HANZO_NETWORK_BOOTSTRAP".into(), b.addr.clone()));
    }
    env
}

impl Node {
    /// Starts a node (joining through `bootstrap`) with extra `HANZO_*` settings; its
    /// log lines go to `<home>/node.log`.
    pub fn start(bootstrap: Option<&Node>, extra: &[(&str, &str)]) -> Node {
        Self::start_bin(env!("CARGO_BIN_EXE_hanzo-node"), bootstrap, extra)
    }

    /// As [`Node::start`], running the binary `bin`.
    pub fn start_bin(bin: &str, bootstrap: Option<&Node>, extra: &[(&str, &str)]) -> Node {
        let home = Home::new();
        let mut env = base_env(bootstrap);
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        let server = Self::serve(bin, &home, &env);
        let info = server.req("GET", "/v1/node", b"").json();
        let addr = info["listen_addrs"][0]
            .as_str()
            .unwrap_or_else(|| panic!("no listen_addrs: {info}"))
            .to_string();
        Node {
            peer_id: info["peer_id"].as_str().unwrap().to_string(),
            node_id: info["node_id"].as_str().unwrap().to_string(),
            addr,
            home,
            server,
            env,
            bin: bin.to_string(),
        }
    }

    fn serve(bin: &str, home: &Home, env: &[(String, String)]) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.path("node.log"))
            .unwrap();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Server::start_bin(home, bin, &env, &[], Stdio::from(log))
    }

    /// Kills the node with SIGKILL.
    pub fn kill(&mut self) {
        self.server.child.kill().unwrap();
        self.server.child.wait().unwrap();
    }

    /// Starts the node again on its data directory and libp2p address, as a service
    /// restarts (its API on a new port).
    pub fn restart(&mut self) {
        let listen = self.addr.split("/p2p/").next().unwrap().to_string();
        self.env.retain(|(k, _)| k != "HANZO_NETWORK_LISTEN");
        self.env.push(("HANZO_NETWORK_LISTEN".into(), listen));
        self.server = Self::serve(&self.bin, &self.home, &self.env);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path("node.log")).unwrap_or_default()
    }

    pub fn peers(&self) -> Vec<Value> {
        let r = self.server.req("GET", "/v1/peers", b"");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
            .as_array()
            .unwrap_or_else(|| panic!("not an array: {}", r.text()))
            .clone()
    }

    /// Waits (at most 30 s) until this node has an advert from each of `others`.
    pub fn wait_for_peers(&self, others: &[&Node]) {
        let ids: Vec<&str> = others.iter().map(|n| n.peer_id.as_str()).collect();
        self.wait_for_adverts(&ids, String::new);
    }

    /// Waits (at most 30 s) until this node has an advert offering WASM from each of
    /// the peers `ids`; `context` adds to the failure's message (a node's log).
    pub fn wait_for_adverts(&self, ids: &[&str], context: impl Fn() -> String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let peers = self.peers();
            let seen = |id: &&str| {
                peers
                    .iter()
                    .any(|p| p["peer_id"] == *id && p["runtimes"] == json!(["wasm"]))
            };
            if ids.iter().all(seen) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no adverts from all of {ids:?}: {peers:#?}\n{}",
                context()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Submits `spec` and returns the job id.
    pub fn submit(&self, spec: &Value) -> String {
        let r = self.server.post_json("/v1/jobs", spec);
        assert_eq!(r.status, 202, "{}", r.text());
        r.json()["id"].as_str().unwrap().to_string()
    }

    /// Runs `spec` to its end (`POST /v1/jobs/execute`).
    pub fn execute(&self, spec: &Value) -> Value {
        let r = self.server.post_json("/v1/jobs/execute", spec);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    pub fn job_record(&self, id: &str) -> Value {
        self.server.job(id)
    }

    pub fn metric(&self, name: &str) -> f64 {
        let text = self.server.req("GET", "/metrics", b"").text();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no metric {name}"))
    }
}

/// n1, then n2..nk bootstrapped from it, all knowing each other.
fn network(k: usize, extra: &[(&str, &str)]) -> Vec<Node> {
    let first = Node::start(None, extra);
    let mut nodes = vec![first];
    for _ in 1..k {
        let n = Node::start(Some(&nodes[0]), extra);
        nodes.push(n);
    }
    for n in &nodes {
        let others: Vec<&Node> = nodes.iter().filter(|o| o.peer_id != n.peer_id).collect();
        n.wait_for_peers(&others);
    }
    nodes
}

#[test]
fn nodes_find_each_other_through_one_and_show_what_they_offer() {
    let nodes = network(3, &[]);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    // b was told only about a, and knows c: from c's advert, through the network.
    let peers = b.peers();
    let pc = peers.iter().find(|p| p["peer_id"] == c.peer_id.as_str()).unwrap();
    assert_eq!(pc["node_id"], c.node_id.as_str());
    assert_eq!(pc["runtimes"], json!(["wasm"]));
    assert!(
        pc["addrs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_str().unwrap().starts_with("/ip4/127.0.0.1/tcp/")),
        "{pc}"
    );
    let rep = pc["reputation"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&rep), "{pc}");
    assert!(
        pc["resources"]["capacity"]["slots"].as_u64().unwrap() >= 1,
        "{pc}"
    );
    assert!(pc["last_seen"].as_str().unwrap().ends_with('Z'), "{pc}");
    assert!(pc.get("latency_ms").is_some(), "{pc}");
    // /v1/node: the node id, the peer id, full listen addresses.
    let info = a.server.req("GET", "/v1/node", b"").json();
    assert_eq!(info["node_id"], a.node_id.as_str());
    assert!(
        info["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x.as_str().unwrap().ends_with(&format!("/p2p/{}", a.peer_id)))
    );
    // The CLI: the same array with --json, a table without.
    let r = b.home.run(&[
        "peers",
        "--json",
        "--node",
        &b.server.url(),
        "--token",
        b.server.token(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let listed = r.json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&a.peer_id.as_str()) && ids.contains(&c.peer_id.as_str()),
        "{listed}"
    );
    let r = b
        .home
        .run(&["peers", "--node", &b.server.url(), "--token", b.server.token()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("PEER") && r.stdout.contains(&c.peer_id),
        "{}",
        r.stdout
    );
    // Network figures in /metrics.
    assert!(b.metric("hanzo_network_peers ") >= 2.0);
    assert!(b.metric("hanzo_network_adverts_total{verdict=\"accepted\"} ") >= 2.0);
}

#[test]
fn each_placement_mode_runs_where_it_says_and_the_receipt_names_the_peer() {
    // The submitter has 1 GiB in all; the peers more: `any` must leave it for a job
    // that needs 2 GiB.
    let submitter_env = [("HANZO_COMPUTE_RESOURCES_TOTAL_MEMORY_GB", "1")];
    let a = Node::start(None, &submitter_env);
    let b = Node::start(Some(&a), &[]);
    let c = Node::start(Some(&a), &[]);
    a.wait_for_peers(&[&b, &c]);
    // The module is stored on the submitter only; peers fetch it by hash.
    let source = a.server.module(CAT);
    let spec = |placement: Value| json!({"runtime": "wasm", "source": source, "params": {"n": 1}, "placement": placement});

    let local = a.execute(&spec(json!("local")));
    assert_eq!(local["status"], "succeeded", "{local}");
    assert_eq!(local["executed_by"], a.peer_id.as_str());
    assert_eq!(local["receipt"]["node_id"], a.node_id.as_str());
    assert_eq!(
        local["placements"],
        json!([{"peer_id": a.peer_id, "outcome": "succeeded", "execution_id": null, "reason": null, "started_at": local["started_at"], "ended_at": local["finished_at"]}])
    );

    let remote = a.execute(&spec(json!("remote")));
    assert_eq!(remote["status"], "succeeded", "{remote}");
    assert_eq!(remote["output"], json!({"n": 1}));
    let by = remote["executed_by"].as_str().unwrap();
    let executor = [&b, &c]
        .into_iter()
        .find(|n| n.peer_id == by)
        .unwrap_or_else(|| panic!("ran on {by}"));
    assert_eq!(
        remote["receipt"]["node_id"],
        executor.node_id.as_str(),
        "the receipt is the executor's"
    );
    let placements = remote["placements"].as_array().unwrap();
    assert_eq!(placements.len(), 1, "{remote}");
    assert_eq!(placements[0]["peer_id"], by);
    assert_eq!(placements[0]["outcome"], "succeeded");
    // The executor fetched the module by hash and keeps it in its own store.
    let sha = source.strip_prefix("sha256:").unwrap();
    let r = executor.home.run(&["module", "ls", "--json"]);
    assert!(r.stdout.contains(sha), "{}", r.stdout);
    // The receipt verifies as the peer's, and not as the submitter's.
    let receipt = a.home.file("remote-receipt.json", &remote["receipt"].to_string());
    let ok = a
        .home
        .run(&["receipt", "verify", &receipt, "--node-id", &executor.node_id]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let wrong = a
        .home
        .run(&["receipt", "verify", &receipt, "--node-id", &a.node_id]);
    assert_ne!(wrong.code, 0);

    let named = a.execute(&spec(json!({"peer": c.peer_id})));
    assert_eq!(named["status"], "succeeded", "{named}");
    assert_eq!(named["executed_by"], c.peer_id.as_str());
    assert_eq!(named["receipt"]["node_id"], c.node_id.as_str());
    // A short job on a peer that has its code is one request: the result comes with
    // the acceptance, no `Await` follows. The settlement (this node's signed acceptance
    // of the result, CONTRACTS §8) is a second one, sent after the job ended. The
    // settlement of the job before goes first (it waits up to 50 ms for others to
    // batch with): the count is read once it has.
    let quiet = |a: &Node| {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = a.metric("hanzo_network_requests_out_total");
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = a.metric("hanzo_network_requests_out_total");
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    };
    let asked = quiet(&a);
    let again = a.execute(&spec(json!({"peer": c.peer_id})));
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(again["executed_by"], c.peer_id.as_str());
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.metric("hanzo_network_requests_out_total") - asked < 2.0 {
        assert!(Instant::now() < deadline, "no settlement was sent");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a.metric("hanzo_network_requests_out_total") - asked, 2.0);

    // `any`, for a job this node cannot hold (2 GiB on a 1 GiB node): a peer runs it.
    let mut big = spec(json!("any"));
    big["limits"] = json!({"memory_mb": 2048});
    let any = a.execute(&big);
    assert_eq!(any["status"], "succeeded", "{any}");
    assert_ne!(any["executed_by"], a.peer_id.as_str(), "{any}");
    // And `any` for a job this node can run, with idle peers: this node is as free
    // and closest.
    let near = a.execute(&spec(json!("any")));
    assert_eq!(near["status"], "succeeded", "{near}");
    assert!(near["executed_by"].is_string(), "{near}");

    // A tool that fails on a peer fails the job there: no new placement, and the
    // peer, not this node, is who executed it.
    let failing = a.server.module(
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1) (func (export "_start") (call $exit (i32.const 3))))"#,
    );
    let f = a.execute(&json!({"runtime": "wasm", "source": failing, "placement": {"peer": b.peer_id}}));
    assert_eq!(f["status"], "failed", "{f}");
    assert_eq!(f["error"]["code"], "tool_failed", "{f}");
    assert_eq!(f["executed_by"], b.peer_id.as_str(), "{f}");
    assert_eq!(f["placements"].as_array().unwrap().len(), 1, "{f}");
    assert_eq!(f["placements"][0]["outcome"], "failed", "{f}");
    assert_eq!(f["receipt"]["node_id"], b.node_id.as_str(), "{f}");

    // The CLI: job submit --placement.
    let r = a.home.run(&[
        "job",
        "submit",
        "wasm",
        &source,
        "--params",
        "{\"x\":2}",
        "--placement",
        &b.peer_id,
        "--wait",
        "--json",
        "--node",
        &a.server.url(),
        "--token",
        a.server.token(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["receipt"]["node_id"], b.node_id.as_str());
}

#[test]
fn a_job_no_node_can_take_is_unschedulable_saying_why() {
    // Peers accept 64 MiB at most; the job asks 128. The submitter lets API clients
    // mount /tmp, so that only placement refuses the mount below.
    let shared = tempfile::tempdir().unwrap();
    let root = shared.path().display().to_string();
    let a = Node::start(None, &[("HANZO_COMPUTE_MOUNT_ROOTS", &root)]);
    let b = Node::start(Some(&a), &[("HANZO_COMPUTE_LIMITS_MAX_MEMORY_MB", "64")]);
    a.wait_for_peers(&[&b]);
    let source = a.server.module(CAT);
    let j = a.execute(
        &json!({"runtime": "wasm", "source": source, "placement": "remote", "limits": {"memory_mb": 128}}),
    );
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["error"]["code"], "unschedulable", "{j}");
    let msg = j["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&b.peer_id) && msg.contains("memory_mb 128 is over its ceiling 64"),
        "{msg}"
    );
    assert_eq!(j["executed_by"], Value::Null);
    assert_eq!(j["placements"], json!([]));

    // A peer that is not on the network.
    let stranger = hanzo_network_peer_id_of(&[9; 32]);
    let j = a.execute(&json!({"runtime": "wasm", "source": source, "placement": {"peer": stranger}}));
    assert_eq!(j["error"]["code"], "unschedulable", "{j}");
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a live peer"),
        "{j}"
    );

    // A malformed peer id is the client's error, and nothing is stored.
    let r = a.server.post_json(
        "/v1/jobs",
        &json!({"runtime": "wasm", "source": source, "placement": {"peer": "12D3KooWnope"}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // So are mounts on a job that may leave the node.
    let r = a.server.post_json("/v1/jobs", &json!({"runtime": "wasm", "source": source, "placement": "remote", "mounts": [format!("{root}:/data")]}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("mounts never travel to peers"), "{}", r.text());
}

/// A peer made of the node's own network crate and nothing else, bootstrapped from
/// `node`: what a hostile or lying peer is built from.
async fn raw_peer(node: &Node, seed: [u8; 32]) -> (hanzo_network::Client, hanzo_network::Channels) {
    raw_peer_advertising(node, seed, std::sync::Arc::new(hanzo_network::Advert::empty)).await
}

/// [`raw_peer`] publishing the adverts `advert` makes.
async fn raw_peer_advertising(
    node: &Node,
    seed: [u8; 32],
    advert: std::sync::Arc<dyn Fn() -> hanzo_network::Advert + Send + Sync>,
) -> (hanzo_network::Client, hanzo_network::Channels) {
    let config = hanzo_compute::config::NetworkConfig {
        enabled: true,
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        bootstrap: vec![node.addr.clone()],
        mdns: false,
        ..Default::default()
    };
    let settings = hanzo_network::Settings::from_config(&config).unwrap();
    hanzo_network::start(seed, settings, advert).await.unwrap()
}

/// The runtime a test's own raw peer runs on (two workers, like a small node).
fn peer_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Follows an execution on `peer` as a submitter does, until it has ended.
async fn await_result(
    client: &hanzo_network::Client,
    peer: hanzo_network::PeerId,
    execution_id: &str,
    deadline: Instant,
) -> Box<hanzo_network::RemoteResult> {
    loop {
        let request = hanzo_network::JobRequest::Await {
            execution_id: execution_id.into(),
            wait_ms: 2000,
        };
        match client.job(peer, request).await.unwrap() {
            hanzo_network::JobResponse::Finished(f) => return f,
            hanzo_network::JobResponse::Running { .. } => {
                assert!(Instant::now() < deadline, "never finished")
            }
            other => panic!("{other:?}"),
        }
    }
}

/// The peer id of a node key seed, as the node derives it.
/// The offer of a WASM job on module `sha` with `params`, under `execution_id`.
fn wasm_offer(execution_id: &str, sha: &str, params: Value, code_bytes: usize) -> hanzo_network::Offer {
    let mut spec = hanzo_compute::JobSpec::new(hanzo_compute::RuntimeKind::Wasm, format!("sha256:{sha}"));
    spec.params = params;
    hanzo_network::Offer {
        execution_id: execution_id.into(),
        spec: serde_json::to_string(&spec).unwrap(),
        code_bytes: code_bytes as u64,
        deadline_ms: 30_000,
        file_ext: None,
        image_id: None,
        wait_ms: 0,
        attempt: None,
    }
}

/// `offer` sent from `from` to `peer` until it is answered (the connection may still
/// be coming up), or a panic at `deadline`.
async fn offer_until_answered(
    from: &hanzo_network::Client,
    peer: hanzo_network::PeerId,
    offer: &hanzo_network::Offer,
    deadline: Instant,
) -> hanzo_network::JobResponse {
    loop {
        match from
            .job(peer, hanzo_network::JobRequest::Offer(offer.clone()))
            .await
        {
            Ok(r) => return r,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("{e}"),
        }
    }
}

fn hanzo_network_peer_id_of(seed: &[u8; 32]) -> String {
    hanzo_network::identity::keypair(*seed)
        .public()
        .to_peer_id()
        .to_string()
}

#[test]
fn a_full_peer_declines_and_the_next_candidate_takes_the_job() {
    // `full` is the cheapest and advertises rarely: the submitter ranks it first on an
    // advert that says it is free, and it declines because its one slot is taken now.
    let s = Node::start(None, &[]);
    let full = Node::start(
        Some(&s),
        &[
            ("HANZO_NETWORK_ADVERT_INTERVAL_MS", "60000"),
            ("HANZO_NETWORK_PEER_TIMEOUT_MS", "120000"),
            ("HANZO_COMPUTE_RESOURCES_MAX_CONCURRENT_JOBS", "1"),
        ],
    );
    // `dear` is dearer and, by its fresh adverts, three quarters busy: what `full`'s
    // stale advert promises outranks it by more than loopback RTTs under load or a
    // few good results can move the scores.
    let dear = Node::start(
        Some(&s),
        &[
            ("HANZO_NETWORK_PRICE_PER_JOB", "1000"),
            ("HANZO_COMPUTE_RESOURCES_MAX_CONCURRENT_JOBS", "4"),
        ],
    );
    s.wait_for_peers(&[&full, &dear]);
    // Fill `full`'s only slot with a job of its own, and three of `dear`'s four.
    let sleeper = full.server.module(&sleep_wat(20));
    let busy = full.submit(&json!({"runtime": "wasm", "source": sleeper}));
    full.server
        .wait_status(&busy, |st| st == "running", Duration::from_secs(30));
    let dear_sleeper = dear.server.module(&sleep_wat(20));
    for _ in 0..3 {
        // Small limits: slots, not the machine's cores, are what fills up.
        let id = dear.submit(&json!({"runtime": "wasm", "source": dear_sleeper, "limits": {"cpu_shares": 64, "memory_mb": 16}}));
        dear.server
            .wait_status(&id, |st| st == "running", Duration::from_secs(30));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s
        .peers()
        .iter()
        .any(|p| p["peer_id"] == dear.peer_id.as_str() && p["resources"]["free"]["slots"] == json!(1))
    {
        assert!(
            Instant::now() < deadline,
            "no advert of dear with one free slot: {:#?}",
            s.peers()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let source = s.server.module(CAT);
    // The ranking orders `full` first on price, but measured latency moves scores too
    // (loopback RTTs vary with the machine's load): a few jobs, until one was offered to
    // `full` first. Every one of them must end on `dear`.
    let mut seen = None;
    for _ in 0..10 {
        let j = s.execute(
            &json!({"runtime": "wasm", "source": source, "params": {"ok": true}, "placement": "remote"}),
        );
        assert_eq!(j["status"], "succeeded", "{j}");
        assert_eq!(j["executed_by"], dear.peer_id.as_str(), "{j}");
        let id = j["id"].as_str().unwrap().to_string();
        if let Some(line) = s
            .log()
            .lines()
            .find(|l| l.contains("offer declined") && l.contains(&full.peer_id) && l.contains(&id))
        {
            seen = Some(line.to_string());
            break;
        }
    }
    let declined = seen.unwrap_or_else(|| panic!("the full peer was never tried first:\n{}", s.log()));
    assert!(declined.contains("no free capacity"), "{declined}");
}

/// Jobs for one peer beyond what it takes at once wait for a slot there (it declines
/// them as busy), as jobs wait in a node's own queue; they are not unschedulable.
/// A hostile peer advertises a large, free node and declines every offer as `busy`
/// (CONTRACTS §7; docs/security.md). While it is the only candidate, the job waits,
/// offering it again after pauses that grow (not in a loop); as soon as an honest peer
/// is known, the next round places the job there. A lying `busy` delays a job at most
/// until another candidate appears, within the job's deadline; it never holds it.
#[test]
fn a_peer_that_always_says_busy_holds_no_job_hostage() {
    use hanzo_network::{Advert, Capacity, Ceilings, Inbound, JobRequest, JobResponse};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let a = Node::start(None, &[]);
    let rt = peer_runtime();
    let seed = [47; 32];
    let liar = hanzo_network_peer_id_of(&seed);
    let offers = Arc::new(AtomicU32::new(0));
    let counted = offers.clone();
    let _liar_client = rt.block_on(async {
        let huge = Capacity {
            slots: 1000,
            memory_mb: 1 << 20,
            cpu_millicores: 64_000,
        };
        let advert = move || Advert {
            node_version: "liar".into(),
            runtimes: vec!["wasm".into()],
            capacity: huge,
            free: huge,
            ceilings: Ceilings {
                memory_mb: 1 << 20,
                timeout_ms: 3_600_000,
                fuel: u64::MAX / 2,
                disk_mb: 1 << 20,
                output_bytes: 1 << 30,
            },
            ..Advert::empty()
        };
        let (client, mut channels) = raw_peer_advertising(&a, seed, Arc::new(advert)).await;
        let responder = client.clone();
        tokio::spawn(async move {
            while let Some(inbound) = channels.inbound.recv().await {
                if let Inbound::Job { request, channel, .. } = inbound {
                    let response = match request {
                        JobRequest::Offer(_) => {
                            counted.fetch_add(1, Ordering::SeqCst);
                            JobResponse::Declined {
                                reason: "busy right now, try me again".into(),
                                busy: true,
                            }
                        }
                        JobRequest::Await { execution_id, .. } | JobRequest::Cancel { execution_id } => {
                            JobResponse::Unknown { execution_id }
                        }
                        JobRequest::Settle(_) => JobResponse::Settled { recorded: 0 },
                    };
                    responder.respond_job(channel, response).await;
                }
            }
        });
        client
    });
    // a has the liar's advert: the liar is its only candidate.
    a.wait_for_adverts(&[&liar], String::new);
    let source = a.server.module(CAT);
    let id =
        a.submit(&json!({"runtime": "wasm", "source": source, "params": {"n": 1}, "placement": "remote"}));
    // The job waits for the liar's "slot": offered again and again, not failed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while offers.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "the liar was not offered the job again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let j = a.server.job(&id);
    assert!(
        !matches!(j["status"].as_str(), Some("succeeded" | "failed" | "cancelled")),
        "{j}"
    );
    // An honest peer appears: the job goes there.
    let b = Node::start(Some(&a), &[]);
    let waited = Instant::now();
    let j = a.server.wait_terminal(&id);
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!(j["executed_by"], b.peer_id.as_str(), "{j}");
    assert_eq!(j["output"], json!({"n": 1}), "{j}");
    // Declines leave no attempt: the one placement is b's.
    assert_eq!(j["placements"].as_array().unwrap().len(), 1, "{j}");
    // Pauses of 50 ms doubling to 1 s between rounds: a few offers a second at most.
    let offered = offers.load(Ordering::SeqCst) as f64;
    let bound = 8.0 + 2.0 * (waited.elapsed().as_secs_f64() + 3.0);
    assert!(
        offered <= bound,
        "the liar was offered the job {offered} times (at most {bound})"
    );
    drop(rt);
}

/// A job running on a peer, cancelled on the node it was submitted to: the peer is
/// told to stop, the job ends `cancelled`, and its attempt is recorded `cancelled`.
#[test]
fn a_job_cancelled_on_its_submitter_stops_on_the_peer() {
    let a = Node::start(None, &[]);
    let b = Node::start(Some(&a), &[]);
    a.wait_for_peers(&[&b]);
    let source = a.server.module(&sleep_wat(30));
    let id = a.submit(&json!({"runtime": "wasm", "source": source, "placement": {"peer": b.peer_id}}));
    a.server
        .wait_status(&id, |st| st == "running", Duration::from_secs(30));
    let r = a.server.req("POST", &format!("/v1/jobs/{id}/cancel"), b"");
    assert_eq!(r.status, 202, "{}", r.text());
    let j = a.server.wait_terminal(&id);
    assert_eq!(j["status"], "cancelled", "{j}");
    let p = j["placements"].as_array().unwrap();
    assert_eq!(p.len(), 1, "{j}");
    assert_eq!(p[0]["peer_id"], b.peer_id.as_str(), "{j}");
    assert_eq!(p[0]["outcome"], "cancelled", "{j}");
    // b's copy stopped too, long before its 30 s.
    let theirs = b.server.req("GET", "/v1/jobs", b"").json();
    let theirs = theirs["jobs"].as_array().unwrap();
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    let theirs = b.server.wait_terminal(theirs[0]["id"].as_str().unwrap());
    assert_eq!(theirs["status"], "cancelled", "{theirs}");
}

#[test]
fn jobs_for_a_full_peer_wait_for_its_slot() {
    let a = Node::start(None, &[]);
    let b = Node::start(Some(&a), &[("HANZO_NETWORK_MAX_REMOTE_JOBS_PER_PEER", "1")]);
    a.wait_for_peers(&[&b]);
    let source = a.server.module(&sleep_wat(1));
    let spec = json!({"runtime": "wasm", "source": source, "placement": {"peer": b.peer_id}});
    let ids: Vec<String> = (0..3).map(|_| a.submit(&spec)).collect();
    for id in &ids {
        let j = a.server.wait_terminal(id);
        assert_eq!(j["status"], "succeeded", "{j}");
        assert_eq!(j["executed_by"], b.peer_id.as_str(), "{j}");
        assert_eq!(j["output"], json!({"slept": 1}), "{j}");
        // Offered until taken, then placed once.
        assert_eq!(j["placements"].as_array().unwrap().len(), 1, "{j}");
    }
    // b takes one at a time: the others were declined as busy meanwhile.
    let log = a.log();
    assert!(
        log.lines()
            .any(|l| l.contains("offer declined") && l.contains("max_remote_jobs_per_peer")),
        "no job was declined as busy:\n{log}"
    );
}

#[test]
fn the_job_of_a_killed_executor_finishes_on_another_peer() {
    let mut nodes = network(3, &[]);
    let source = nodes[0].server.module(&sleep_wat(4));
    let id =
        nodes[0].submit(&json!({"runtime": "wasm", "source": source, "placement": "remote", "retries": 1}));
    let running = nodes[0]
        .server
        .wait_status(&id, |st| st == "running", Duration::from_secs(30));
    let first = running["executed_by"].as_str().unwrap().to_string();
    let victim = nodes.iter().position(|n| n.peer_id == first).unwrap();
    nodes[victim].kill();
    let killed = Instant::now();
    let j = nodes[0].server.wait_status(
        &id,
        |st| matches!(st, "succeeded" | "failed" | "cancelled"),
        Duration::from_secs(90),
    );
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!(j["output"], json!({"slept": 4}));
    let p = j["placements"].as_array().unwrap();
    assert_eq!(p.len(), 2, "{j}");
    assert_eq!(p[0]["peer_id"], first.as_str());
    assert_eq!(p[0]["outcome"], "lost", "{j}");
    assert!(p[0]["reason"].as_str().unwrap().contains("no answer"), "{j}");
    assert_eq!(p[1]["outcome"], "succeeded", "{j}");
    assert_ne!(p[1]["peer_id"], first.as_str());
    assert_eq!(j["executed_by"], p[1]["peer_id"]);
    assert_eq!(
        j["receipt"]["node_id"],
        nodes
            .iter()
            .find(|n| n.peer_id == p[1]["peer_id"])
            .unwrap()
            .node_id
            .as_str()
    );
    // Re-placed within the job's own run time plus the loss detection (3 s).
    assert!(killed.elapsed() < Duration::from_secs(60));
    // Without retries, the same loss fails the job as unschedulable, naming the loss.
    let spare = nodes
        .iter()
        .position(|n| n.peer_id != first && n.peer_id != nodes[0].peer_id)
        .unwrap();
    let id = nodes[0]
        .submit(&json!({"runtime": "wasm", "source": source, "placement": {"peer": nodes[spare].peer_id}}));
    nodes[0]
        .server
        .wait_status(&id, |st| st == "running", Duration::from_secs(30));
    nodes[spare].kill();
    let j = nodes[0].server.wait_terminal(&id);
    assert_eq!(j["error"]["code"], "unschedulable", "{j}");
    assert!(j["error"]["message"].as_str().unwrap().contains("lost"), "{j}");
    assert_eq!(j["placements"][0]["outcome"], "lost", "{j}");
}

#[test]
fn a_killed_submitter_still_records_the_result_after_its_restart() {
    // Priced, so that the charge the restarted submitter records can be checked.
    let mut nodes = network(2, &[("HANZO_NETWORK_PRICE_PER_JOB", "7")]);
    let source = nodes[0].server.module(&sleep_wat(4));
    let id = nodes[0].submit(&json!({"runtime": "wasm", "source": source, "placement": "remote"}));
    let running = nodes[0]
        .server
        .wait_status(&id, |st| st == "running", Duration::from_secs(30));
    assert_eq!(running["executed_by"], nodes[1].peer_id.as_str());
    nodes[0].kill();
    nodes[0].restart();
    let j = nodes[0].server.wait_terminal(&id);
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!(j["output"], json!({"slept": 4}));
    assert_eq!(j["attempts"], 1, "the job ran once: {j}");
    assert_eq!(j["placements"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(j["receipt"]["node_id"], nodes[1].node_id.as_str());
    assert!(nodes[0].log().contains("re-attaching"), "{}", nodes[0].log());
    // The charge: at the price the executor advertises (the submitter's record of the
    // accepted price died with it), owed by the submitter and, once its signed
    // acceptance reaches the executor, earned there.
    let owed = |n: &Node, field: &str, peer: &str| {
        let r = n.server.req("GET", "/v1/ledger", b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["peer_id"] == peer)
            .map(|a| a[field].as_u64().unwrap())
            // The executor's account appears when the submitter's acceptance reaches it.
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while owed(&nodes[0], "owed", &nodes[1].peer_id) != 7 || owed(&nodes[1], "earned", &nodes[0].peer_id) != 7
    {
        assert!(Instant::now() < deadline, "the executor never charged the job");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_module_whose_bytes_do_not_match_its_hash_is_refused() {
    // A lying submitter, built from the node's own network crate: it offers a job for
    // one module and serves other bytes.
    let node = Node::start(None, &[]);
    let rt = peer_runtime();
    rt.block_on(async {
        use hanzo_network::{ChunkResponse, Inbound, JobResponse};
        let (liar, mut channels) = raw_peer(&node, [42; 32]).await;
        let sha = hanzo_wasm_runtime::module_digest(CAT.as_bytes()).unwrap();
        let other = sleep_wat(0).into_bytes();
        let served = other.clone();
        let responder = liar.clone();
        tokio::spawn(async move {
            while let Some(req) = channels.inbound.recv().await {
                if let Inbound::Chunk { channel, .. } = req {
                    let r = ChunkResponse::Chunk {
                        total: served.len() as u64,
                        bytes: served.clone(),
                    };
                    responder.respond_chunk(channel, r).await;
                }
            }
        });
        let peer: hanzo_network::PeerId = node.peer_id.parse().unwrap();
        let offer = wasm_offer("x-liar-1", &sha, json!({"a": 1}), other.len());
        let deadline = Instant::now() + Duration::from_secs(30);
        let accepted = offer_until_answered(&liar, peer, &offer, deadline).await;
        assert!(matches!(accepted, JobResponse::Accepted { .. }), "{accepted:?}");
        let result = await_result(&liar, peer, "x-liar-1", deadline).await;
        assert_eq!(result.status, "failed");
        let (code, message) = result.error.clone().unwrap();
        assert_eq!(code, "invalid_input");
        assert!(
            message.contains("do not match") || message.contains("hash to"),
            "{message}"
        );
        assert!(result.receipt.is_none());
        // Nothing of the lie was kept.
        assert!(!node.home.run(&["module", "ls", "--json"]).stdout.contains(&sha));
        // The node still serves, and lowered the liar's reputation (it is listed
        // while connected, though it never sent an advert).
        assert_eq!(node.server.req("GET", "/healthz", b"").status, 200);
        let liar_id = liar.peer_id().to_string();
        let peers = node.peers();
        let p = peers
            .iter()
            .find(|p| p["peer_id"] == liar_id.as_str())
            .unwrap_or_else(|| panic!("the liar is not listed: {peers:#?}"));
        assert!(p["reputation"].as_f64().unwrap() < 0.5, "{p}");
    });
}

#[test]
fn an_execution_id_is_answered_only_to_the_peer_that_offered_it() {
    // Ids are no secret: a peer naming another's execution id must neither be told
    // it was accepted nor take the id from its owner.
    let node = Node::start(None, &[]);
    let rt = peer_runtime();
    rt.block_on(async {
        use hanzo_network::JobResponse;
        let (owner, _owner_channels) = raw_peer(&node, [43; 32]).await;
        let (other, _other_channels) = raw_peer(&node, [44; 32]).await;
        let peer: hanzo_network::PeerId = node.peer_id.parse().unwrap();
        let sha = hanzo_wasm_runtime::module_digest(CAT.as_bytes()).unwrap();
        let offer = wasm_offer("x-claimed-1", &sha, json!({}), CAT.len());
        let deadline = Instant::now() + Duration::from_secs(30);
        let first = offer_until_answered(&owner, peer, &offer, deadline).await;
        assert!(matches!(first, JobResponse::Accepted { .. }), "{first:?}");
        let stolen = offer_until_answered(&other, peer, &offer, deadline).await;
        assert!(
            matches!(&stolen, JobResponse::Declined { reason, busy: false } if reason.contains("another peer")),
            "{stolen:?}"
        );
        let again = offer_until_answered(&owner, peer, &offer, deadline).await;
        assert!(matches!(again, JobResponse::Accepted { .. }), "{again:?}");
    });
}

/// A node in a network namespace of the test's own (a veth pair to the host, test
/// addresses), for partitions: the link is cut and restored with `ip link`.
struct Island {
    host: hanzo_testkit::nethost::TestHost,
    home: Home,
    child: Option<std::process::Child>,
}

impl Island {
    /// A test host, with no node yet.
    fn new() -> Island {
        Island {
            host: hanzo_testkit::nethost::TestHost::new(),
            home: Home::new(),
            child: None,
        }
    }

    /// Starts `hanzo-node serve` inside the test host, listening for peers on the test
    /// host's address and joining through `bootstrap`.
    fn start(&mut self, bootstrap: &str) {
        let log = std::fs::File::create(self.home.path("node.log")).unwrap();
        let mut cmd = self.host.command(env!("CARGO_BIN_EXE_hanzo-node"));
        cmd.arg("serve")
            .env("HANZO_HOME", self.home.path("home"))
            .env("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm")
            .env("HANZO_NODE_API_LISTEN", "127.0.0.1:3690")
            .env("HANZO_NETWORK_ENABLED", "true")
            .env("HANZO_NETWORK_MDNS", "false")
            .env("HANZO_NETWORK_LISTEN", format!("/ip4/{}/tcp/0", self.host.addr))
            .env("HANZO_NETWORK_BOOTSTRAP", bootstrap)
            .env("HANZO_NETWORK_ADVERT_INTERVAL_MS", "300")
            .env("HANZO_NETWORK_PEER_TIMEOUT_MS", "5000")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        self.child = Some(cmd.spawn().unwrap());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.path("node.log")).unwrap_or_default()
    }

    /// `hanzo-node <args>` inside the test host, against the node there.
    fn run(&self, args: &[&str]) -> String {
        let out = self
            .host
            .command(env!("CARGO_BIN_EXE_hanzo-node"))
            .env("HANZO_HOME", self.home.path("home"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Its peer id, from its "network joined" log line.
    fn peer_id(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if let Some(id) = log
                .lines()
                .find(|l| l.contains("network joined"))
                .and_then(|l| l.split("peer_id=").nth(1))
                .and_then(|r| r.split_whitespace().next())
            {
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "the island never joined:\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Island {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_partitioned_executor_loses_its_attempt_and_is_told_to_cancel_when_the_link_is_back() {
    let mut island = Island::new();
    // The submitter listens on loopback (for `spare`) and on its own end of the link to
    // the island (a test address), nowhere else.
    let listen = format!("/ip4/127.0.0.1/tcp/0,/ip4/{}/tcp/0", island.host.host_side);
    let s = Node::start(None, &[("HANZO_NETWORK_LISTEN", &listen)]);
    let info = s.server.req("GET", "/v1/node", b"").json();
    let on_link = info["listen_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .find(|a| a.starts_with(&format!("/ip4/{}/", island.host.host_side)))
        .unwrap_or_else(|| panic!("not listening on the link: {info}"));
    // `spare` is dear, so the island (free) is tried first.
    let spare = Node::start(Some(&s), &[("HANZO_NETWORK_PRICE_PER_JOB", "1000")]);
    island.start(&on_link);
    let island_id = island.peer_id();
    s.wait_for_adverts(&[&island_id], || island.log());
    s.wait_for_peers(&[&spare]);

    let source = s.server.module(&sleep_wat(20));
    let id = s.submit(&json!({"runtime": "wasm", "source": source, "placement": "remote", "retries": 1}));
    let running = s
        .server
        .wait_status(&id, |st| st == "running", Duration::from_secs(30));
    assert_eq!(running["executed_by"], island_id.as_str(), "{running}");
    // The partition: nothing crosses, not even a reset.
    island.host.set_link(false);
    let cut = Instant::now();
    // The submitter hears no heartbeat, marks the attempt lost and places the job again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = s.job_record(&id);
        if j["placements"][0]["outcome"] == "lost" {
            break;
        }
        assert!(Instant::now() < deadline, "the attempt was never lost: {j}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let lost_after = cut.elapsed();
    // The link comes back while the island's copy still sleeps (20 s): the submitter's
    // fence tells it to stop.
    island.host.set_link(true);
    let j = s.server.wait_status(
        &id,
        |st| matches!(st, "succeeded" | "failed" | "cancelled"),
        Duration::from_secs(90),
    );
    assert_eq!(j["status"], "succeeded", "{j}");
    let p = j["placements"].as_array().unwrap();
    assert_eq!(p[0]["peer_id"], island_id.as_str());
    assert_eq!(p[0]["outcome"], "lost", "{j}");
    assert_eq!(p[1]["peer_id"], spare.peer_id.as_str(), "{j}");
    assert_eq!(j["executed_by"], spare.peer_id.as_str());
    // The island's copy ended cancelled, and nothing of it replaced what was recorded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let theirs = loop {
        let jobs: Value = serde_json::from_str(&island.run(&["job", "ls", "--json"])).unwrap();
        let row = jobs["jobs"].as_array().unwrap().first().cloned();
        if let Some(row) = row.filter(|r| r["status"] != "running" && r["status"] != "queued") {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "the island's copy never ended: {jobs}\n{}",
            island.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(theirs["status"], "cancelled", "{theirs}");
    assert_eq!(theirs["origin"]["peer_id"], s.peer_id.as_str(), "{theirs}");
    let again = s.job_record(&id);
    assert_eq!(
        again["placements"], j["placements"],
        "the record did not change after the fence"
    );
    assert_eq!(again["output"], j["output"]);
    eprintln!("lost and re-placed {lost_after:?} after the cut");
}

/// A LAN behind a NAT: a network namespace whose only way out is through the test
/// host `gw`, which masquerades it (iptables in `gw`'s own namespace). Nothing outside
/// can open a connection to it.
struct Lan {
    name: String,
    /// The LAN host's address (10.215.N.2).
    addr: String,
}

impl Lan {
    fn behind(gw: &hanzo_testkit::nethost::TestHost) -> Lan {
        let n = std::process::id() % 250;
        let name = format!("hanzo-lan-{:x}", std::process::id());
        let (inside, outside) = (format!("hzl{n}a"), format!("hzl{n}b"));
        let lan = Lan {
            name: name.clone(),
            addr: format!("10.215.{n}.2"),
        };
        let run = |args: &[&str]| {
            let out = std::process::Command::new(args[0])
                .args(&args[1..])
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let gw_ns = gw.name.as_str();
        run(&["ip", "netns", "add", &name]);
        run(&[
            "ip", "-n", gw_ns, "link", "add", &outside, "type", "veth", "peer", "name", &inside, "netns",
            &name,
        ]);
        run(&[
            "ip",
            "-n",
            gw_ns,
            "addr",
            "add",
            &format!("10.215.{n}.1/24"),
            "dev",
            &outside,
        ]);
        run(&["ip", "-n", gw_ns, "link", "set", &outside, "up"]);
        run(&[
            "ip",
            "-n",
            &name,
            "addr",
            "add",
            &format!("10.215.{n}.2/24"),
            "dev",
            &inside,
        ]);
        run(&["ip", "-n", &name, "link", "set", &inside, "up"]);
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        run(&[
            "ip",
            "-n",
            &name,
            "route",
            "add",
            "default",
            "via",
            &format!("10.215.{n}.1"),
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            gw_ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            gw_ns,
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            &format!("10.215.{n}.0/24"),
            "!",
            "-d",
            &format!("10.215.{n}.0/24"),
            "-j",
            "MASQUERADE",
        ]);
        lan
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .status();
    }
}

#[test]
fn a_node_behind_nat_learns_it_and_is_reached_through_a_relay() {
    let gw = hanzo_testkit::nethost::TestHost::new();
    let lan = Lan::behind(&gw);
    // The relay: a node on the host, on loopback and on its end of the link to `gw`.
    let listen = format!("/ip4/127.0.0.1/tcp/0,/ip4/{}/tcp/0", gw.host_side);
    let relay = Node::start(None, &[("HANZO_NETWORK_LISTEN", &listen)]);
    let info = relay.server.req("GET", "/v1/node", b"").json();
    assert!(
        ["unknown", "public", "private"].contains(&info["nat"].as_str().unwrap_or_default()),
        "{info}"
    );
    let on_link = info["listen_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .find(|a| a.starts_with(&format!("/ip4/{}/", gw.host_side)))
        .unwrap();
    // The NAT'd node, in the LAN namespace.
    let home = Home::new();
    let log_path = home.path("node.log");
    let mut cmd = std::process::Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &lan.name,
        env!("CARGO_BIN_EXE_hanzo-node"),
        "serve",
    ])
    .env_clear()
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    .env("HANZO_HOME", home.path("home"))
    .env("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm")
    .env("HANZO_NODE_API_LISTEN", "127.0.0.1:3690")
    .env("HANZO_NETWORK_ENABLED", "true")
    .env("HANZO_NETWORK_MDNS", "false")
    .env("HANZO_NETWORK_LISTEN", format!("/ip4/{}/tcp/0", lan.addr))
    .env("HANZO_NETWORK_BOOTSTRAP", &on_link)
    .env("HANZO_NETWORK_ADVERT_INTERVAL_MS", "300")
    .env("HANZO_NETWORK_PEER_TIMEOUT_MS", "5000")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()));
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _natted = Kill(cmd.spawn().unwrap());
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // It learns from AutoNAT that it is private, and takes a slot at the relay.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(log().contains("nat=\"private\"") || log().contains("nat=private"))
        || !log().contains("reachable through a relay")
    {
        assert!(
            Instant::now() < deadline,
            "the node behind NAT never took a relay slot:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let natted_id = log()
        .lines()
        .find(|l| l.contains("network joined"))
        .and_then(|l| l.split("peer_id=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    // A node that can reach the relay only (loopback), and the NAT'd node never (its
    // LAN has no route in): the advert carries the relayed address.
    let far = Node::start(Some(&relay), &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let advertised = loop {
        let peers = far.peers();
        let relayed = |p: &&Value| {
            p["peer_id"] == natted_id.as_str()
                && p["runtimes"] == json!(["wasm"])
                && p["addrs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a.as_str().unwrap().contains("/p2p-circuit"))
        };
        if let Some(p) = peers.iter().find(relayed) {
            break p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no relayed address for the NAT'd node: {peers:#?}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let source = far.server.module(CAT);
    let j = far.execute(&json!({"runtime": "wasm", "source": source, "params": {"through": "the relay"}, "placement": {"peer": natted_id}}));
    assert_eq!(j["status"], "succeeded", "{j}\n{advertised}\n{}", log());
    assert_eq!(j["output"], json!({"through": "the relay"}));
    assert_eq!(j["executed_by"], natted_id.as_str());
    assert_eq!(j["receipt"]["node_id"], advertised["node_id"], "{j}");
}

#[test]
fn single_file_python_and_deno_tools_travel_by_hash() {
    let runtimes = [
        ("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm,deno,python"),
        ("HANZO_NETWORK_OFFER_RUNTIMES", "wasm,deno,python"),
    ];
    let a = Node::start(None, &runtimes);
    let b = Node::start(Some(&a), &runtimes);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a
        .peers()
        .iter()
        .any(|p| p["peer_id"] == b.peer_id.as_str() && p["runtimes"] == json!(["wasm", "deno", "python"]))
    {
        assert!(
            Instant::now() < deadline,
            "b never offered the script runtimes: {:?}",
            a.peers()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let py = "def run(params):\n    return {\"sum\": params[\"a\"] + params[\"b\"], \"by\": \"python\"}\n";
    let ts = "export function run(params: { a: number; b: number }) {\n  return { sum: params.a + params.b, by: \"deno\" };\n}\n";
    for (runtime, name, text) in [("python", "add.py", py), ("deno", "add.ts", ts)] {
        let path = a.home.file(name, text);
        let j = a.execute(&json!({"runtime": runtime, "source": path, "params": {"a": 2, "b": 3}, "placement": {"peer": b.peer_id}}));
        assert_eq!(j["status"], "succeeded", "{runtime}: {j}");
        assert_eq!(j["output"], json!({"sum": 5, "by": runtime}));
        assert_eq!(j["executed_by"], b.peer_id.as_str());
        assert_eq!(j["receipt"]["node_id"], b.node_id.as_str());
        // The receipt names the script's bytes: what travelled is what ran.
        let sha = hanzo_compute::receipt::sha256_hex(text.as_bytes());
        assert_eq!(j["receipt"]["code_hash"], sha.as_str(), "{j}");
    }
    // A script with local imports does not travel whole; one named without its
    // extension cannot be told apart: refused before anything is offered.
    let path = a.home.file("noext", py);
    let j = a.execute(&json!({"runtime": "python", "source": path, "placement": "remote"}));
    assert_eq!(j["status"], "failed", "{j}");
    assert!(
        j["error"]["message"].as_str().unwrap().contains("extension"),
        "{j}"
    );
}

/// A locally built image (nothing is pulled) other than the busybox fixture: the
/// "different digest" an offer can pin.
fn network_other_image() -> &'static str {
    use hanzo_testkit::docker::*;
    const IMAGE: &str = "hanzo-test/network-other:latest";
    let fingerprint = sha256_hex(&[FIXTURE_VERSION.as_bytes(), b"network-other"]);
    ensure_fixture(IMAGE, &fingerprint, |fp| {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("rootfs");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("marker"), "not busybox").unwrap();
        import_dir(&dir, IMAGE, &[format!("LABEL {FIXTURE_LABEL}={fp}")]);
    });
    IMAGE
}

/// The id (hex, as receipts carry it) of a local image.
fn image_id(image: &str) -> String {
    let id = hanzo_testkit::docker::docker(&["image", "inspect", "--format", "{{.Id}}", image]);
    id.strip_prefix("sha256:").unwrap_or(&id).to_string()
}

/// Docker enabled and offered to peers; nothing is ever pulled.
const DOCKER_NODE: [(&str, &str); 3] = [
    ("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm,docker"),
    ("HANZO_NETWORK_OFFER_RUNTIMES", "wasm,docker"),
    ("HANZO_COMPUTE_DOCKER_PULL_POLICY", "never"),
];

#[test]
fn a_docker_job_travels_by_reference_pinned_to_its_image_id() {
    use hanzo_testkit::docker::{SCRIPT_VAR, busybox_image};
    let image = busybox_image();
    let id = image_id(image);
    let a = Node::start(None, &DOCKER_NODE);
    let b = Node::start(Some(&a), &DOCKER_NODE);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a
        .peers()
        .iter()
        .any(|p| p["peer_id"] == b.peer_id.as_str() && p["runtimes"] == json!(["wasm", "docker"]))
    {
        assert!(
            Instant::now() < deadline,
            "b never offered docker: {:?}",
            a.peers()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let j = a.execute(&json!({
        "runtime": "docker", "source": image, "env": {SCRIPT_VAR: "cat"},
        "params": {"a": 1}, "placement": {"peer": b.peer_id},
    }));
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!(j["output"], json!({"a": 1}));
    assert_eq!(j["executed_by"], b.peer_id.as_str(), "{j}");
    assert_eq!(j["receipt"]["node_id"], b.node_id.as_str(), "{j}");
    // The receipt names the image the submitter resolved the reference to.
    assert_eq!(j["receipt"]["code_hash"], id.as_str(), "{j}");
    assert_eq!(j["placements"][0]["outcome"], "succeeded", "{j}");
    // b ran it as a peer's job, by the pinned id.
    let jobs = b.server.req("GET", "/v1/jobs", b"").json();
    let ran = jobs["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("{jobs}"))
        .iter()
        .find(|r| r["origin"]["peer_id"] == a.peer_id.as_str())
        .unwrap_or_else(|| panic!("b has no job of a's: {jobs}"))
        .clone();
    assert_eq!(ran["spec"]["source"], format!("sha256:{id}"), "{ran}");

    // A reference the submitter cannot resolve is the job's error, before any offer.
    let j = a.execute(&json!({
        "runtime": "docker", "source": "hanzo-test/never-built:latest", "placement": "remote",
    }));
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["error"]["code"], "invalid_input", "{j}");
    assert_eq!(j["placements"], json!([]), "{j}");
}

#[test]
fn an_executor_refuses_a_docker_offer_pinned_to_another_image_or_to_none() {
    use hanzo_testkit::docker::{SCRIPT_VAR, busybox_image};
    let image = busybox_image();
    let id = image_id(image);
    let other = image_id(network_other_image());
    assert_ne!(id, other);
    let node = Node::start(None, &DOCKER_NODE);
    let rt = peer_runtime();
    rt.block_on(async {
        use hanzo_network::{JobRequest, JobResponse, Offer};
        let (peer_client, _channels) = raw_peer(&node, [43; 32]).await;
        let peer: hanzo_network::PeerId = node.peer_id.parse().unwrap();
        let mut spec = hanzo_compute::JobSpec::new(hanzo_compute::RuntimeKind::Docker, image);
        spec.params = json!({"b": 2});
        spec.env.insert(SCRIPT_VAR.into(), "cat".into());
        let offer = |n: u32, image_id: Option<&str>| Offer {
            execution_id: format!("x-docker-{n}"),
            spec: serde_json::to_string(&spec).unwrap(),
            code_bytes: 0,
            deadline_ms: 30_000,
            file_ext: None,
            image_id: image_id.map(str::to_string),
            wait_ms: 0,
            attempt: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let ask = |o: Offer| {
            let c = peer_client.clone();
            async move {
                loop {
                    match c.job(peer, JobRequest::Offer(o.clone())).await {
                        Ok(r) => break r,
                        Err(e) => {
                            assert!(Instant::now() < deadline, "{e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        };
        // The reference is busybox here; the offer pins another image.
        match ask(offer(1, Some(&other))).await {
            JobResponse::Declined { reason, .. } => {
                assert!(
                    reason.contains(&format!("is sha256:{id} here"))
                        && reason.contains(&format!("the job pins sha256:{other}")),
                    "{reason}"
                );
            }
            r => panic!("a wrong pin was not declined: {r:?}"),
        }
        // No pin at all.
        match ask(offer(2, None)).await {
            JobResponse::Declined { reason, .. } => {
                assert!(reason.contains("must pin its image id"), "{reason}")
            }
            r => panic!("an offer without image_id was not declined: {r:?}"),
        }
        // The right pin runs, and its receipt names the pinned image.
        let r = ask(offer(3, Some(&id))).await;
        assert!(matches!(r, JobResponse::Accepted { .. }), "{r:?}");
        let result = await_result(&peer_client, peer, "x-docker-3", deadline).await;
        assert_eq!(result.status, "succeeded", "{result:?}");
        assert_eq!(result.output.as_deref(), Some(r#"{"b":2}"#));
        let receipt: Value = serde_json::from_str(result.receipt.as_deref().unwrap()).unwrap();
        assert_eq!(receipt["code_hash"], id.as_str(), "{receipt}");
    });
    // Only the pinned offer became a job there.
    let jobs = node.server.req("GET", "/v1/jobs", b"").json();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1, "{jobs}");
}

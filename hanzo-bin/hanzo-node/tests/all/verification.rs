//! Verified jobs (CONTRACTS §8) across real `hanzo-node serve` processes on loopback:
//! honest nodes agreeing, randomness caught outside the deterministic profile, too few
//! nodes, a lying node (the `failpoints` build with `corrupt_output`) out-voted and
//! named, and nodes that drop their results or stall, replaced.

use crate::network::Node;
use crate::server::CAT;
use crate::util::failpoints_bin;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

use hanzo_testkit::RANDOM_WAT;

/// n1, then the others bootstrapped from it (`liars` of them run the failpoints
/// build with `FAILPOINTS`), all knowing each other.
fn network(honest: usize, liars: &[&str], extra: &[(&str, &str)]) -> Vec<Node> {
    let mut nodes = vec![Node::start(None, extra)];
    for _ in 1..honest {
        let n = Node::start(Some(&nodes[0]), extra);
        nodes.push(n);
    }
    let bin = (!liars.is_empty()).then(failpoints_bin);
    for f in liars {
        let mut env: Vec<(&str, &str)> = extra.to_vec();
        env.push(("FAILPOINTS", f));
        let n = Node::start_bin(bin.as_deref().unwrap(), Some(&nodes[0]), &env);
        nodes.push(n);
    }
    for n in &nodes {
        let others: Vec<&Node> = nodes.iter().filter(|o| o.peer_id != n.peer_id).collect();
        n.wait_for_peers(&others);
    }
    nodes
}

fn verified(source: &str, min_peers: u32, deterministic: bool) -> Value {
    json!({
        "runtime": "wasm",
        "source": source,
        "params": {"n": 1},
        "deterministic": deterministic,
        "verification": {"strategy": "redundant", "min_peers": min_peers},
    })
}

/// `receipt verify` of one receipt, pinned to `node_id`, with `--output` when given.
fn verify_receipt(n: &Node, receipt: &Value, node_id: &str, output: Option<&Value>) -> crate::util::Run {
    let path = n.home.file(
        &format!("receipt-{}.json", &node_id[..8]),
        &serde_json::to_string_pretty(receipt).unwrap(),
    );
    let mut args = vec![
        "receipt".to_string(),
        "verify".into(),
        path,
        "--node-id".into(),
        node_id.into(),
    ];
    if let Some(o) = output {
        args.push("--output".into());
        args.push(o.to_string());
    }
    n.home.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn three_honest_nodes_agree_in_the_deterministic_profile() {
    let nodes = network(3, &[], &[]);
    let a = &nodes[0];
    let source = a.home.file("random.wat", RANDOM_WAT);
    let j = a.execute(&verified(&source, 3, true));
    assert_eq!(j["status"], "succeeded", "{j:#}");
    let v = &j["verification"];
    assert_eq!(v["strategy"], "redundant", "{v:#}");
    assert_eq!(v["verdict"], "agreed", "{v:#}");
    assert_eq!(v["dissenters"], json!([]));
    let receipts = v["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 3, "{v:#}");
    // Three keys, one output hash, one fuel figure, one context, one nonce.
    let distinct = |f: &dyn Fn(&Value) -> Value| {
        receipts
            .iter()
            .map(|r| f(r).to_string())
            .collect::<HashSet<_>>()
            .len()
    };
    assert_eq!(distinct(&|r| r["node_id"].clone()), 3);
    assert_eq!(distinct(&|r| r["output_hash"].clone()), 1);
    assert_eq!(distinct(&|r| r["usage"]["fuel_consumed"].clone()), 1);
    assert_eq!(distinct(&|r| r["context_hash"].clone()), 1);
    assert_eq!(distinct(&|r| r["nonce"].clone()), 1);
    assert_eq!(receipts[0]["nonce"], v["nonce"]);
    let ids: HashSet<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
    for r in receipts {
        let node = r["node_id"].as_str().unwrap();
        assert!(ids.contains(node), "a receipt of a node not in the network: {r}");
        let run = verify_receipt(a, r, node, Some(&j["output"]));
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    // The job's own receipt is one of them, and the job's record says who ran it.
    assert!(receipts.contains(&j["receipt"]), "{j:#}");
    let placements = j["placements"].as_array().unwrap();
    assert_eq!(placements.len(), 3, "{j:#}");
    assert!(placements.iter().all(|p| p["outcome"] == "succeeded"), "{j:#}");
    assert!(
        placements.iter().any(|p| p["peer_id"] == a.peer_id.as_str()),
        "the submitter counts as one node: {j:#}"
    );
    // The stored spec says where it could run: `local` widened to `any`.
    assert_eq!(j["spec"]["placement"], "any", "{j:#}");
}

#[test]
fn randomness_is_caught_outside_the_deterministic_profile_and_agrees_inside_it() {
    let nodes = network(3, &[], &[]);
    let a = &nodes[0];
    let source = a.home.file("random.wat", RANDOM_WAT);
    let j = a.execute(&verified(&source, 3, false));
    assert_eq!(j["status"], "failed", "{j:#}");
    assert_eq!(j["error"]["code"], "verification_failed", "{j:#}");
    let v = &j["verification"];
    // Three different outputs, and no fourth node to break the tie.
    assert_eq!(v["verdict"], "disagreed", "{v:#}");
    assert_eq!(
        v["receipts"].as_array().unwrap().len(),
        3,
        "every receipt is kept: {v:#}"
    );
    assert!(
        j["error"]["message"].as_str().unwrap().contains("disagreed"),
        "{j:#}"
    );
    let j = a.execute(&verified(&source, 3, true));
    assert_eq!(j["verification"]["verdict"], "agreed", "{j:#}");
}

#[test]
fn more_nodes_asked_than_exist_runs_nothing() {
    let nodes = network(3, &[], &[]);
    let a = &nodes[0];
    let j = a.execute(&verified(&a.home.file("cat.wat", CAT), 5, true));
    assert_eq!(j["status"], "failed", "{j:#}");
    assert_eq!(j["error"]["code"], "verification_failed", "{j:#}");
    assert_eq!(j["verification"]["verdict"], "insufficient_peers", "{j:#}");
    assert_eq!(j["placements"], json!([]), "nothing ran: {j:#}");
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("insufficient_peers"),
        "{j:#}"
    );
}

#[test]
fn a_lying_node_is_outvoted_named_and_no_longer_chosen() {
    // Priced, so that what each node earns and is owed can be checked.
    let nodes = network(
        3,
        &["corrupt_output=return"],
        &[("HANZO_NETWORK_PRICE_PER_JOB", "5")],
    );
    let (a, liar) = (&nodes[0], &nodes[3]);
    let info = liar.server.req("GET", "/v1/node", b"").json();
    assert_eq!(info["failpoints"], true, "{info}");
    let source = a.home.file("random.wat", RANDOM_WAT);
    let j = a.execute(&verified(&source, 4, true));
    assert_eq!(j["status"], "succeeded", "{j:#}");
    let v = &j["verification"];
    assert_eq!(v["verdict"], "majority", "{v:#}");
    assert_eq!(v["dissenters"], json!([liar.peer_id]), "{v:#}");
    let receipts = v["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 4, "{v:#}");
    // The output taken is the honest one.
    assert!(j["output"]["r"].is_string(), "{j:#}");
    // The lie is signed: its receipt verifies as the liar's, and not against the
    // majority's output.
    let lie = receipts
        .iter()
        .find(|r| r["node_id"] == liar.node_id.as_str())
        .unwrap();
    assert_eq!(verify_receipt(a, lie, &liar.node_id, None).code, 0);
    assert_eq!(verify_receipt(a, lie, &liar.node_id, Some(&j["output"])).code, 1);
    let row = j["placements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == liar.peer_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["outcome"], "failed", "{j:#}");
    assert!(row["reason"].as_str().unwrap().contains("dissented"), "{row}");

    // The billing records: one per agreeing peer (this node does not bill itself),
    // each the peer's receipt counter-signed by this node, verifiable by anyone.
    // Stored with the attempt when the settlement's batch goes (within 50 ms).
    let id = j["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let records = loop {
        let r = a.server.req("GET", &format!("/v1/jobs/{id}/billing"), b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let records = r.json()["records"].as_array().unwrap().clone();
        if records.len() >= 2 || std::time::Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(records.len(), 2, "{records:#?}");
    let b = &nodes[1];
    let record_b = records
        .iter()
        .find(|x| x["receipt"]["node_id"] == b.node_id.as_str())
        .expect("a billing record of b")
        .clone();
    assert_eq!(record_b["acceptance"]["submitter"], a.node_id.as_str());
    assert_eq!(record_b["acceptance"]["verdict"], "majority");
    assert_eq!(record_b["acceptance"]["amount"], 5);
    let path = a.home.file("billing.json", &record_b.to_string());
    let run = a.home.run(&[
        "receipt",
        "verify",
        &path,
        "--node-id",
        &b.node_id,
        "--submitter",
        &a.node_id,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("owes 5 micro-credits"), "{}", run.stdout);
    for (field, value) in [
        ("amount", json!(50)),
        (
            "price",
            json!({"per_job": 50, "per_cpu_second": 0, "per_gib_second": 0}),
        ),
    ] {
        let mut t = record_b.clone();
        t["acceptance"][field] = value;
        let p = a.home.file("tampered.json", &t.to_string());
        assert_eq!(
            a.home.run(&["receipt", "verify", &p]).code,
            1,
            "a changed {field} verified"
        );
    }
    let mut t = record_b.clone();
    t["receipt"]["output_hash"] = json!("0".repeat(64));
    let p = a.home.file("tampered.json", &t.to_string());
    assert_eq!(a.home.run(&["receipt", "verify", &p]).code, 1);
    let wrong = a
        .home
        .run(&["receipt", "verify", &path, "--submitter", &b.node_id]);
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    // Both ledgers: b earns what a owes it, once a's acceptance reached it; the liar
    // earns nothing and knows its result was rejected.
    let account = |n: &Node, peer: &str| -> Value {
        let v = n.server.req("GET", "/v1/ledger", b"").json();
        v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["peer_id"] == peer)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (owed, earned, rejected) = (
            account(a, &b.peer_id)["owed"].clone(),
            account(b, &a.peer_id)["earned"].clone(),
            account(liar, &a.peer_id)["jobs_rejected"].clone(),
        );
        if owed == 5 && earned == 5 && rejected == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never settled: a owes b {owed}, b earned {earned}, the liar had {rejected} rejected"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        account(a, &liar.peer_id)["owed"].as_u64().unwrap_or(0),
        0,
        "a dissent is owed nothing"
    );
    assert_eq!(account(liar, &a.peer_id)["earned"], 0);
    let record = |n: &Node| {
        n.peers()
            .into_iter()
            .find(|p| p["peer_id"] == liar.peer_id.as_str())
            .unwrap_or_else(|| panic!("no liar in {}'s peers", n.peer_id))
    };
    let first = record(a);
    assert_eq!(first["verification"]["dissents"], 1, "{first:#}");
    assert!(first["reputation"].as_f64().unwrap() <= 0.25, "{first:#}");

    // Caught a second time, it falls under the line and is no longer asked.
    let j = a.execute(&verified(&source, 4, true));
    assert_eq!(j["verification"]["dissenters"], json!([liar.peer_id]), "{j:#}");
    let second = record(a);
    assert_eq!(second["verification"]["dissents"], 2, "{second:#}");
    assert!(second["reputation"].as_f64().unwrap() < 0.2, "{second:#}");
    let j = a.execute(&verified(&source, 3, true));
    assert_eq!(j["verification"]["verdict"], "agreed", "{j:#}");
    let ran: Vec<&str> = j["placements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap())
        .collect();
    assert_eq!(ran.len(), 3, "{j:#}");
    assert!(
        !ran.contains(&liar.peer_id.as_str()),
        "the liar was picked again: {j:#}"
    );
    // Four nodes asked of three credible ones: the liar is named, not used.
    let j = a.execute(&verified(&source, 4, true));
    assert_eq!(j["verification"]["verdict"], "insufficient_peers", "{j:#}");
    let message = j["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&liar.peer_id) && message.contains("credibility"),
        "{message}"
    );
    // Its agreements went to the honest nodes' records.
    let b = &nodes[1];
    let rec_b = a
        .peers()
        .into_iter()
        .find(|p| p["peer_id"] == b.peer_id.as_str())
        .unwrap();
    assert_eq!(rec_b["verification"]["agreements"], 3, "{rec_b:#}");
    assert_eq!(rec_b["verification"]["dissents"], 0, "{rec_b:#}");
}

#[test]
fn swap_turned_on_while_the_node_runs_stops_its_wasm_jobs() {
    // The fail point tells the first swap check (at start: slots are then reset with
    // PAGEMAP_SCAN, which a swapped-out page would escape) there is no swap, and every
    // later one (the epoch thread's) that there is.
    let node = Node::start_bin(
        &failpoints_bin(),
        None,
        &[("FAILPOINTS", "swap_on=1*off->return")],
    );
    let spec = json!({"runtime": "wasm", "source": node.home.file("cat.wat", CAT), "params": {"a": 1}});
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let j = node.execute(&spec);
        if j["status"] != "succeeded" {
            break j;
        }
        assert_eq!(j["output"], json!({"a": 1}), "{j:#}");
        assert!(Instant::now() < deadline, "the node never noticed swap");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(refused["status"], "failed", "{refused:#}");
    assert_eq!(refused["error"]["code"], "unavailable", "{refused:#}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("swap") && message.contains("restart"),
        "{message}"
    );
    // It stays refused, says why, and the node serves on.
    assert_eq!(node.execute(&spec)["error"]["code"], "unavailable");
    let runtimes = node.server.req("GET", "/v1/runtimes", b"").json();
    let wasm = runtimes["runtimes"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["runtime"] == "wasm"))
        .unwrap_or_else(|| panic!("no wasm runtime: {runtimes:#}"))
        .clone();
    assert_eq!(wasm["available"], false, "{wasm:#}");
    assert!(wasm["detail"].as_str().unwrap().contains("swap"), "{wasm:#}");
    assert_eq!(node.server.req("GET", "/healthz", b"").status, 200);
}

#[test]
fn the_plain_build_ignores_failpoints_and_stays_honest() {
    let nodes = network(2, &[], &[]);
    let honest = Node::start(Some(&nodes[0]), &[("FAILPOINTS", "corrupt_output=return")]);
    let a = &nodes[0];
    a.wait_for_peers(&[&honest]);
    let info = honest.server.req("GET", "/v1/node", b"").json();
    assert_eq!(info["failpoints"], false, "{info}");
    assert!(honest.log().contains("FAILPOINTS is ignored"), "{}", honest.log());
    let j = a.execute(&verified(&a.home.file("cat.wat", CAT), 3, true));
    assert_eq!(j["verification"]["verdict"], "agreed", "{j:#}");
}

#[test]
fn a_bad_failpoints_setting_stops_the_failpoints_build() {
    let h = crate::util::Home::new();
    let mut cmd = h.cmd_of(&failpoints_bin());
    let out = cmd
        .args(["serve"])
        .env("HANZO_NODE_API_LISTEN", "127.0.0.1:0")
        .env("FAILPOINTS", "lie_a_little=return")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown fail point 'lie_a_little'"), "{stderr}");
}

/// The cheap node is offered first (the others ask 1000 per job), so a faulty cheap
/// node is always among the attempts; the job must still end with three agreeing
/// results, the faulty attempt replaced.
fn a_faulty_node_is_replaced(failpoint: &str, timeout_ms: u64) {
    let dear = [("HANZO_NETWORK_PRICE_PER_JOB", "1000")];
    let mut nodes = network(4, &[], &dear);
    let faulty = {
        let bin = failpoints_bin();
        Node::start_bin(&bin, Some(&nodes[0]), &[("FAILPOINTS", failpoint)])
    };
    for n in &nodes {
        n.wait_for_peers(&[&faulty]);
    }
    nodes.push(faulty);
    let (a, faulty) = (&nodes[0], &nodes[4]);
    let mut spec = verified(&a.home.file("cat.wat", CAT), 3, true);
    spec["placement"] = json!("remote");
    spec["limits"] = json!({"timeout_ms": timeout_ms});
    let started = std::time::Instant::now();
    let j = a.execute(&spec);
    assert_eq!(j["status"], "succeeded", "{j:#}\n{}", faulty.log());
    assert_eq!(j["verification"]["verdict"], "agreed", "{j:#}");
    let rows = j["placements"].as_array().unwrap();
    let row = rows
        .iter()
        .find(|p| p["peer_id"] == faulty.peer_id.as_str())
        .unwrap_or_else(|| panic!("the cheap faulty node was never offered the job: {j:#}"));
    assert_eq!(row["outcome"], "lost", "{j:#}");
    assert_eq!(
        rows.iter().filter(|p| p["outcome"] == "succeeded").count(),
        3,
        "{j:#}"
    );
    assert!(
        !rows.iter().any(|p| p["peer_id"] == a.peer_id.as_str()),
        "remote: {j:#}"
    );
    // Within the job's deadline (its timeout and a minute).
    assert!(
        started.elapsed().as_millis() < u128::from(timeout_ms) + 60_000,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_node_that_drops_its_results_is_replaced() {
    a_faulty_node_is_replaced("drop_result=return", 30_000);
}

#[test]
fn a_node_that_stalls_is_replaced_after_the_jobs_timeout_and_a_margin() {
    a_faulty_node_is_replaced("stall=return", 2_000);
}

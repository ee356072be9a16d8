//! Hostile Go packages on both builds: each is stopped, with the right error, and
//! leaves nothing running.

use crate::util::*;
use hanzo_compute::{LimitKind, Network, Support};
use hanzo_testkit::{assert_no_process, marker};
use serde_json::json;
use std::net::TcpListener;

fn spec(function: &str, native: bool, params: serde_json::Value) -> hanzo_compute::JobSpec {
    let mut s = job(&fixture()).function(function).params(params);
    s.native = native;
    s.limits.timeout_ms = 10_000;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etc_shadow_is_out_of_reach() {
    for native in [false, true] {
        let e = run("auto", spec("read", native, json!({"path": "/etc/shadow"}))).await;
        let err = e.result.unwrap_err();
        assert_eq!(err.exit_code(), 1, "native={native}: {err}");
        let logs = String::from_utf8_lossy(&e.logs);
        assert!(!logs.contains("root:"), "{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_reaches_other_hosts_only_when_granted_and_never_this_one() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || for _ in listener.incoming() {});
    for native in [false, true] {
        let e = run("auto", spec("connect", native, json!({"addr": addr}))).await;
        assert_eq!(
            e.result.as_ref().unwrap_err().exit_code(),
            1,
            "native={native}: {:?}",
            e.result
        );
    }
    // Granted, the native build reaches another host (a test host of the test's own,
    // through the sandbox's NAT) but still not this one's loopback (the wasip1 build has
    // no sockets at all).
    let mut other = hanzo_testkit::nethost::TestHost::new();
    let port = other.tcp_server("hello");
    let mut s = spec("connect", true, json!({"addr": format!("{}:{port}", other.addr)}));
    s.network = Network::Full;
    assert_eq!(run("auto", s).await.result, Ok(json!("connected")));
    let mut s = spec("connect", true, json!({"addr": addr}));
    s.network = Network::Full;
    let e = run("auto", s).await;
    assert_eq!(e.result.as_ref().unwrap_err().exit_code(), 1, "{:?}", e.result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_left_running_is_killed() {
    let m = marker();
    let e = run("auto", spec("spawn", true, json!({"marker": m}))).await;
    assert_eq!(e.result, Ok(json!("spawned")));
    assert_no_process(&m);
    // On wasip1 there are no processes to start.
    let m = marker();
    let e = run("auto", spec("spawn", false, json!({"marker": m}))).await;
    assert_eq!(e.result.unwrap_err().exit_code(), 1);
    assert_no_process(&m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_is_held_at_the_pids_limit() {
    // Never run uncontained (it would hurt the machine), and never pass unrun: the
    // suite's hosts (scripts/test.sh) have a pids cgroup, so its absence is a failure.
    assert_eq!(
        sandbox().capabilities().support(LimitKind::Processes),
        Support::Enforced,
        "no pids cgroup holds a fork bomb here: {:?}",
        sandbox().notes()
    );
    let mut s = spec("forkbomb", true, json!({}));
    s.limits.timeout_ms = 3_000;
    let e = run("auto", s).await;
    let err = e.result.unwrap_err();
    assert_eq!(err.exit_code(), 3, "{err}");
    assert_no_process("sleep 38 & sleep 38");
}

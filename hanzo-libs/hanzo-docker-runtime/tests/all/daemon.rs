//! Reaching the daemon: a node without one still starts, reports the runtime unavailable
//! with how to start one, and ends Docker jobs with exit 4 (CONTRACTS §3).

use crate::util::*;
use hanzo_compute::config::DockerConfig;
use hanzo_compute::{ComputeError, Runtime};

fn unavailable_node(socket: &str) -> Node {
    Node::with_config(DockerConfig {
        socket: socket.into(),
        ..test_config()
    })
}

async fn assert_unavailable(node: &Node) {
    let health = node.rt.health().await;
    assert!(!health.available);
    assert!(health.version.is_none());
    let detail = health.detail.unwrap();
    assert!(
        detail.contains("start"),
        "no advice on starting a daemon: {detail}"
    );

    let out = node.run(crate::util::echo_job("run")).await;
    match &out.result {
        Err(e @ ComputeError::Unavailable(msg)) => {
            assert_eq!(e.exit_code(), 4);
            assert!(msg.contains("start"), "no advice on starting a daemon: {msg}");
            eprintln!("{e}");
        }
        other => panic!("expected the runtime unavailable, got {other:?}"),
    }
    assert!(out.receipt.is_none(), "nothing ran, nothing is receipted");
    let err = node.rt.reap_orphans().await.unwrap_err();
    assert_eq!(err.exit_code(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_socket_makes_the_runtime_unavailable() {
    let node = unavailable_node("/nonexistent/hanzo-test/docker.sock");
    assert_unavailable(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_makes_the_runtime_unavailable() {
    // A socket file nobody listens on: what a crashed daemon leaves behind.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let node = unavailable_node(path.to_str().unwrap());
    assert_unavailable(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_may_be_given_as_a_unix_url() {
    require_docker();
    let node = Node::with_config(DockerConfig {
        socket: "unix:///var/run/docker.sock".into(),
        ..test_config()
    });
    let health = node.rt.health().await;
    assert!(health.available, "{health:?}");
    let version = health.version.unwrap();
    assert!(
        version.starts_with("Docker ") && version.contains("API 1."),
        "{version}"
    );
    eprintln!("health: {version}");
}

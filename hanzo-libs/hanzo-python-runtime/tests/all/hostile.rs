//! Hostile tools: each is stopped with the right error and leaves no process behind.

use crate::util::{Node, err, ok, sandbox};
use hanzo_compute::{ComputeError, LimitKind, Runtime, Support};
use hanzo_testkit::{assert_no_process, marker};
use serde_json::json;

/// A tool file named after a fresh marker, so that its processes can be found on the
/// host (the file name is on the interpreter's command line).
fn marked(n: &Node, body: &str) -> (std::path::PathBuf, String) {
    let m = marker();
    (n.script(&format!("hostile-{m}.py"), body), m)
}

#[tokio::test]
async fn etc_shadow_is_out_of_reach() {
    let n = Node::new();
    let ex = n
        .run_script(
            "shadow.py",
            "def run(p):\n    try:\n        return open('/etc/shadow').read()[:10]\n    except OSError as e:\n        return 'refused: ' + type(e).__name__\n",
            json!({}),
        )
        .await;
    let out = ok(&ex).as_str().unwrap().to_string();
    assert!(out.starts_with("refused: "), "read /etc/shadow: {out}");
}

#[tokio::test]
async fn host_loopback_is_unreachable_without_network() {
    let n = Node::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ex = n
        .run_script(
            "connect.py",
            "import socket\ndef run(p):\n    try:\n        socket.create_connection(('127.0.0.1', p['port']), timeout=3).close()\n        return 'connected'\n    except OSError as e:\n        return 'refused: ' + type(e).__name__\n",
            json!({"port": port}),
        )
        .await;
    assert!(ok(&ex).as_str().unwrap().starts_with("refused"), "{}", ok(&ex));
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the tool reached the host's loopback");
}

#[tokio::test]
async fn spin_is_stopped_at_the_timeout() {
    let n = Node::new();
    let (p, m) = marked(&n, "def run(p):\n    while True:\n        pass\n");
    let mut spec = n.job(&p);
    spec.limits.timeout_ms = 500;
    let ex = n.run(spec).await;
    assert!(
        matches!(
            err(&ex),
            ComputeError::LimitExceeded {
                limit: LimitKind::Timeout,
                ..
            }
        ),
        "{}",
        err(&ex)
    );
    assert_eq!(err(&ex).exit_code(), 3);
    assert_no_process(&m);
}

#[tokio::test]
async fn memory_hog_hits_the_memory_limit() {
    let n = Node::new();
    // The suite's hosts (scripts/test.sh) have a memory cgroup: a test that returned
    // early without one would pass without testing anything.
    assert_eq!(
        n.rt.capabilities().support(LimitKind::Memory),
        Support::Enforced,
        "no memory cgroup here: {:?}",
        sandbox().notes()
    );
    let (p, m) = marked(
        &n,
        "def run(p):\n    hog = []\n    while True:\n        hog.append(b'x' * (1 << 20))\n",
    );
    let mut spec = n.job(&p);
    spec.limits.memory_mb = 48;
    spec.limits.timeout_ms = 20_000;
    let ex = n.run(spec).await;
    assert!(
        matches!(
            err(&ex),
            ComputeError::LimitExceeded {
                limit: LimitKind::Memory,
                ..
            }
        ),
        "{}",
        err(&ex)
    );
    assert_eq!(err(&ex).exit_code(), 3);
    assert_no_process(&m);
}

#[tokio::test]
async fn fork_bomb_hits_the_process_limit() {
    let n = Node::new();
    // SAFETY of the test machine: never run where no pids cgroup holds the bomb, and
    // never pass unrun: the suite's hosts (scripts/test.sh) have one.
    assert_eq!(
        n.rt.capabilities().support(LimitKind::Processes),
        Support::Enforced,
        "no pids cgroup holds a fork bomb here: {:?}",
        sandbox().notes()
    );
    let (p, m) = marked(
        &n,
        "import os\ndef run(p):\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n",
    );
    let mut spec = n.job(&p);
    spec.limits.timeout_ms = 3_000;
    let ex = n.run(spec).await;
    assert!(
        matches!(
            err(&ex),
            ComputeError::LimitExceeded {
                limit: LimitKind::Processes,
                ..
            }
        ),
        "{}",
        err(&ex)
    );
    assert_eq!(err(&ex).exit_code(), 3);
    assert_no_process(&m);
}

#[tokio::test]
async fn a_child_left_running_is_gone_afterwards() {
    let n = Node::new();
    let m = marker();
    let src = format!(
        "import subprocess\ndef run(p):\n    c = subprocess.Popen(['sleep', '{m}'])\n    return c.pid > 0\n"
    );
    let ex = n.run_script("leave-child.py", &src, json!({})).await;
    assert_eq!(ok(&ex), &json!(true));
    assert_no_process(&m);
}

#[tokio::test]
async fn a_detached_grandchild_is_gone_afterwards() {
    let n = Node::new();
    let m = marker();
    let src = format!(
        "import os, subprocess\ndef run(p):\n    subprocess.Popen(['sleep', '{m}'], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n    if os.fork() == 0:\n        os.setsid()\n        os.execvp('sleep', ['sleep', '{m}'])\n    return 'left'\n"
    );
    let ex = n.run_script("daemon.py", &src, json!({})).await;
    assert_eq!(ok(&ex), &json!("left"));
    assert_no_process(&m);
}

//! Tools that try to get out: at the host's files, its loopback services, its process
//! table, its memory and CPU. Each ends with the right exit code and leaves no process.

use crate::cdylib::c_tool;
use crate::util::*;
use hanzo_compute::{LimitKind, Runtime, Support};
use hanzo_testkit::{assert_no_process, marker};
use serde_json::json;

#[tokio::test]
async fn etc_shadow_is_out_of_reach() {
    let f = Fixtures::new();
    let node = Node::new();
    let tool = f.script("shadow", "#!/bin/sh\ncat /etc/shadow\n");
    let out = node.run(job(&tool)).await;
    let e = err(&out, 1);
    assert!(!e.contains("root:"), "{e}");
    assert!(!String::from_utf8_lossy(&out.logs).contains("root:"));
    // The same from a library in the helper.
    let lib = c_tool(&f);
    let out = node.call(&lib.display().to_string(), "shadow", json!({})).await;
    assert_eq!(ok(&out), &json!({"shadow": false}));
}

#[tokio::test]
async fn a_host_loopback_port_is_unreachable_without_network() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let f = Fixtures::new();
    let tool = f.script(
        "connect",
        &format!(
            "#!/usr/bin/python3\nimport json, socket\ntry:\n    socket.create_connection((\"127.0.0.1\", {port}), timeout=2).close()\n    \
             print(json.dumps({{\"connected\": True}}))\nexcept OSError as e:\n    print(json.dumps({{\"connected\": False, \"error\": str(e)}}))\n"
        ),
    );
    let out = Node::new().run(job(&tool)).await;
    assert_eq!(ok(&out)["connected"], json!(false), "{:?}", out.result);
    let accepted = tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the listener saw a connection");
}

#[tokio::test]
async fn a_fork_bomb_hits_the_process_limit() {
    let rt = runtime_with_pids(32);
    // Only where a pids cgroup holds it: an uncontained bomb would take the machine.
    assert_eq!(
        rt.capabilities().support(LimitKind::Processes),
        Support::Enforced,
        "this test machine must enforce the process limit (pids cgroup)"
    );
    let m = marker();
    let f = Fixtures::new();
    let tool = f.script(
        "bomb",
        &marked_py(
            &m,
            "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        ),
    );
    let mut spec = job(&tool);
    spec.limits.timeout_ms = 3_000;
    let out = Node::with(rt).run(spec).await;
    limit(&out, LimitKind::Processes);
    assert_eq!(out.result.as_ref().unwrap_err().exit_code(), 3);
    assert_no_process(&m);
}

#[tokio::test]
async fn a_spinning_tool_is_killed_at_its_timeout() {
    let m = marker();
    let f = Fixtures::new();
    let tool = f.script("spin", &marked_sh(&m, "while :; do :; done"));
    let mut spec = job(&tool);
    spec.limits.timeout_ms = 500;
    let out = Node::new().run(spec).await;
    limit(&out, LimitKind::Timeout);
    assert_eq!(out.result.as_ref().unwrap_err().exit_code(), 3);
    assert_no_process(&m);
}

#[tokio::test]
async fn a_memory_hog_hits_the_memory_limit() {
    let rt = runtime();
    assert_eq!(
        rt.capabilities().support(LimitKind::Memory),
        Support::Enforced,
        "this test machine must enforce the memory limit (memory cgroup)"
    );
    let m = marker();
    let f = Fixtures::new();
    let tool = f.script(
        "hog",
        &marked_py(
            &m,
            "chunks = []\nwhile True:\n    chunks.append(b\"x\" * (1 << 20))",
        ),
    );
    let mut spec = job(&tool);
    spec.limits.memory_mb = 48;
    spec.limits.timeout_ms = 20_000;
    let out = Node::with(rt).run(spec).await;
    limit(&out, LimitKind::Memory);
    assert_eq!(out.result.as_ref().unwrap_err().exit_code(), 3);
    assert_no_process(&m);
}

#[tokio::test]
async fn a_library_hogging_memory_hits_the_memory_limit() {
    let mut spec = job(example("libecho.so")).function("grow");
    spec.limits.memory_mb = 48;
    spec.limits.timeout_ms = 20_000;
    let out = Node::new().run(spec).await;
    limit(&out, LimitKind::Memory);
}

#[tokio::test]
async fn a_background_child_does_not_outlive_the_tool() {
    let m = marker();
    let f = Fixtures::new();
    let tool = f.script(
        "daemon",
        &format!("#!/bin/sh\nsleep {m} &\necho '{{\"left\": \"a child\"}}'\n"),
    );
    let out = Node::new().run(job(&tool)).await;
    assert_eq!(ok(&out), &json!({"left": "a child"}));
    assert_no_process(&m);
}

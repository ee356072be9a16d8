//! Hostile tools: each is stopped or refused, with the right exit code, and leaves no
//! process behind. The job's processes are found on the host by a marker granted as an
//! env name (it appears in deno's `--allow-env=` argument).

use crate::util::{Node, expect_err, job, marked, run_allow_all};
use hanzo_compute::LimitKind;
use hanzo_compute::{ComputeError, Network};
use hanzo_testkit::assert_no_process;
use serde_json::json;
use std::net::TcpListener;
use std::time::{Duration, Instant};

const HOSTILE: &str = r#"
const attempt = async (f: () => unknown) => {
  try { return { ok: await f() }; } catch (e) { return { denied: `${(e as Error).name}: ${(e as Error).message}` }; }
};
export const shadow = () => attempt(() => Deno.readTextFileSync("/etc/shadow"));
export const loopback = (p: { port: number; host?: string }) =>
  attempt(async () => { const c = await Deno.connect({ hostname: p.host ?? "127.0.0.1", port: p.port }); c.close(); return "connected"; });
export function spin() { let i = 0; for (;;) i++; }
export function heap() { const keep: string[][] = []; for (;;) keep.push(new Array(50_000).fill("x".repeat(8))); }
export function buffers() { const keep: Uint8Array[] = []; for (;;) keep.push(new Uint8Array(4 << 20).fill(1)); }
export const fork = () => attempt(() => {
  for (let i = 0; i < 1000; i++) new Deno.Command("/bin/sh", { args: ["-c", "sleep 37"] }).spawn();
  return "spawned";
});
export function workers() {
  const src = URL.createObjectURL(new Blob(["setInterval(() => {}, 1000);"], { type: "text/javascript" }));
  const all: Worker[] = [];
  for (let i = 0; i < 1000; i++) all.push(new Worker(src, { type: "module" }));
  return new Promise(() => {});
}
export function child(p: { marker: string }) {
  // Only possible with --allow-run, which jobs never get: used with --allow-all to
  // check that the sandbox kills a child left running.
  new Deno.Command("/bin/sh", { args: ["-c", `sleep ${p.marker} &`], stdout: "null", stderr: "null" }).outputSync();
  return { left: "a child" };
}
export const run = () => ({ ok: true });
"#;

#[tokio::test]
async fn etc_shadow_is_refused_by_both_walls() {
    let node = Node::new();
    let t = node.tool("hostile.ts", HOSTILE);
    let (spec, m) = marked(job(&t).function("shadow"));
    let out = node.exec(spec.clone()).await.result.unwrap();
    assert!(out["denied"].as_str().unwrap().contains("NotCapable"), "{out}");
    // With --allow-all the sandbox's root simply has no /etc/shadow.
    let out = run_allow_all(&node, spec).await.result().unwrap();
    assert!(out["denied"].as_str().unwrap().contains("NotFound"), "{out}");
    assert_no_process(&m);
}

#[tokio::test]
async fn host_loopback_is_out_of_reach_with_or_without_network() {
    let node = Node::new();
    let t = node.tool("hostile.ts", HOSTILE);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (spec, m) = marked(job(&t).function("loopback").params(json!({"port": port})));
    let out = node.exec(spec.clone()).await.result.unwrap();
    assert!(out["denied"].as_str().unwrap().contains("NotCapable"), "{out}");
    let out = run_allow_all(&node, spec.clone()).await.result().unwrap();
    assert!(
        out["denied"].as_str().unwrap().contains("ConnectionRefused"),
        "{out}"
    );
    // Granted the network, the tool has its own namespace behind NAT: the host's
    // loopback is still not there.
    let mut granted = spec;
    granted.network = Network::Full;
    let out = node.exec(granted.clone()).await.result.unwrap();
    assert!(
        out["denied"].as_str().unwrap().contains("ConnectionRefused"),
        "network: full reached the host's loopback: {out}"
    );
    // But a test host is reached: the refusals above are the walls, not a broken probe.
    let mut host = hanzo_testkit::nethost::TestHost::new();
    let port = host.tcp_server("hi");
    granted.params = json!({"port": port, "host": host.addr.to_string()});
    assert_eq!(
        node.exec(granted).await.result.unwrap(),
        json!({"ok": "connected"})
    );
    assert_no_process(&m);
}

#[tokio::test]
async fn spinning_tool_times_out() {
    let node = Node::new();
    let t = node.tool("hostile.ts", HOSTILE);
    let (mut spec, m) = marked(job(&t).function("spin"));
    spec.limits.timeout_ms = 500;
    let started = Instant::now();
    let r = node.exec(spec).await.result;
    expect_err(&r, 3, "timeout");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_no_process(&m);
}

#[tokio::test]
async fn js_heap_bomb_is_a_memory_limit() {
    let node = Node::new();
    let t = node.tool("hostile.ts", HOSTILE);
    let (mut spec, m) = marked(job(&t).function("heap"));
    spec.limits.memory_mb = 128;
    let exec = node.exec(spec).await;
    let msg = expect_err(&exec.result, 3, "memory");
    // V8's own cap (64 MiB of 128) ends it, not the kernel.
    assert!(msg.contains("JavaScript heap"), "{msg}");
    assert_no_process(&m);
}

#[tokio::test]
async fn buffer_bomb_is_a_memory_limit() {
    // ArrayBuffers live outside the V8 heap: the cgroup stops them.
    let node = Node::new();
    let t = node.tool("hostile.ts", HOSTILE);
    let (mut spec, m) = marked(job(&t).function("buffers"));
    spec.limits.memory_mb = 96;
    match node.exec(spec).await.result {
        Err(ComputeError::LimitExceeded {
            limit: LimitKind::Memory,
            ..
        }) => {}
        other => panic!("expected a memory limit, got {other:?}"),
    }
    assert_no_process(&m);
}

#[tokio::test]
async fn processes_cannot_be_spawned() {
    let node = Node::new();
    let t = node.tool("hostile.ts", HOSTILE);
    let (spec, m) = marked(job(&t).function("fork"));
    let out = node.exec(spec).await.result.unwrap();
    assert!(out["denied"].as_str().unwrap().contains("NotCapable"), "{out}");
    assert_no_process(&m);
    // A duration no other test uses: the check looks at every process on the host.
    assert_no_process("sleep 37");
}

#[tokio::test]
async fn worker_flood_is_held_by_the_pids_limit() {
    let node = Node::with_pids(48);
    let t = node.tool("hostile.ts", HOSTILE);
    let (mut spec, m) = marked(job(&t).function("workers"));
    spec.limits.memory_mb = 1024;
    spec.limits.timeout_ms = 15_000;
    let r = node.exec(spec).await.result;
    match &r {
        Err(ComputeError::LimitExceeded {
            limit: LimitKind::Processes,
            ..
        }) => {}
        other => panic!("expected a process limit, got {other:?}"),
    }
    assert_eq!(r.unwrap_err().exit_code(), 3);
    assert_no_process(&m);
}

#[tokio::test]
async fn a_child_left_running_is_killed_with_the_job() {
    let node = Node::new();
    let t = node.tool("hostile.ts", HOSTILE);
    // As a job: no --allow-run, so there is no child.
    let (spec, m) = marked(job(&t).function("child"));
    let spec = spec.params(json!({"marker": m}));
    expect_err(&node.exec(spec.clone()).await.result, 1, "Requires run access");
    assert_no_process(&m);
    // With --allow-all the child exists, and the sandbox kills it with the job.
    let outcome = run_allow_all(&node, spec).await;
    assert_eq!(outcome.result().unwrap(), json!({"left": "a child"}));
    assert_no_process(&m);
}

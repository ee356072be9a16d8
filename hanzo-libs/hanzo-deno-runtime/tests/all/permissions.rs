//! Deno's permissions, deny-all unless granted: what a job grants works (env, mounts,
//! network), what it does not is refused by Deno, and the sandbox, the first wall,
//! holds on its own when Deno's permissions are opened wide (`--allow-all`).

use crate::util::{Node, expect_err, job, run_allow_all};
use hanzo_compute::{Job, Mount, Network};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;

/// A probe tool: each function tries one thing and reports what happened.
const PROBE: &str = r#"
const attempt = async (f: () => unknown) => {
  try { return { ok: await f() }; } catch (e) { return { denied: `${(e as Error).name}: ${(e as Error).message}` }; }
};
export const env = (p: { key: string }) => attempt(() => Deno.env.get(p.key) ?? null);
export const read = (p: { path: string }) => attempt(() => Deno.readTextFileSync(p.path));
export const write = (p: { path: string; text: string }) =>
  attempt(() => { Deno.writeTextFileSync(p.path, p.text); return true; });
export const fetch_url = (p: { url: string }) => attempt(async () => await (await fetch(p.url)).text());
export const connect = (p: { port: number }) =>
  attempt(async () => { const c = await Deno.connect({ hostname: "127.0.0.1", port: p.port }); c.close(); return "connected"; });
export const spawn = () => attempt(() => new Deno.Command("/bin/sh", { args: ["-c", "echo hi"] }).outputSync().code);
export const ffi = () => attempt(() => Deno.dlopen("libc.so.6", {}));
export const sys = () => attempt(() => Deno.hostname());
export const run = () => ({ ok: true });
"#;

fn denied(out: &Value, what: &str) -> String {
    let d = out["denied"]
        .as_str()
        .unwrap_or_else(|| panic!("{what} was allowed: {out}"));
    d.to_string()
}

#[tokio::test]
async fn granted_env_is_readable_and_nothing_else() {
    let node = Node::new();
    let t = node.tool("probe.ts", PROBE);
    let mut spec = job(&t).function("env").params(json!({"key": "API_KEY"}));
    spec.env.insert("API_KEY".into(), "s3cret".into());
    assert_eq!(
        node.exec(spec.clone()).await.result.unwrap(),
        json!({"ok": "s3cret"})
    );
    for key in ["HANZO_FUNCTION", "HANZO_JOB_ID"] {
        let out = node
            .exec(spec.clone().params(json!({"key": key})))
            .await
            .result
            .unwrap();
        assert!(out["ok"].is_string(), "{key}: {out}");
    }
    // PATH and DENO_DIR are in deno's environment, but not granted to the tool.
    for key in ["PATH", "DENO_DIR", "HOME"] {
        let out = node
            .exec(spec.clone().params(json!({"key": key})))
            .await
            .result
            .unwrap();
        assert!(denied(&out, key).contains("NotCapable"), "{out}");
    }
}

#[tokio::test]
async fn mounts_grant_read_and_rw_grants_write() {
    let node = Node::new();
    let t = node.tool("probe.ts", PROBE);
    let host_in = tempfile::tempdir().unwrap();
    let host_out = tempfile::tempdir().unwrap();
    // Tools run as nobody, never as the node's root: the mounts must be theirs to use.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(host_in.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(host_out.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(host_in.path().join("data.txt"), "mounted data").unwrap();
    let mut spec = job(&t);
    spec.mounts = vec![
        Mount {
            host: host_in.path().into(),
            guest: "/in".into(),
            writable: false,
        },
        Mount {
            host: host_out.path().into(),
            guest: "/out".into(),
            writable: true,
        },
    ];
    let call = |f: &str, p: Value| spec.clone().function(f).params(p);
    let out = node
        .exec(call("read", json!({"path": "/in/data.txt"})))
        .await
        .result
        .unwrap();
    assert_eq!(out, json!({"ok": "mounted data"}));
    let out = node
        .exec(call(
            "write",
            json!({"path": "/out/result.txt", "text": "written"}),
        ))
        .await
        .result
        .unwrap();
    assert_eq!(out, json!({"ok": true}));
    assert_eq!(
        std::fs::read_to_string(host_out.path().join("result.txt")).unwrap(),
        "written"
    );
    // Writing a read-only mount: Deno refuses (no --allow-write for it).
    let out = node
        .exec(call("write", json!({"path": "/in/x.txt", "text": "x"})))
        .await
        .result
        .unwrap();
    assert!(denied(&out, "write /in").contains("NotCapable"), "{out}");
    assert!(!host_in.path().join("x.txt").exists());
    // The work directory (the tool's own file) is not granted either.
    let out = node
        .exec(call("read", json!({"path": "hanzo_runner.mjs"})))
        .await
        .result
        .unwrap();
    assert!(denied(&out, "read work dir").contains("NotCapable"), "{out}");
}

/// A one-shot HTTP server on the host's loopback; returns its port.
fn http_listener(body: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test]
async fn network_full_reaches_other_hosts_not_this_one_and_none_does_not() {
    let node = Node::new();
    let t = node.tool("probe.ts", PROBE);
    // Another host (a test host in a network namespace of the test's own) is reached
    // through the sandbox's NAT...
    let mut other = hanzo_testkit::nethost::TestHost::new();
    let other_port = other.http_server("hello from another host");
    let other_url = format!("http://{}:{other_port}/", other.addr);
    let mut spec = job(&t).function("fetch_url").params(json!({"url": other_url}));
    spec.network = Network::Full;
    assert_eq!(
        node.exec(spec.clone()).await.result.unwrap(),
        json!({"ok": "hello from another host"})
    );
    // ...the node's own loopback is not (the node's API listens there).
    let port = http_listener("hello from the host");
    let url = format!("http://127.0.0.1:{port}/");
    let mut spec = spec.params(json!({"url": url}));
    let out = node.exec(spec.clone()).await.result.unwrap();
    assert!(
        out.get("ok").is_none(),
        "network: full reached the host's loopback: {out}"
    );
    spec.network = Network::None;
    let out = node.exec(spec.clone()).await.result.unwrap();
    assert!(denied(&out, "fetch").contains("NotCapable"), "{out}");
    // The sandbox alone: with --allow-all but no network, the host's port is not there
    // (the tool has a network namespace of its own).
    let spec = spec.function("connect").params(json!({"port": port}));
    let outcome = run_allow_all(&node, spec).await;
    let out = outcome.result().unwrap();
    let d = denied(&out, "connect under --allow-all");
    assert!(d.contains("ConnectionRefused"), "{d}");
}

#[tokio::test]
async fn run_ffi_and_sys_are_never_granted() {
    let node = Node::new();
    let t = node.tool("probe.ts", PROBE);
    let mut spec = job(&t);
    // Even with every grant a job can make.
    spec.network = Network::Full;
    spec.env.insert("X".into(), "1".into());
    for f in ["spawn", "ffi", "sys"] {
        let out = node.exec(spec.clone().function(f)).await.result.unwrap();
        assert!(denied(&out, f).contains("NotCapable"), "{f}: {out}");
    }
    let cmd = node.rt.command(&Job::new(spec)).unwrap();
    for a in &cmd.args {
        for banned in ["--allow-run", "--allow-ffi", "--allow-sys", "--allow-all", "-A"] {
            assert!(
                !a.starts_with(banned) || a == "--allow-net",
                "{a} in {:?}",
                cmd.args
            );
        }
    }
    assert!(cmd.args.iter().any(|a| a == "--no-prompt"));
}

#[tokio::test]
async fn mounts_may_not_cover_the_cache() {
    let node = Node::new();
    let t = node.tool("probe.ts", PROBE);
    let mut spec = job(&t);
    spec.mounts = vec![Mount {
        host: node.tools.path().into(),
        guest: hanzo_deno_runtime::CACHE_GUEST.into(),
        writable: true,
    }];
    expect_err(&node.exec(spec).await.result, 2, "overlaps the module cache");
}

#[tokio::test]
async fn loader_variables_are_refused() {
    // LD_PRELOAD=/in/evil.so would run native code inside deno, past its permissions.
    let node = Node::new();
    let t = node.tool("probe.ts", PROBE);
    for key in ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_BIND_NOW"] {
        let mut spec = job(&t);
        spec.mounts = vec![Mount {
            host: node.tools.path().into(),
            guest: "/in".into(),
            writable: false,
        }];
        spec.env.insert(key.into(), "/in/evil.so".into());
        let e = node.exec(spec).await;
        let msg = expect_err(&e.result, 2, key);
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert!(e.code_hash.is_none(), "refused before anything ran");
    }
    // Only the LD_ prefix: LDAP_URL is an ordinary grant.
    let mut spec = job(&t).function("env").params(json!({"key": "LDAP_URL"}));
    spec.env.insert("LDAP_URL".into(), "ldap://x".into());
    assert_eq!(node.exec(spec).await.result.unwrap(), json!({"ok": "ldap://x"}));
}

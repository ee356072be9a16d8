//! The process runtimes through the CLI, as a newcomer meets them: a `run(params)`
//! written in TypeScript, Python or Go (or any executable) runs with one `hanzo-node
//! run`, and cannot read the host's files or reach the network unless the job grants it.

use crate::util::*;
use std::net::TcpListener;
use std::path::Path;

/// A listener on the host's loopback that accepts (and drops) connections.
fn listener() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in l.incoming() {});
    port
}

const TS: &str = r#"export async function run(p: { path?: string; port?: number; host?: string }) {
  if (p.path) return await Deno.readTextFile(p.path);
  const c = await Deno.connect({ hostname: p.host ?? "127.0.0.1", port: p.port! });
  c.close();
  return "connected";
}
"#;

const PY: &str = r#"import socket

def run(p):
    if "path" in p:
        with open(p["path"]) as f:
            return f.read()
    socket.create_connection((p.get("host", "127.0.0.1"), p["port"]), timeout=2).close()
    return "connected"
"#;

const GO: &str = r#"package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
)

func main() {
	var p struct {
		Path string `json:"path"`
		Port int    `json:"port"`
		Host string `json:"host"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&p); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if p.Path != "" {
		b, err := os.ReadFile(p.Path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		out, _ := json.Marshal(string(b))
		os.Stdout.Write(out)
		return
	}
	if p.Host == "" {
		p.Host = "127.0.0.1"
	}
	c, err := net.Dial("tcp", fmt.Sprintf("%s:%d", p.Host, p.Port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c.Close()
	os.Stdout.WriteString(`"connected"`)
}
"#;

const EXE: &str = r#"#!/usr/bin/python3
import json, socket, sys
p = json.load(sys.stdin)
if "path" in p:
    print(json.dumps(open(p["path"]).read()))
else:
    socket.create_connection((p.get("host", "127.0.0.1"), p["port"]), timeout=2).close()
    print(json.dumps("connected"))
"#;

/// `(runtime, source, extra flags, whether the network can be granted)` for each way
/// of writing the same tool.
fn tools(h: &Home) -> Vec<(&'static str, String, Vec<&'static str>, bool)> {
    let go = h.path("gotool");
    std::fs::create_dir_all(&go).unwrap();
    std::fs::write(go.join("go.mod"), "module example.com/gotool\n\ngo 1.24\n").unwrap();
    std::fs::write(go.join("main.go"), GO).unwrap();
    let exe = h.file("tool.py3", EXE);
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    vec![
        ("deno", h.file("tool.ts", TS), vec![], true),
        ("python", h.file("tool.py", PY), vec![], true),
        ("go", go.display().to_string(), vec![], false),
        ("go", go.display().to_string(), vec!["--native"], true),
        ("native", exe, vec![], true),
    ]
}

fn args<'a>(rt: &'a str, src: &'a str, extra: &[&'a str], params: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", rt, src, "--params", params];
    v.extend(extra);
    v.extend(more);
    v
}

#[test]
fn host_files_are_out_of_reach_unless_mounted() {
    let h = Home::new();
    let data = h.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("secret.txt"), "s3cret").unwrap();
    let host_path = serde_json::json!({"path": data.join("secret.txt")}).to_string();
    let guest_path = serde_json::json!({"path": "/data/secret.txt"}).to_string();
    let mount = format!("{}:/data", data.display());
    for (rt, src, extra, _) in tools(&h) {
        let r = h.run(&args(rt, &src, &extra, &host_path, &[]));
        assert_eq!(
            r.code, 1,
            "{rt} {extra:?} read a host file: {} / {}",
            r.stdout, r.stderr
        );
        assert!(!r.stdout.contains("s3cret"), "{rt}");
        assert!(r.error_line().starts_with("error:"), "{rt}: {}", r.stderr);
        let r = h.run(&args(rt, &src, &extra, &guest_path, &["--mount", &mount]));
        assert_eq!(r.code, 0, "{rt} {extra:?}: {}", r.stderr);
        assert_eq!(r.json(), "s3cret", "{rt} {extra:?}");
    }
}

/// Granted, the network is other hosts' (a test host in a network namespace of the
/// test's own), never the host's own loopback, where the node's API listens.
#[test]
fn the_network_is_out_of_reach_unless_granted_and_the_host_always() {
    let h = Home::new();
    let port = listener();
    let params = format!(r#"{{"port": {port}}}"#);
    let mut other = hanzo_testkit::nethost::TestHost::new();
    let other_port = other.tcp_server("hi");
    let other_params = format!(r#"{{"port": {other_port}, "host": "{}"}}"#, other.addr);
    for (rt, src, extra, grantable) in tools(&h) {
        let r = h.run(&args(rt, &src, &extra, &params, &[]));
        assert_eq!(
            r.code, 1,
            "{rt} {extra:?} reached the host: {} / {}",
            r.stdout, r.stderr
        );
        if grantable {
            let r = h.run(&args(rt, &src, &extra, &params, &["--network", "full"]));
            assert_eq!(
                r.code, 1,
                "{rt} {extra:?} reached the host's loopback with network full: {} / {}",
                r.stdout, r.stderr
            );
            let r = h.run(&args(rt, &src, &extra, &other_params, &["--network", "full"]));
            assert_eq!(r.code, 0, "{rt} {extra:?}: {}", r.stderr);
            assert_eq!(r.json(), "connected", "{rt} {extra:?}");
        }
    }
}

#[test]
fn every_process_runtime_signs_a_receipt_that_verifies() {
    let h = Home::new();
    let data = h.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), "x").unwrap();
    let mount = format!("{}:/data", data.display());
    for (i, (rt, src, extra, _)) in tools(&h).into_iter().enumerate() {
        let receipt = h.path(&format!("r{i}.json")).display().to_string();
        let params = r#"{"path": "/data/f"}"#;
        let r = h.run(&args(
            rt,
            &src,
            &extra,
            params,
            &["--mount", &mount, "--receipt", &receipt],
        ));
        assert_eq!(r.code, 0, "{rt}: {}", r.stderr);
        let v = h.run(&[
            "receipt", "verify", &receipt, "--params", params, "--output", "\"x\"",
        ]);
        assert_eq!(v.code, 0, "{rt}: {}", v.stderr);
        let body: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
        assert_eq!(body["runtime"], rt);
    }
}

#[test]
fn builtins_and_bad_sources() {
    let h = Home::new();
    let r = h.run(&["run", "native", "builtin:hash", "--params", r#"{"text": "abc"}"#]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.json()["digest"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let r = h.run(&[
        "run",
        "native",
        "builtin:json-query",
        "--params",
        r#"{"document": {"a": [{"b": 1}, {"b": 2}]}, "query": ".a[*].b"}"#,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["matches"], serde_json::json!([1, 2]), "{}", r.stdout);
    assert_one_error_line(&h.run(&["run", "native", "builtin:nope"]), 2, "nope");
    assert_one_error_line(&h.run(&["run", "python", "/nonexistent/t.py"]), 2, "t.py");
    assert_one_error_line(&h.run(&["run", "deno", "/nonexistent/t.ts"]), 2, "t.ts");
    assert_one_error_line(&h.run(&["run", "go", "/nonexistent/pkg"]), 2, "pkg");
    let script = h.file("t.ts", "export function run(p) { return p }");
    assert_one_error_line(&h.run(&["run", "deno", &script, "--native"]), 2, "--native");
    assert!(Path::new(&script).exists());
}

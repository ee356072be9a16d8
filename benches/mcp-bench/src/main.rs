//! # mcp-bench
//!
//! The `mcp` runtime's benchmark (issue 15), every figure from one run: a call of
//! `mcp-server-time`'s `get_current_time` (the PyPI reference server)
//!
//! - **direct**: made with the official Python SDK client over stdio, one warm
//!   session, the server unsandboxed: the floor;
//! - **runtime**: through the node's `mcp` runtime in process (`Compute::run_job`,
//!   receipt signed), the server sandboxed and kept warm in the pool;
//! - **/mcp**: through a served node, the same Python SDK client calling a named tool
//!   over streamable HTTP: each call a job (stored, scheduled, receipted) on the
//!   warm server;
//!
//! - **HTTP floor**: the same Python SDK client over streamable HTTP to a reference
//!   server (`@modelcontextprotocol/server-everything`'s `get-sum`, Node.js), what any
//!   MCP call over HTTP costs that client: the floor of the /mcp row;
//!
//! and the first call's cost (a server's start: process, interpreter, handshake) for
//! the direct client and the runtime. Prints a markdown report; see BENCHMARKS.md.
//!
//! `cargo run --release -p mcp-bench -- [--node target/release/hanzo-node]`

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use hanzo_compute::{Compute, Job, JobSpec, NodeKey, RuntimeKind, Signing};
use hanzo_mcp::{McpOptions, McpRuntime};
use hanzo_sandbox::Sandbox;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The target: a warm call through the node at most 1.5x the direct one.
const TARGET: f64 = 1.5;
const TOOL: &str = "get_current_time";
const TOKEN: &str = "mcp-bench-token";

#[derive(Parser, Debug)]
#[command(about = "Benchmark of the mcp runtime against the Python SDK's direct call")]
struct Args {
    /// The venv holding mcp-server-time and the `mcp` SDK [default: $HANZO_MCP_VENV,
    /// else ~/.cache/hanzo-node/mcp/venv; `source scripts/mcp.sh && ensure_mcp`].
    #[arg(long)]
    venv: Option<PathBuf>,
    /// The hanzo-node binary for the /mcp row [default: target/release/hanzo-node].
    #[arg(long)]
    node: Option<PathBuf>,
    /// The npm prefix holding @modelcontextprotocol/server-everything, for the HTTP
    /// floor [default: $HANZO_MCP_NPM, else ~/.cache/hanzo-node/mcp/npm].
    #[arg(long)]
    npm: Option<PathBuf>,
    /// Timed warm calls per row.
    #[arg(long, default_value_t = 300)]
    runs: usize,
    /// Untimed calls before timing.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// First calls (fresh servers) per row.
    #[arg(long, default_value_t = 8)]
    cold: usize,
}

struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    mean: f64,
    n: usize,
}

impl Latency {
    fn of(ms: &[f64]) -> Latency {
        assert!(!ms.is_empty());
        let mut s = ms.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |p: f64| s[((p / 100.0 * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        Latency {
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            mean: s.iter().sum::<f64>() / s.len() as f64,
            n: s.len(),
        }
    }
}

fn python_client(venv: &Path, args: &[String]) -> Result<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("client.py");
    let out = Command::new(venv.join("bin/python"))
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running the Python SDK client")?;
    ensure!(
        out.status.success(),
        "the Python SDK client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn spec(server: &str) -> JobSpec {
    let mut s = JobSpec::new(RuntimeKind::Mcp, server).params(json!({"timezone": "UTC"}));
    s.function = Some(TOOL.into());
    s
}

fn runtime() -> Result<Compute> {
    let mut compute = Compute::new(Arc::new(NodeKey::generate()?));
    compute.register(Arc::new(McpRuntime::new(
        Arc::new(Sandbox::detect()),
        McpOptions::default(),
    )));
    Ok(compute)
}

async fn timed(compute: &Compute, server: &str) -> Result<f64> {
    let t = Instant::now();
    let out = compute.run_job(&Job::new(spec(server)), Signing::On).await;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    ensure!(out.receipt.is_some(), "no receipt");
    out.result
        .map_err(|e| anyhow::anyhow!("the runtime's call failed: {e}"))?;
    Ok(ms)
}

/// A plain HTTP/1.1 request to the node on loopback; the status and body.
fn http(port: u16, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// `[compute.mcp] install_roots` for the venv: itself and the interpreter it was made
/// from (its `pyvenv.cfg`'s `home`).
fn install_roots(venv: &Path) -> Result<String> {
    let venv = std::fs::canonicalize(venv)?;
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg"))?;
    let home = cfg
        .lines()
        .find_map(|l| {
            l.split_once('=')
                .filter(|(k, _)| k.trim() == "home")
                .map(|(_, v)| v.trim().to_string())
        })
        .context("no home in pyvenv.cfg")?;
    let home = std::fs::canonicalize(home)?;
    let prefix = home.parent().unwrap_or(&home);
    Ok(format!("{},{}", venv.display(), prefix.display()))
}

/// The /mcp row: a served node, the tool registered, the Python SDK client over HTTP.
fn through_api(node: &Path, venv: &Path, server: &str, runs: usize, warmup: usize) -> Result<Vec<f64>> {
    let home = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = Command::new(node)
        .arg("serve")
        .env("HANZO_HOME", home.path())
        .env_remove("HANZO_CONFIG")
        .env("HANZO_NODE_API_LISTEN", format!("127.0.0.1:{port}"))
        .env("HANZO_NODE_API_TOKEN", TOKEN)
        .env("HANZO_NETWORK_ENABLED", "false")
        .env("HANZO_COMPUTE_ENABLED_RUNTIMES", "mcp")
        .env("HANZO_COMPUTE_MCP_INSTALL_ROOTS", install_roots(venv)?)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", node.display()))?;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http(port, "GET", "/healthz", ""), Ok((200, _))) {
            ensure!(Instant::now() < deadline, "the node never became healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        let tool = json!({"name": "tz", "runtime": "mcp", "source": server, "function": TOOL});
        let (st, body) = http(port, "POST", "/v1/tools", &tool.to_string())?;
        ensure!(st == 201, "registering the tool: {st} {body}");
        let url = format!("http://127.0.0.1:{port}/mcp");
        let args = [
            "http".to_string(),
            url,
            TOKEN.into(),
            "tz".into(),
            json!({"timezone": "UTC"}).to_string(),
            runs.to_string(),
            warmup.to_string(),
        ];
        Ok(floats(&python_client(venv, &args)?["warm_ms"]))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The HTTP floor: server-everything over streamable HTTP on a loopback port, called by
/// the same Python SDK client.
fn http_floor(npm: &Path, venv: &Path, runs: usize, warmup: usize) -> Result<Vec<f64>> {
    let bin = npm.join("node_modules/.bin/mcp-server-everything");
    ensure!(bin.exists(), "{} is missing", bin.display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = Command::new(&bin)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(Instant::now() < deadline, "server-everything never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = [
            "http".to_string(),
            format!("http://127.0.0.1:{port}/mcp"),
            "unused".into(),
            "get-sum".into(),
            json!({"a": 2, "b": 3}).to_string(),
            runs.to_string(),
            warmup.to_string(),
        ];
        Ok(floats(&python_client(venv, &args)?["warm_ms"]))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn main() -> Result<()> {
    let args = Args::parse();
    let venv = args
        .venv
        .or_else(|| std::env::var_os("HANZO_MCP_VENV").map(PathBuf::from))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/hanzo-node/mcp/venv")
        });
    let server = venv.join("bin/mcp-server-time");
    if !server.is_file() {
        bail!(
            "{} is missing: run `source scripts/mcp.sh && ensure_mcp`",
            server.display()
        );
    }
    let server = server.display().to_string();
    let node = args
        .node
        .unwrap_or_else(|| PathBuf::from("target/release/hanzo-node"));

    eprintln!("direct: the Python SDK client over stdio ...");
    let direct = python_client(
        &venv,
        &[
            "stdio".into(),
            server.clone(),
            TOOL.into(),
            json!({"timezone": "UTC"}).to_string(),
            args.runs.to_string(),
            args.warmup.to_string(),
            args.cold.to_string(),
        ],
    )?;
    let direct_warm = floats(&direct["warm_ms"]);
    let direct_cold = floats(&direct["cold_ms"]);

    eprintln!("runtime: the mcp runtime in process ...");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (rt_warm, rt_cold) = rt.block_on(async {
        let compute = runtime()?;
        for _ in 0..args.warmup.max(1) {
            timed(&compute, &server).await?;
        }
        let mut warm = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            warm.push(timed(&compute, &server).await?);
        }
        let mut cold = Vec::new();
        for _ in 0..args.cold {
            // A fresh runtime: an empty pool, so the call starts its server.
            let compute = runtime()?;
            cold.push(timed(&compute, &server).await?);
        }
        Ok::<_, anyhow::Error>((warm, cold))
    })?;

    eprintln!("/mcp: a served node, the same client over streamable HTTP ...");
    let api = if node.is_file() {
        Some(through_api(&node, &venv, &server, args.runs, args.warmup)?)
    } else {
        eprintln!("  skipped: {} is not built (--node)", node.display());
        None
    };

    let npm = args
        .npm
        .or_else(|| std::env::var_os("HANZO_MCP_NPM").map(PathBuf::from))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/hanzo-node/mcp/npm")
        });
    eprintln!("HTTP floor: the same client over streamable HTTP to server-everything ...");
    let floor = match http_floor(&npm, &venv, args.runs, args.warmup) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("  skipped: {e}");
            None
        }
    };

    let d = Latency::of(&direct_warm);
    let mut report = String::new();
    let _ = writeln!(
        report,
        "## mcp-bench: `mcp-server-time` {TOOL}, warm (ms; {} calls after {} warm-up)\n",
        args.runs, args.warmup
    );
    let _ = writeln!(
        report,
        "| path | p50 | p90 | p99 | mean | p50 vs direct | p99 vs direct | target ≤ {TARGET}x |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|---|---|");
    let mut row = |name: &str, l: &Latency, judged: bool| {
        let r50 = l.p50 / d.p50;
        let r99 = l.p99 / d.p99;
        let verdict = if !judged {
            "(floor)".to_string()
        } else if r50 <= TARGET && r99 <= TARGET {
            "met".to_string()
        } else {
            "missed".to_string()
        };
        let _ = writeln!(
            report,
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {r50:.2}x | {r99:.2}x | {verdict} |",
            l.p50, l.p90, l.p99, l.mean
        );
    };
    row(
        "direct: Python SDK client → server (stdio, unsandboxed)",
        &d,
        false,
    );
    row(
        "runtime: `mcp` runtime in process → sandboxed warm server, receipt signed",
        &Latency::of(&rt_warm),
        true,
    );
    if let Some(api) = &api {
        row(
            "/mcp: the same client → node (HTTP, job stored and scheduled) → warm server",
            &Latency::of(api),
            true,
        );
    }
    if let Some(floor) = &floor {
        row(
            "HTTP floor: the same client → server-everything `get-sum` (HTTP, Node.js)",
            &Latency::of(floor),
            false,
        );
        if let Some(api) = &api {
            let (a, f) = (Latency::of(api), Latency::of(floor));
            let _ = writeln!(
                report,
                "\n/mcp against the HTTP floor: p50 {:.2}x, p99 {:.2}x (the client's HTTP transport is most of either).",
                a.p50 / f.p50,
                a.p99 / f.p99
            );
        }
    }
    let _ = writeln!(
        report,
        "\n### First call (a server's start), ms over {} starts\n",
        args.cold
    );
    let _ = writeln!(report, "| path | p50 | max | n |");
    let _ = writeln!(report, "|---|---|---|---|");
    for (name, s) in [
        ("direct: spawn + initialize + call (unsandboxed)", &direct_cold),
        (
            "runtime: sandbox + spawn + initialize + tools/list + call",
            &rt_cold,
        ),
    ] {
        if !s.is_empty() {
            let l = Latency::of(s);
            let max = s.iter().cloned().fold(0.0, f64::max);
            let _ = writeln!(report, "| {name} | {:.1} | {max:.1} | {} |", l.p50, l.n);
        }
    }
    print!("{report}");
    Ok(())
}

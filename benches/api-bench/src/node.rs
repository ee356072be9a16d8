//! The real `hanzo-node serve` as a child process on a loopback port, with a private
//! HANZO_HOME, only the WASM runtime, and the settings the benchmark reports.

use crate::http::Conn;
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `[compute.resources]` and the store's durability, passed as `HANZO_*` overrides.
#[derive(Debug, Clone)]
pub struct Settings {
    pub durability: &'static str,
    pub max_concurrent_jobs: u32,
    pub total_cpu_cores: u32,
    pub total_memory_gb: u32,
    pub queue_capacity: u32,
}

impl Settings {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HANZO_NODE_JOBS_DURABILITY", self.durability.to_string()),
            (
                "HANZO_COMPUTE_RESOURCES_MAX_CONCURRENT_JOBS",
                self.max_concurrent_jobs.to_string(),
            ),
            (
                "HANZO_COMPUTE_RESOURCES_TOTAL_CPU_CORES",
                self.total_cpu_cores.to_string(),
            ),
            (
                "HANZO_COMPUTE_RESOURCES_TOTAL_MEMORY_GB",
                self.total_memory_gb.to_string(),
            ),
            (
                "HANZO_COMPUTE_RESOURCES_QUEUE_CAPACITY",
                self.queue_capacity.to_string(),
            ),
        ]
    }
}

pub struct Node {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

/// Memory of the node process, from /proc/<pid>/status.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

/// The API token the bench's node is given (`node.api_token`), so that the client
/// need not read `<data_dir>/api-token`.
pub const TOKEN: &str = "api-bench-token-0123456789abcdef";

impl Node {
    /// An authorized connection to the node's API.
    pub async fn conn(&self) -> Result<Conn> {
        Ok(Conn::open(self.addr).await?.authorized(TOKEN))
    }

    /// Starts the node on `home` and waits for `/healthz`.
    pub async fn start(bin: &Path, home: &Path, settings: &Settings) -> Result<Node> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = home.with_extension("log");
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .env("HANZO_HOME", home)
            .env_remove("HANZO_CONFIG")
            .env("HANZO_NODE_API_LISTEN", addr.to_string())
            .env("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm")
            .env("HANZO_NODE_API_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log)?);
        for (k, v) in settings.env() {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut node = Node { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = node.child.try_wait()? {
                bail!(
                    "hanzo-node serve exited early ({status}); its log:\n{}",
                    node.log_text()
                );
            }
            if let Ok(mut c) = Conn::open(addr).await
                && c.req("GET", "/healthz", "").await.is_ok_and(|r| r.status == 200)
            {
                return Ok(node);
            }
            if Instant::now() > deadline {
                bail!("the node never became healthy; its log:\n{}", node.log_text());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn mem(&self) -> Result<Mem> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Mem {
            rss_kb: field("VmRSS:"),
            hwm_kb: field("VmHWM:"),
        })
    }

    /// CPU time the node has used (user + system), from /proc/<pid>/stat.
    pub fn cpu(&self) -> Result<Duration> {
        cpu_of(&format!("/proc/{}/stat", self.pid()))
    }

    /// SIGTERM (the node's graceful shutdown) and wait for it to exit.
    pub async fn stop(mut self) -> Result<()> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.pid());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("the node did not stop within 20 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a /proc stat file (fields 14 and 15, in clock ticks of 1/100 s,
/// USER_HZ on Linux).
pub fn cpu_of(path: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(path)?;
    // The command name (field 2) may hold spaces; the rest follows its ')'.
    let rest = stat.rsplit_once(')').context("bad /proc stat")?.1;
    // Fields from 3 (state) on; utime and stime are fields 14 and 15.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> u64 { f.get(i - 3).and_then(|x| x.parse().ok()).unwrap_or(0) };
    let ticks = num(14) + num(15);
    Ok(Duration::from_millis(ticks * 10))
}

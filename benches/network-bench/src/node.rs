//! The real `hanzo-node serve` as a child process with the network on: a private
//! HANZO_HOME, the API and libp2p each on a fixed loopback port (so that a node killed
//! and started again keeps its peer id and address), mDNS off, only the WASM runtime.

use crate::http::Conn;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The API token every bench node is given (`node.api_token`), so the client need
/// not read `<data_dir>/api-token`.
pub const TOKEN: &str = "network-bench-token-0123456789abcdef";

/// What every node of a run is started with, as `HANZO_*` overrides.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `compute.resources.max_concurrent_jobs`.
    pub slots: u32,
    /// `network.advert_interval_ms`.
    pub advert_interval_ms: u64,
    /// `network.peer_timeout_ms`.
    pub peer_timeout_ms: u64,
    /// `network.max_requests_per_peer_per_sec`.
    pub max_requests_per_peer_per_sec: u32,
    /// `network.max_remote_jobs_per_peer`.
    pub max_remote_jobs_per_peer: u32,
    /// Node a on CPU 0 and every other node on CPU 1 (`taskset`): each node a core of
    /// its own, as two machines would be, instead of both sharing both.
    pub pin: bool,
}

impl Settings {
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "HANZO_COMPUTE_RESOURCES_MAX_CONCURRENT_JOBS",
                self.slots.to_string(),
            ),
            // As in api-bench: the slots, not CPU or memory, are what admission counts.
            (
                "HANZO_COMPUTE_RESOURCES_TOTAL_CPU_CORES",
                self.slots.div_ceil(16).max(8).to_string(),
            ),
            (
                "HANZO_COMPUTE_RESOURCES_TOTAL_MEMORY_GB",
                (self.slots / 64).max(16).to_string(),
            ),
            (
                "HANZO_NETWORK_ADVERT_INTERVAL_MS",
                self.advert_interval_ms.to_string(),
            ),
            ("HANZO_NETWORK_PEER_TIMEOUT_MS", self.peer_timeout_ms.to_string()),
            (
                "HANZO_NETWORK_MAX_REQUESTS_PER_PEER_PER_SEC",
                self.max_requests_per_peer_per_sec.to_string(),
            ),
            (
                "HANZO_NETWORK_MAX_REMOTE_JOBS_PER_PEER",
                self.max_remote_jobs_per_peer.to_string(),
            ),
        ]
    }
}

/// A free loopback TCP port (bound and released: another process could take it
/// before the node does, which the start then reports).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub struct Node {
    pub name: &'static str,
    child: Option<Child>,
    bin: PathBuf,
    pub home: PathBuf,
    pub api: SocketAddr,
    p2p_port: u16,
    bootstrap: Option<String>,
    settings: Settings,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// `/ip4/127.0.0.1/tcp/<port>/p2p/<peer id>`.
    pub addr: String,
}

impl Node {
    /// Starts a node on a fresh `home`, joining through `bootstrap` when given, and
    /// waits for `/healthz`.
    pub async fn start(
        name: &'static str,
        bin: &Path,
        home: PathBuf,
        bootstrap: Option<String>,
        settings: &Settings,
    ) -> Result<Node> {
        let mut node = Node {
            name,
            child: None,
            bin: bin.to_path_buf(),
            home,
            api: ([127, 0, 0, 1], free_port()?).into(),
            p2p_port: free_port()?,
            bootstrap,
            settings: settings.clone(),
            peer_id: String::new(),
            addr: String::new(),
        };
        node.spawn().await?;
        let info = node
            .conn()
            .await?
            .expect("GET", "/v1/node", "", 200)
            .await?
            .json()?;
        node.peer_id = info["peer_id"]
            .as_str()
            .context("no peer_id in /v1/node")?
            .to_string();
        node.addr = info["listen_addrs"][0]
            .as_str()
            .with_context(|| format!("no listen_addrs in /v1/node: {info}"))?
            .to_string();
        Ok(node)
    }

    fn log_path(&self) -> PathBuf {
        self.home.with_extension("log")
    }

    /// Starts the process (again) on the same home and ports.
    pub async fn spawn(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.home)?;
        let mut cmd = if self.settings.pin {
            // taskset execs the node: the child's pid is the node's.
            let mut c = Command::new("taskset");
            c.arg("-c")
                .arg(if self.name == "a" { "0" } else { "1" })
                .arg(&self.bin);
            c
        } else {
            Command::new(&self.bin)
        };
        cmd.arg("serve")
            .env("HANZO_HOME", &self.home)
            .env_remove("HANZO_CONFIG")
            .env("HANZO_NODE_API_LISTEN", self.api.to_string())
            .env("HANZO_NODE_API_TOKEN", TOKEN)
            .env("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm")
            .env("HANZO_NETWORK_ENABLED", "true")
            .env("HANZO_NETWORK_MDNS", "false")
            .env(
                "HANZO_NETWORK_LISTEN",
                format!("/ip4/127.0.0.1/tcp/{}", self.p2p_port),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.log_path())?,
            );
        if let Some(b) = &self.bootstrap {
            cmd.env("HANZO_NETWORK_BOOTSTRAP", b);
        }
        for (k, v) in self.settings.env() {
            cmd.env(k, v);
        }
        self.child = Some(
            cmd.spawn()
                .with_context(|| format!("cannot start {}", self.bin.display()))?,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().expect("spawned").try_wait()? {
                bail!(
                    "{}: hanzo-node serve exited early ({status}); its log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if let Ok(mut c) = self.conn().await
                && c.req("GET", "/healthz", "").await.is_ok_and(|r| r.status == 200)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: never became healthy; its log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn conn(&self) -> Result<Conn> {
        Ok(Conn::open(self.api).await?.authorized(TOKEN))
    }

    pub fn log_text(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        // The end is what explains a failure.
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash or `kill -9` would end it.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// CPU time the node has used (user + system).
    pub fn cpu(&self) -> Result<Duration> {
        cpu_of(&format!("/proc/{}/stat", self.pid().context("not running")?))
    }

    /// The peers this node has an advert from (`GET /v1/peers`).
    pub async fn peers_with_adverts(&self, c: &mut Conn) -> Result<Vec<Value>> {
        let v = c.expect("GET", "/v1/peers", "", 200).await?.json()?;
        let list = v.as_array().cloned().or_else(|| v["peers"].as_array().cloned());
        Ok(list
            .context("GET /v1/peers: not a list")?
            .into_iter()
            .filter(|p| {
                p["runtimes"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|x| x == "wasm"))
            })
            .collect())
    }

    /// Waits (at most `secs`) until this node holds an advert from each of `peers`,
    /// with an open connection to it.
    pub async fn wait_for(&self, peers: &[&str], secs: u64) -> Result<()> {
        let mut c = self.conn().await?;
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let have = self.peers_with_adverts(&mut c).await?;
            if peers.iter().all(|want| {
                have.iter()
                    .any(|p| p["peer_id"] == *want && p["connected"] == Value::Bool(true))
            }) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: no advert from all of {peers:?} within {secs} s: {have:?}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM and wait (the node's graceful shutdown).
    pub async fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("{} did not stop within 20 s of SIGTERM", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// utime + stime of a /proc stat file (fields 14 and 15, USER_HZ = 100).
pub fn cpu_of(path: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(path)?;
    let rest = stat.rsplit_once(')').context("bad /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> u64 { f.get(i - 3).and_then(|x| x.parse().ok()).unwrap_or(0) };
    Ok(Duration::from_millis((num(14) + num(15)) * 10))
}

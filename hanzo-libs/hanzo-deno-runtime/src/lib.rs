//! # hanzo-deno-runtime
//!
//! Runs TypeScript and JavaScript tools (CONTRACTS §1c) on Deno, in hanzo-sandbox's
//! process sandbox, behind hanzo-compute's [`Runtime`] trait.
//!
//! A tool is one `.ts`/`.js`/`.mts`/`.mjs`/`.tsx` file exporting `run(params)` (sync
//! or async) and any other functions, called by `job.spec.function`. The node supplies
//! the stdio plumbing: a generated runner reads the params from stdin, imports the tool,
//! calls the function, and writes the JSON of its result (`undefined` → `null`) to
//! stdout; a thrown exception is the tool's failure with its message. The runner sends
//! the tool's `console.log`/`info`/`debug`/`dir`/`table`/... and `Deno.stdout` to
//! stderr, the job's log stream, because stdout carries the result.
//!
//! Two walls stand between a tool and the host:
//! 1. the sandbox: namespaces, a read-only root with only the system paths and the deno
//!    binary, a network namespace of its own unless `network: full`, cgroup limits;
//! 2. Deno's permissions, deny-all: `--no-prompt` and only what the job grants
//!    ([`flags::permission_flags`]): the granted env keys, read (and write, for `rw`)
//!    on the mounts' guest paths, the network for `network: full`. Never
//!    `--allow-run`, `--allow-ffi`, `--allow-sys` or `--allow-all`.
//!
//! Remote dependencies (`npm:`, and `jsr:`/`https:` where reachable) are fetched into a
//! module cache (`DENO_DIR`) under `<data_dir>/deno/cache` by a separate *prepare* step
//! (`deno install --entrypoint`, which resolves, downloads and transpiles but runs none
//! of the tool's code) with the cache writable; the tool itself then runs with
//! `--cached-only` and sees, read-only, only the cache's downloads (`npm/`, `remote/`)
//! and its own transpiled code (`<data_dir>/deno/gen/<sha256>`), so a hostile tool can
//! neither poison the cache for later jobs nor read what other tools left in it.
//! The prepare step also compiles the runner and the tool (without running either) into
//! the tool's own V8 code cache, which its jobs read and cannot write ([`codecache`]).
//!
//! Deno's read permission does not cover static imports: a tool can load any file the
//! sandbox shows at a path it can name (`import x from "file:///…"`, also
//! `with { type: "text" }` or `"json"`) without `--allow-read`. So for reads the
//! sandbox's view is the wall, and nothing of another job may be in it. See the
//! crate's README.

#![warn(missing_docs)]

mod cache;
pub mod codecache;
pub mod flags;
pub mod source;

pub use cache::cache_pools;
pub use codecache::CODE_CACHE_DB;

use hanzo_compute::config::DenoConfig;
use hanzo_compute::{
    Capabilities, ComputeError, Execution, Health, Job, LimitKind, Mount, Network, ResourceLimits, Runtime,
    RuntimeKind, Support,
};
use hanzo_sandbox::{Exit, ProcessOutcome, ProcessSpec, Sandbox, TOOL_PATH};
use source::ToolSource;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};

/// The runner module the node places next to the tool (see `runner.mjs`).
const RUNNER_SOURCE: &str = include_str!("runner.mjs");

/// The runner's file name in the work directory.
pub const RUNNER_FILE: &str = "hanzo_runner.mjs";

/// Where the module cache (`DENO_DIR`) appears inside the sandbox.
pub const CACHE_GUEST: &str = "/opt/hanzo/deno-cache";

/// The parts of `DENO_DIR` shared by all tools: downloads from public registries and
/// module hosts, the same bytes for every tool that names them. Not `gen/`
/// (transpiled code, which holds local sources: each tool has its own, see
/// [`DenoRuntime::emit_dir`]), nor Deno's sqlite caches (module analysis of every
/// tool prepared, keyed by paths holding their sha256; deno runs without them).
pub const SHARED_CACHE_DIRS: [&str; 2] = ["npm", "remote"];

/// The runner's exit code for an unknown function, which the runtime reports as bad
/// input (exit 2) like the other runtimes. A tool can exit 2 itself with the same
/// message on stdout (through `process.stdout`, or `Deno.exit`): that only makes its
/// own job report bad input, which is no more than a failure it could report anyway.
pub const EXIT_UNKNOWN_FUNCTION: i32 = 2;

/// Written into the prepared marker with deno's version: a tool prepared under an
/// older cache layout (its transpiled code in the shared cache) is prepared again.
const CACHE_LAYOUT: &str = "layout 3: per-tool gen and V8 code cache";

/// How to install deno, for the unavailable message.
pub const INSTALL_ADVICE: &str = "install it with `pip install deno` or the official installer \
     (`curl -fsSL https://deno.land/install.sh | sh`), or set [compute.deno] binary";

/// Limits of the prepare step (the node's own work: resolving and downloading the
/// tool's dependencies), independent of the job's: a job of 32 MiB must still be able
/// to have an npm package unpacked for it.
const PREPARE_LIMITS: ResourceLimits = ResourceLimits {
    cpu_shares: 1024,
    memory_mb: 1024,
    disk_mb: 1024,
    network_bandwidth_mbps: None,
    timeout_ms: 120_000,
    fuel: None,
    max_output_bytes: 1024 * 1024,
};

/// `deno --version`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenoVersion {
    /// Deno's own version (`2.1.4`).
    pub deno: String,
    /// The first line in full (`deno 2.1.4 (stable, release, x86_64-unknown-linux-gnu)`).
    pub line: String,
    /// V8's version, when printed.
    pub v8: Option<String>,
    /// TypeScript's version, when printed.
    pub typescript: Option<String>,
}

impl DenoVersion {
    /// Parses `deno --version`'s output.
    pub fn parse(text: &str) -> Option<DenoVersion> {
        let mut deno = None;
        let mut line = String::new();
        let mut v8 = None;
        let mut typescript = None;
        for l in text.lines() {
            let mut words = l.split_whitespace();
            match (words.next(), words.next()) {
                (Some("deno"), Some(v)) => {
                    deno = Some(v.to_string());
                    line = l.trim().to_string();
                }
                (Some("v8"), Some(v)) => v8 = Some(v.to_string()),
                (Some("typescript"), Some(v)) => typescript = Some(v.to_string()),
                _ => {}
            }
        }
        Some(DenoVersion {
            deno: deno?,
            line,
            v8,
            typescript,
        })
    }
}

/// The Deno runtime. Cheap to build: deno is looked up at construction and its version
/// asked once, on first use; a missing deno shows in [`health`](Runtime::health) and
/// makes jobs fail with [`ComputeError::Unavailable`] (exit 4), never the node.
pub struct DenoRuntime {
    sandbox: Arc<Sandbox>,
    /// The real deno binary, or why there is none.
    deno: Result<PathBuf, String>,
    version: OnceLock<Result<DenoVersion, String>>,
    /// `<data_dir>/deno`.
    root: PathBuf,
    pids_limit: u32,
    /// The node's caches, pruned after a tool is prepared (none: unbounded).
    cache: Option<Arc<hanzo_compute::cache::Cache>>,
    /// One tool is prepared by one job at a time (striped by its hash): a prepare hands
    /// the tool's `gen/` to the tool user and takes it back when done, which must not
    /// happen under another job's prepare steps of the same tool, still writing there.
    preparing: [tokio::sync::Mutex<()>; PREPARE_STRIPES],
}

/// How many locks [`DenoRuntime::prepare`] stripes tools over.
const PREPARE_STRIPES: usize = 16;

impl DenoRuntime {
    /// A runtime running tools in `sandbox` with the deno of `config` (or `deno` on
    /// the node's PATH, past pyenv shims), its module cache under `<data_dir>/deno`,
    /// and at most `pids_limit` processes and threads per job (a Worker is a thread).
    pub fn new(sandbox: Arc<Sandbox>, config: &DenoConfig, data_dir: &Path, pids_limit: u32) -> DenoRuntime {
        let configured = Some(Path::new(&config.binary)).filter(|p| !p.as_os_str().is_empty());
        DenoRuntime {
            sandbox,
            deno: hanzo_sandbox::toolchain::find_program("deno", configured),
            version: OnceLock::new(),
            root: data_dir.join("deno"),
            pids_limit,
            cache: None,
            preparing: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
        }
    }

    /// Prunes `cache` to its quota after each tool prepared (jobs lease what they use
    /// whether or not this is set, so a prune by anyone never removes it under them).
    pub fn with_cache(mut self, cache: Arc<hanzo_compute::cache::Cache>) -> DenoRuntime {
        self.cache = Some(cache);
        self
    }

    /// The deno binary jobs run with, if found.
    pub fn deno_path(&self) -> Option<&Path> {
        self.deno.as_deref().ok()
    }

    /// The module cache (`DENO_DIR`): `<data_dir>/deno/cache`.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// In the tool's own `gen/`: pruning that removes the marker too (see `cache.rs`).
    fn marker(&self, hash: &str) -> PathBuf {
        self.emit_dir(hash).join(".hanzo-prepared")
    }

    /// The tool's own `gen/` (Deno's emit cache: transpiled code of the tool and of its
    /// remote TypeScript modules): `<data_dir>/deno/gen/<sha256>`. Shown at
    /// `DENO_DIR/gen`, writable to the prepare step and read-only to runs of this tool
    /// only. Deno writes the transpiled local module to `gen/file/<path>.js`, and
    /// `data:` imports to `gen/data/`: in a shared `gen/` any job could import another
    /// tool's code by its path (the sha256 is in receipts), since static imports need
    /// no read permission.
    pub fn emit_dir(&self, hash: &str) -> PathBuf {
        self.root.join("gen").join(hash)
    }

    /// deno's version, asked once (`deno --version`). Blocking the first time: async
    /// code calls [`probe_version`](Self::probe_version) first.
    pub fn version(&self) -> Result<&DenoVersion, String> {
        self.version
            .get_or_init(|| {
                let deno = self.deno.as_ref().map_err(|e| format!("{e}; {INSTALL_ADVICE}"))?;
                ask_version(deno, &self.root)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Asks `deno --version` on a blocking thread, once, so that [`version`](Self::version)
    /// then answers without running anything: an async worker must not wait for a
    /// process.
    async fn probe_version(&self) {
        if self.version.get().is_some() {
            return;
        }
        // A missing binary is reported by `version` itself, without running anything.
        let Ok(deno) = self.deno.clone() else { return };
        let home = self.root.clone();
        if let Ok(v) = tokio::task::spawn_blocking(move || ask_version(&deno, &home)).await {
            let _ = self.version.set(v);
        }
    }

    /// Whether runs share the module cache: only with bubblewrap, which can show it
    /// read-only at [`CACHE_GUEST`]. Without it each job has a private cache in its
    /// work directory (`$HOME/.cache/deno`), so there is nothing to poison, nothing
    /// shared, and `npm:` imports need `network: full`.
    pub fn shares_cache(&self) -> bool {
        self.sandbox.isolates_filesystem()
    }

    /// The environment every deno process gets on top of the job's.
    fn deno_env(&self, spec: &mut ProcessSpec) {
        if self.shares_cache() {
            spec.env.insert("DENO_DIR".into(), CACHE_GUEST.into());
        }
        spec.env.insert("NO_COLOR".into(), "1".into());
        spec.env.insert("DENO_NO_UPDATE_CHECK".into(), "1".into());
        // The host's certificate store as well as Deno's bundled one: a node behind a
        // TLS-inspecting proxy or a private registry trusts what the host trusts. (The
        // sandbox shows /etc/ssl only to runs that have the network.)
        spec.env
            .insert("DENO_TLS_CA_STORE".into(), "mozilla,system".into());
    }

    /// The module cache as a job sees it: [`SHARED_CACHE_DIRS`] and the tool's own
    /// [`emit_dir`](Self::emit_dir) at `gen/`, all writable for the prepare step and
    /// read-only for runs. Nothing else of `DENO_DIR`: deno's sqlite caches (module
    /// analysis of every tool prepared, keyed by its path holding its sha256) are
    /// never created (deno keeps them in memory when it cannot), nor the shared
    /// `gen/` of caches from before this layout.
    fn cache_mounts(&self, hash: &str, writable: bool) -> Vec<Mount> {
        let mut mounts: Vec<Mount> = SHARED_CACHE_DIRS
            .iter()
            .map(|d| Mount {
                host: self.cache_dir().join(d),
                guest: format!("{CACHE_GUEST}/{d}"),
                writable,
            })
            .collect();
        mounts.push(Mount {
            host: self.emit_dir(hash),
            guest: format!("{CACHE_GUEST}/gen"),
            writable,
        });
        mounts
    }

    /// Hands `dir`, which a prepare step writes, to the user the sandbox runs it as (a
    /// root node whose tools run as `nobody`).
    pub(crate) fn hand_over(&self, dir: &Path) -> Result<(), ComputeError> {
        self.sandbox.hand_to_tool(dir).map_err(|e| {
            ComputeError::internal(format!("cannot hand {} to the prepare step: {e}", dir.display()))
        })
    }

    /// Creates what [`cache_mounts`](Self::cache_mounts) mounts, and the marker's
    /// directory.
    fn create_dirs(&self, hash: &str) -> Result<(), ComputeError> {
        let mut dirs: Vec<PathBuf> = SHARED_CACHE_DIRS
            .iter()
            .map(|d| self.cache_dir().join(d))
            .collect();
        dirs.push(self.emit_dir(hash));
        for dir in dirs {
            std::fs::create_dir_all(&dir)
                .map_err(|e| ComputeError::internal(format!("cannot create {}: {e}", dir.display())))?;
        }
        Ok(())
    }

    /// Checks what only this runtime refuses; returns the permission flags.
    fn check(&self, job: &Job) -> Result<Vec<String>, ComputeError> {
        job.spec.validate()?;
        if job.spec.deterministic {
            return Err(ComputeError::invalid(
                "the deterministic profile is a WASM feature; the deno runtime cannot offer it",
            ));
        }
        if job.spec.function.as_deref() == Some("") {
            return Err(ComputeError::invalid("the function name is empty"));
        }
        // DENO_DIR, DENO_V8_FLAGS, DENO_AUTH_TOKENS ... steer deno itself (its cache, its
        // heap limit); they are the node's to set.
        if let Some(k) = job.spec.env.keys().find(|k| k.starts_with("DENO_")) {
            return Err(ComputeError::invalid(format!(
                "env {k} is reserved: DENO_* variables configure deno itself, which the node does"
            )));
        }
        // LD_PRELOAD / LD_LIBRARY_PATH / LD_AUDIT ... pointed at a .so in a mount would
        // load native code into the deno process itself: past all of Deno's permissions.
        if let Some(k) = job.spec.env.keys().find(|k| k.starts_with("LD_")) {
            return Err(ComputeError::invalid(format!(
                "env {k} is refused: LD_* variables load native code into deno, past its permissions"
            )));
        }
        if let Some(m) = job.spec.mounts.iter().find(|m| {
            let g = Path::new(&m.guest);
            g.starts_with(CACHE_GUEST) || Path::new(CACHE_GUEST).starts_with(g)
        }) {
            return Err(ComputeError::invalid(format!(
                "mount guest path {} overlaps the module cache at {CACHE_GUEST}",
                m.guest
            )));
        }
        flags::permission_flags(&job.spec)
    }

    /// The exact sandboxed command that runs `job` (once its dependencies are cached):
    /// for operators who want to see it, and for tests that check the sandbox on its
    /// own by widening Deno's permissions.
    pub fn command(&self, job: &Job) -> Result<ProcessSpec, ComputeError> {
        let deno = self.deno_or_unavailable()?;
        let permissions = self.check(job)?;
        let tool = ToolSource::read(&job.spec.source)?;
        Ok(self.run_spec(deno, job, &tool, permissions))
    }

    fn deno_or_unavailable(&self) -> Result<&Path, ComputeError> {
        let deno = self
            .deno
            .as_deref()
            .map_err(|e| ComputeError::Unavailable(format!("deno: {e}; {INSTALL_ADVICE}")))?;
        self.version()
            .map_err(|e| ComputeError::Unavailable(format!("deno: {e}")))?;
        Ok(deno)
    }

    fn run_spec(&self, deno: &Path, job: &Job, tool: &ToolSource, permissions: Vec<String>) -> ProcessSpec {
        let heap = flags::heap_limit_mb(job.spec.limits.memory_mb);
        let mut spec = ProcessSpec::for_job(deno, job)
            .args(["run", "--no-prompt", "--no-config", "--no-lock"])
            .arg(format!("--v8-flags=--max-old-space-size={heap}"))
            .ro_path(deno)
            .pids_limit(self.pids_limit);
        if self.shares_cache() {
            spec = spec.arg("--cached-only");
            for m in self.cache_mounts(&tool.hash, false) {
                spec = spec.mount(m);
            }
            // The tool's own V8 code cache, read-only (see codecache.rs).
            for m in codecache::run_mounts(&self.emit_dir(&tool.hash)) {
                spec = spec.mount(m);
            }
        }
        self.deno_env(&mut spec);
        spec.args(permissions)
            .arg(RUNNER_FILE)
            .file(RUNNER_FILE, runner_source(tool))
            .file(tool.work_path.clone(), tool.bytes.clone())
    }

    /// Resolves and downloads the tool's module graph into the shared cache, and
    /// transpiles it into the tool's own [`emit_dir`](Self::emit_dir), once per tool (a
    /// marker under `<data_dir>/deno/prepared/<sha256>` records it). Runs in the
    /// sandbox like a job, with its view of the cache writable, but executes none of
    /// the tool's code: `deno install --entrypoint` only loads and parses modules, and
    /// runs no npm lifecycle scripts. The network is given only when the source
    /// names a remote specifier, and Deno's default `--allow-import` list keeps remote
    /// imports to public module hosts (not the host's loopback services).
    async fn prepare(&self, deno: &Path, job: &Job, tool: &ToolSource) -> Result<(), ComputeError> {
        let version = format!(
            "{}\n{CACHE_LAYOUT}\n{}",
            self.version()
                .map_err(|e| ComputeError::Unavailable(format!("deno: {e}")))?
                .line,
            cache::generation(&self.cache_dir())
        );
        let stripe = tool
            .hash
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)))
            % PREPARE_STRIPES;
        let _one_at_a_time = self.preparing[stripe].lock().await;
        // Always: a run mounts these, and an operator may have pruned them.
        self.create_dirs(&tool.hash)?;
        let marker = self.marker(&tool.hash);
        // The marker is the version, then the code cache's line, which is checked
        // against the files before every job (see codecache.rs).
        if let Ok(m) = std::fs::read_to_string(&marker)
            && let Some(code) = m.strip_prefix(&version).and_then(|r| r.strip_prefix('\n'))
            && codecache::intact(&self.emit_dir(&tool.hash), code)
        {
            return Ok(());
        }
        let _step = job
            .progress
            .step("deno loading the tool and its imports (cached after the first run)");
        let mut spec = ProcessSpec::new(deno)
            .args([
                "install",
                "--quiet",
                "--no-config",
                "--no-lock",
                "--no-check",
                "--entrypoint",
            ])
            .arg(tool.work_path.clone())
            .env("PATH", TOOL_PATH)
            .env("LANG", "C.UTF-8")
            .ro_path(deno)
            .file(tool.work_path.clone(), tool.bytes.clone())
            .network(if tool.mentions_remote {
                Network::Full
            } else {
                Network::None
            })
            .limits(PREPARE_LIMITS)
            .pids_limit(self.pids_limit.max(hanzo_sandbox::DEFAULT_PIDS_LIMIT));
        for m in self.cache_mounts(&tool.hash, true) {
            // The step runs as the tool's user (never root): the cache must be that
            // user's to write.
            self.sandbox
                .hand_to_tool(&m.host)
                .map_err(|e| ComputeError::internal(format!("cannot prepare {}: {e}", m.host.display())))?;
            spec = spec.mount(m);
        }
        self.deno_env(&mut spec);
        let outcome = self.sandbox.run(spec, &job.cancel).await;
        match outcome.exit {
            Exit::Exited(0) => {
                let code = self.build_code_cache(deno, job, tool).await;
                // The tool's transpiled code and code cache become the node's: its jobs
                // read them, and no later step of that user can change them.
                let emit = self.emit_dir(&tool.hash);
                self.sandbox.take_back(&emit).map_err(|e| {
                    ComputeError::internal(format!("cannot take back {}: {e}", emit.display()))
                })?;
                let code = code?;
                // A lost marker only costs another prepare.
                let _ = std::fs::write(&marker, format!("{version}\n{code}"));
                Ok(())
            }
            Exit::Exited(_) | Exit::Signaled(_) => Err(ComputeError::invalid(format!(
                "cannot load the tool's modules: {}",
                deno_error(&outcome.stderr)
            ))),
            Exit::Cancelled => Err(ComputeError::Cancelled),
            Exit::Rejected(m) => Err(ComputeError::invalid(m)),
            Exit::SpawnFailed(m) => Err(ComputeError::internal(format!("cannot start deno: {m}"))),
            _ => match outcome.result() {
                Err(ComputeError::LimitExceeded { limit, detail }) => Err(ComputeError::limit(
                    limit,
                    format!("while fetching the tool's dependencies: {detail}"),
                )),
                Err(e) => Err(e),
                Ok(_) => Err(ComputeError::internal("the prepare step ended oddly")),
            },
        }
    }

    /// The job's result from the run's outcome, with V8's own heap limit named.
    fn finish(&self, job: &Job, tool: &ToolSource, outcome: ProcessOutcome) -> Execution {
        let by_signal = match outcome.exit {
            Exit::Signaled(_) => true,
            Exit::Exited(c) => c >= 128,
            _ => false,
        };
        let heap_oom = by_signal && flags::is_v8_heap_oom(&outcome.stderr);
        let cache_miss = outcome.exit != Exit::Exited(0)
            && String::from_utf8_lossy(&outcome.stderr).contains("--cached-only");
        let unknown_function = outcome.exit == Exit::Exited(EXIT_UNKNOWN_FUNCTION);
        let stdout = outcome.stdout.clone();
        let mut exec = outcome.execution(job, Some(tool.hash.clone()));
        // The runner's verdict on the function name: bad input, as in the other
        // runtimes (see EXIT_UNKNOWN_FUNCTION for what a tool faking it gains: nothing).
        if unknown_function
            && let Ok(serde_json::Value::Object(m)) = serde_json::from_slice(&stdout)
            && let Some(serde_json::Value::String(msg)) = m.get("error")
            && msg.starts_with("unknown function '")
        {
            exec.result = Err(ComputeError::invalid(msg.clone()));
        }
        if heap_oom {
            exec.result = Err(ComputeError::limit(
                LimitKind::Memory,
                format!(
                    "the JavaScript heap grew past its {} MiB cap (V8 --max-old-space-size, from memory_mb = {})",
                    flags::heap_limit_mb(job.spec.limits.memory_mb),
                    job.spec.limits.memory_mb
                ),
            ));
        }
        if cache_miss {
            // The cache lost something since the tool was prepared (an operator pruned
            // it): prepare again next time.
            let _ = std::fs::remove_file(self.marker(&tool.hash));
        }
        exec
    }
}

/// The tool's path as a JS string literal (serde_json writes a valid one for any path).
fn tool_literal(tool: &ToolSource) -> String {
    serde_json::Value::String(format!("./{}", tool.work_path)).to_string()
}

/// The runner for `tool`: the same bytes in every run and in the code-cache step, so
/// that the code cached there is used.
fn runner_source(tool: &ToolSource) -> String {
    RUNNER_SOURCE.replace("__HANZO_TOOL__", &tool_literal(tool))
}

/// The line of deno's stderr that says what went wrong (`error: ...`), else its last.
fn deno_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut lines = text.lines().skip_while(|l| !l.starts_with("error:"));
    lines
        .next()
        .map(|l| {
            let mut msg = l.trim_start_matches("error:").trim().to_string();
            // The first cause, when deno lists them ("    0: dns error ...").
            if let Some(cause) = lines.next().and_then(|l| l.trim().strip_prefix("0:")) {
                msg = format!("{msg}: {}", cause.trim());
            }
            msg
        })
        .or_else(|| hanzo_compute::stdio::last_log_line(stderr))
        .unwrap_or_else(|| "deno failed without a message".into())
}

/// Runs `deno --version` and parses it; blocking.
fn ask_version(deno: &Path, home: &Path) -> Result<DenoVersion, String> {
    // A host-side probe: a clean environment (no DENO_* or LD_* of whoever started the
    // node), HOME at the runtime's own directory.
    let out = hanzo_sandbox::toolchain::host_command(deno)
        .arg("--version")
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env("DENO_NO_UPDATE_CHECK", "1")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{} does not run: {e}; {INSTALL_ADVICE}", deno.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match DenoVersion::parse(&text) {
        Some(v) if out.status.success() => Ok(v),
        _ => Err(format!(
            "{} --version failed ({}): {}; {INSTALL_ADVICE}",
            deno.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

#[async_trait::async_trait]
impl Runtime for DenoRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Deno
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = self.sandbox.capabilities();
        let deno = match self.version() {
            Ok(v) => format!(
                "deno {}{}",
                v.deno,
                v.v8.as_ref().map(|v8| format!(" (V8 {v8})")).unwrap_or_default()
            ),
            Err(_) => "deno (not found)".into(),
        };
        c.isolation = format!(
            "{deno} with permissions deny-all unless granted, in {}",
            self.sandbox.describe()
        );
        let heap = "the V8 heap is capped at max(memory_mb/2, memory_mb-64) MiB \
                    (--max-old-space-size), and V8 giving up there is a memory limit error";
        if let Some(m) = c.limits.get_mut(&LimitKind::Memory) {
            match m.support {
                Support::Enforced => m.how = format!("{}; {heap}", m.how),
                // The heap cap is real, but ArrayBuffers and Deno's own memory are
                // outside it: without a memory cgroup the limit stays advisory.
                _ => {
                    m.support = Support::Advisory;
                    m.how = format!("{}; {heap}, but buffers and native memory are outside it", m.how);
                }
            }
        }
        if let Some(p) = c.limits.get_mut(&LimitKind::Processes) {
            p.how = format!(
                "{}; Deno refuses subprocesses (no --allow-run), and each Worker is a thread that counts",
                p.how
            );
        }
        c
    }

    async fn health(&self) -> Health {
        if let Err(e) = &self.deno {
            return Health::unavailable(format!("deno: {e}; {INSTALL_ADVICE}"));
        }
        self.probe_version().await;
        match self.version() {
            Ok(v) => Health::ok(v.deno.clone()),
            Err(e) => Health::unavailable(format!("deno: {e}")),
        }
    }

    async fn execute(&self, job: &Job) -> Execution {
        self.probe_version().await;
        let deno = match self.deno_or_unavailable() {
            Ok(d) => d,
            Err(e) => return Execution::rejected(&job.spec, e),
        };
        let permissions = match self.check(job) {
            Ok(p) => p,
            Err(e) => return Execution::rejected(&job.spec, e),
        };
        // Up to MAX_SOURCE_BYTES read and hashed: off the async workers.
        let source = job.spec.source.clone();
        let tool = match tokio::task::spawn_blocking(move || ToolSource::read(&source)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Execution::rejected(&job.spec, e),
            Err(e) => {
                return Execution::rejected(
                    &job.spec,
                    ComputeError::internal(format!("reading the tool: {e}")),
                );
            }
        };
        // Leases on the shared cache and the tool's gen/, held until the tool has ended.
        let mut _leases = None;
        if self.shares_cache() {
            let mut dirs: Vec<PathBuf> = SHARED_CACHE_DIRS
                .iter()
                .map(|d| self.cache_dir().join(d))
                .collect();
            dirs.push(self.emit_dir(&tool.hash));
            let marker = std::fs::read(self.marker(&tool.hash)).ok();
            let prepared = match cache::lease_tool(&self.cache_dir(), &dirs) {
                Ok(l) => {
                    _leases = Some(l);
                    self.prepare(deno, job, &tool).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = prepared {
                let mut exec = Execution::rejected(&job.spec, e);
                exec.code_hash = Some(tool.hash.clone());
                return exec;
            }
            if let Some(cache) = &self.cache
                && std::fs::read(self.marker(&tool.hash)).ok() != marker
            {
                cache.created().await;
            }
        }
        let spec = self.run_spec(deno, job, &tool, permissions);
        let outcome = self.sandbox.run(spec, &job.cancel).await;
        self.finish(job, &tool, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        let v = DenoVersion::parse(
            "deno 2.1.4 (stable, release, x86_64-unknown-linux-gnu)\nv8 13.0.245.12-rusty\ntypescript 5.6.2\n",
        )
        .unwrap();
        assert_eq!(v.deno, "2.1.4");
        assert_eq!(v.v8.as_deref(), Some("13.0.245.12-rusty"));
        assert_eq!(v.typescript.as_deref(), Some("5.6.2"));
        assert!(v.line.starts_with("deno 2.1.4 (stable"));
        assert!(DenoVersion::parse("node v20").is_none());
    }

    #[test]
    fn deno_errors_are_found() {
        assert_eq!(
            deno_error(b"Download x\nerror: Import 'https://x' failed.\n    0: dns\n"),
            "Import 'https://x' failed.: dns"
        );
        assert_eq!(deno_error(b"oops\n"), "oops");
    }
}

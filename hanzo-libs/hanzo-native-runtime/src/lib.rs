//! # hanzo-native-runtime
//!
//! hanzo-node's `native` runtime: native code, always in the process sandbox
//! ([`hanzo_sandbox`]), never in the node's own process.
//!
//! | SOURCE | what runs |
//! |---|---|
//! | an executable file (ELF program, PIE or `#!` script) | that file, under the stdio contract (CONTRACTS §1a) |
//! | an ELF shared library exporting `execute_tool` | the tool-host helper, which `dlopen`s it and calls `execute_tool` once |
//! | `builtin:<name>` | the tool-host helper, running one of the node's built-in tools ([`builtins`]) |
//!
//! The file is read once; its bytes are placed in the sandbox's work directory and what
//! runs is that copy, so the receipt's `code_hash` (sha256 of those bytes) names exactly
//! what ran, even if the file changes meanwhile.
//!
//! ## The cdylib ABI
//!
//! ```c
//! // Required. params: UTF-8 JSON, params_len bytes, followed by a NUL not counted in
//! // params_len. The function to run is the HANZO_FUNCTION environment variable
//! // (default "run"). Returns a NUL-terminated UTF-8 JSON envelope:
//! //   {"ok": <output>}   or   {"error": "<message>"}
//! // (the exports ABI's envelope, CONTRACTS §1b). NULL is a tool failure.
//! char *execute_tool(const uint8_t *params_ptr, size_t params_len);
//! // Optional. Called once with execute_tool's result after the helper copied it.
//! void hanzo_free_result(char *result);
//! ```
//!
//! The seed's symbol takes no function name, so the name travels the way it does for
//! every other native tool: in `HANZO_FUNCTION`. The Rust SDK's `hanzo_tool::export!`
//! emits both symbols for native builds of a tool crate's `cdylib`.
//!
//! The library is loaded only inside the tool-host helper ([`tool_host_main`]), a
//! process of its own in the sandbox: loading runs the library's constructors, and any
//! call into it can crash, leak or corrupt memory. In the helper that is one job's
//! failure (a crash is a tool failure, a spin a timeout), with every limit of the job
//! applied; in the node it would be every job's. Whatever the library prints on stdout
//! goes to the job's logs: the helper keeps stdout for the output document.
//!
//! ## The helper
//!
//! [`NativeRuntime::new`] takes the helper's path. In the node that is the node's own
//! binary (`std::env::current_exe()`), which must call [`tool_host_main`] when its first
//! argument is [`TOOL_HOST_SUBCOMMAND`]; this crate's `hanzo-tool-host` binary does
//! only that. The helper binary is shown read-only in the sandbox at its host path.

#![warn(missing_docs)]

mod builtins;
mod elf;
mod host;
mod source;

pub use builtins::{BuiltinInfo, builtins};
pub use host::tool_host_main;
pub use source::BUILTIN_PREFIX;

use hanzo_compute::cache::{Cache, Lease, Pool};
use hanzo_compute::{Capabilities, ComputeError, Execution, Health, Job, Runtime, RuntimeKind};
use hanzo_sandbox::{Exit, ProcessOutcome, ProcessSpec, Sandbox};
use source::Source;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The first argument that makes the helper binary (the node itself) act as the tool host:
/// `<helper> __tool-host cdylib <library>` / `<helper> __tool-host builtin <name>`.
pub const TOOL_HOST_SUBCOMMAND: &str = "__tool-host";

/// Work-directory names of the tool's copy.
const PROGRAM_FILE: &str = "tool";
const LIBRARY_FILE: &str = "tool.so";

/// The native runtime. Cheap to share; every job runs in a sandbox of its own.
pub struct NativeRuntime {
    sandbox: Arc<Sandbox>,
    helper: PathBuf,
    pids_limit: u32,
    /// sha256 of the helper's bytes, with the file identity it was computed for.
    helper_digest: Mutex<Option<(FileStamp, String)>>,
    /// Where tools' bytes are kept by digest (see [`NativeRuntime::with_store`]).
    store: Option<PathBuf>,
    /// SOURCE files already stored: identity → (kind, digest).
    stored: Mutex<std::collections::HashMap<(PathBuf, FileStamp), (StoredKind, String)>>,
    /// The node's caches, pruned after a tool is stored (none: unbounded).
    cache: Option<Arc<Cache>>,
}

/// A stored tool a job runs, with the lease that keeps a prune from removing it.
struct StoredTool {
    at: PathBuf,
    kind: StoredKind,
    hash: String,
    _lease: Lease,
    /// Stored by this call (the cache grew).
    new: bool,
}

/// Where this runtime keeps tools, for the node's cache quota: the store given to
/// [`NativeRuntime::with_store`] (`<data_dir>/native/<sha256>`, each an entry).
pub fn cache_pools(store: &Path) -> Vec<Pool> {
    vec![Pool::entries(RuntimeKind::Native, store)]
}

/// What a stored file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoredKind {
    Program,
    Library,
}

/// The most SOURCE identities remembered; past it the map starts afresh.
const MAX_REMEMBERED: usize = 4096;

/// Enough of a file's metadata to notice that it was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

impl NativeRuntime {
    /// A runtime that runs tools in `sandbox`, with `helper` as the tool-host program
    /// (see [`tool_host_main`]) and at most `pids_limit` processes and threads per job.
    pub fn new(sandbox: Arc<Sandbox>, helper: PathBuf, pids_limit: u32) -> NativeRuntime {
        NativeRuntime {
            sandbox,
            helper,
            pids_limit,
            helper_digest: Mutex::new(None),
            store: None,
            stored: Mutex::new(std::collections::HashMap::new()),
            cache: None,
        }
    }

    /// Prunes `cache` to its quota after each tool stored (jobs lease the stored tool
    /// they run whether or not this is set, so a prune by anyone never removes it
    /// under them).
    pub fn with_cache(mut self, cache: Arc<Cache>) -> NativeRuntime {
        self.cache = Some(cache);
        self
    }

    /// Keeps each tool's bytes in `dir` under their sha256 (written once, read-only)
    /// and, where the sandbox shows host files (bubblewrap), runs that stored copy
    /// read-only in place instead of copying the tool into every job. A SOURCE whose
    /// file identity (device, inode, size, mtime, ctime) is unchanged is not read or
    /// hashed again. What runs is always the stored copy, whose name is its digest, so
    /// the receipt's `code_hash` holds even if the SOURCE changes unnoticed.
    pub fn with_store(mut self, dir: PathBuf) -> NativeRuntime {
        self.store = Some(dir);
        self
    }

    /// The stored copy of SOURCE `path`, leased, storing it first when it is new (or
    /// again when a prune removed it before the lease). `None` when there is no store
    /// or the sandbox cannot show it.
    fn stored(&self, path: &str, disk_mb: u64) -> Option<Result<StoredTool, ComputeError>> {
        for _ in 0..3 {
            let (at, kind, hash, new) = match self.stored_once(path, disk_mb)? {
                Ok(s) => s,
                Err(e) => return Some(Err(e)),
            };
            match hanzo_compute::cache::lease(&at) {
                Ok(Some(lease)) => {
                    return Some(Ok(StoredTool {
                        at,
                        kind,
                        hash,
                        _lease: lease,
                        new,
                    }));
                }
                Ok(None) => continue,
                Err(e) => {
                    return Some(Err(ComputeError::internal(format!(
                        "cannot lock the stored tool: {e}"
                    ))));
                }
            }
        }
        Some(Err(ComputeError::Unavailable(
            "the stored tool was pruned three times before the job could use it; raise [node] cache_max_mb"
                .into(),
        )))
    }

    /// The stored copy of SOURCE `path` (its path, kind, digest, and whether it was
    /// stored now).
    fn stored_once(
        &self,
        path: &str,
        disk_mb: u64,
    ) -> Option<Result<(PathBuf, StoredKind, String, bool), ComputeError>> {
        let dir = self
            .store
            .as_ref()
            .filter(|_| self.sandbox.isolates_filesystem())?;
        let src = Path::new(path);
        let stamp = FileStamp::of(src).ok()?;
        let key = (std::fs::canonicalize(src).ok()?, stamp);
        let known = self.stored.lock().ok()?.get(&key).cloned();
        if let Some((kind, hash)) = known {
            let at = dir.join(&hash);
            if at.is_file() {
                return Some(Ok((at, kind, hash, false)));
            }
        }
        let (kind, bytes, hash) = match source::resolve(path, disk_mb) {
            Ok(Source::Program { bytes, hash }) => (StoredKind::Program, bytes, hash),
            Ok(Source::Library { bytes, hash }) => (StoredKind::Library, bytes, hash),
            Ok(Source::Builtin(_)) => return None,
            Err(e) => return Some(Err(ComputeError::InvalidInput(e.to_string()))),
        };
        let at = dir.join(&hash);
        let new = !at.is_file();
        if new && let Err(e) = store_file(dir, &at, &bytes) {
            return Some(Err(ComputeError::internal(format!("cannot store the tool: {e}"))));
        }
        if let Ok(mut m) = self.stored.lock() {
            if m.len() >= MAX_REMEMBERED {
                m.clear();
            }
            m.insert(key, (kind, hash.clone()));
        }
        Some(Ok((at, kind, hash, new)))
    }

    /// The tool-host helper's path.
    pub fn helper(&self) -> &Path {
        &self.helper
    }

    fn helper_problem(&self) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(&self.helper) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => None,
            Ok(_) => Some(format!(
                "the tool-host helper {} is not an executable file",
                self.helper.display()
            )),
            Err(e) => Some(format!(
                "the tool-host helper {} is missing ({e}); reinstall hanzo-node",
                self.helper.display()
            )),
        }
    }

    /// The receipt's `code_hash` of built-in `name`: sha256 of
    /// `hanzo-native-builtin:<name>:<sha256 of the helper binary>`. The built-in's code is
    /// part of the helper, so the hash changes with the helper and differs per built-in.
    /// The helper's digest is computed once and again only when the file changes.
    async fn builtin_hash(&self, name: &str) -> Result<String, ComputeError> {
        let stamp = FileStamp::of(&self.helper).map_err(|e| {
            ComputeError::Unavailable(format!("the tool-host helper {}: {e}", self.helper.display()))
        })?;
        let cached = self
            .helper_digest
            .lock()
            .map_err(ComputeError::internal)?
            .as_ref()
            .filter(|(s, _)| *s == stamp)
            .map(|(_, d)| d.clone());
        let digest = match cached {
            Some(d) => d,
            None => {
                let helper = self.helper.clone();
                let d = tokio::task::spawn_blocking(move || hash_file(&helper))
                    .await
                    .map_err(ComputeError::internal)?
                    .map_err(|e| {
                        ComputeError::Unavailable(format!("cannot read the tool-host helper: {e}"))
                    })?;
                *self.helper_digest.lock().map_err(ComputeError::internal)? = Some((stamp, d.clone()));
                d
            }
        };
        Ok(source::sha256_hex(
            format!("hanzo-native-builtin:{name}:{digest}").as_bytes(),
        ))
    }

    /// A spec that runs the helper for `job`: the helper binary shown read-only.
    fn helper_spec(&self, job: &Job, args: [&str; 2]) -> ProcessSpec {
        ProcessSpec::for_job(&self.helper, job)
            .arg(TOOL_HOST_SUBCOMMAND)
            .args(args)
            .ro_path(&self.helper)
            .pids_limit(self.pids_limit)
    }

    async fn run_helper(&self, job: &Job, spec: ProcessSpec, code_hash: String) -> Execution {
        let outcome = self.sandbox.run(spec, &job.cancel).await;
        let result = helper_result(&outcome);
        let mut ex = outcome.execution(job, Some(code_hash));
        if let Some(r) = result {
            ex.result = r;
        }
        ex
    }
}

/// Runs blocking file work (a stat on the warm path; reading and hashing a new tool)
/// without stalling a multi-threaded executor; directly on a current-thread one.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Writes `bytes` to `at` (in `dir`) atomically, read-only and executable: a stored
/// tool never changes after it is written.
fn store_file(dir: &Path, at: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o555))?;
    tmp.persist(at).map_err(|e| e.error)?;
    Ok(())
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// The helper's own exit codes, where they differ from the stdio contract's reading:
/// 2 is bad input, and a death by signal is the library crashing.
fn helper_result(o: &ProcessOutcome) -> Option<Result<serde_json::Value, ComputeError>> {
    let last = || hanzo_compute::stdio::last_log_line(&o.stderr);
    let crashed = |sig: i32| {
        let name = match sig {
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGABRT => "SIGABRT",
            libc::SIGBUS => "SIGBUS",
            libc::SIGILL => "SIGILL",
            libc::SIGFPE => "SIGFPE",
            libc::SIGKILL => "SIGKILL",
            libc::SIGSYS => "SIGSYS",
            libc::SIGTRAP => "SIGTRAP",
            _ => "signal",
        };
        Some(Err(ComputeError::ToolFailed(format!(
            "the tool crashed ({name}, signal {sig}){}",
            last().map(|l| format!(": {l}")).unwrap_or_default()
        ))))
    };
    match o.exit {
        Exit::Exited(host::BAD_INPUT) => Some(Err(ComputeError::InvalidInput(
            last().unwrap_or_else(|| "the tool host rejected the job".into()),
        ))),
        // bubblewrap reports a death by signal N as 128+N.
        Exit::Exited(code) if code > 128 && code < 128 + 65 => crashed(code - 128),
        Exit::Signaled(sig) => crashed(sig),
        _ => None,
    }
}

#[async_trait::async_trait]
impl Runtime for NativeRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Native
    }

    /// The sandbox's table as it stands: executables, libraries (in the helper) and
    /// built-ins (in the helper) are all processes of the sandbox, held to the same
    /// limits. Only the isolation line is extended.
    fn capabilities(&self) -> Capabilities {
        let mut c = self.sandbox.capabilities();
        c.isolation = format!(
            "{}; shared libraries and built-ins run in a helper process inside it",
            c.isolation
        );
        c
    }

    async fn health(&self) -> Health {
        match self.helper_problem() {
            None => Health::ok(format!("hanzo-native-runtime {}", env!("CARGO_PKG_VERSION"))),
            Some(p) => Health::unavailable(p),
        }
    }

    async fn execute(&self, job: &Job) -> Execution {
        if let Err(e) = job.spec.validate() {
            return Execution::rejected(&job.spec, e);
        }
        let disk_mb = job.spec.limits.disk_mb;
        if !job.spec.source.starts_with(BUILTIN_PREFIX) && self.store.is_some() {
            let stored = blocking(|| self.stored(&job.spec.source, disk_mb));
            // The tool's lease (in `t`) lives until the tool has ended.
            match stored {
                Some(Ok(t)) => {
                    if t.new
                        && let Some(cache) = &self.cache
                    {
                        cache.created().await;
                    }
                    if t.kind == StoredKind::Program {
                        let spec = ProcessSpec::for_job(&t.at, job)
                            .ro_path(&t.at)
                            .pids_limit(self.pids_limit);
                        return self
                            .sandbox
                            .run(spec, &job.cancel)
                            .await
                            .execution(job, Some(t.hash.clone()));
                    }
                    if let Some(p) = self.helper_problem() {
                        return Execution::rejected(&job.spec, ComputeError::Unavailable(p));
                    }
                    let spec = self
                        .helper_spec(job, ["cdylib", &t.at.to_string_lossy()])
                        .ro_path(&t.at);
                    return self.run_helper(job, spec, t.hash.clone()).await;
                }
                Some(Err(e)) => return Execution::rejected(&job.spec, e),
                None => {}
            }
        }
        let source = job.spec.source.clone();
        let resolved = match tokio::task::spawn_blocking(move || source::resolve(&source, disk_mb)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Execution::rejected(&job.spec, ComputeError::InvalidInput(e.to_string())),
            Err(e) => return Execution::rejected(&job.spec, ComputeError::internal(e)),
        };
        if !matches!(resolved, Source::Program { .. })
            && let Some(p) = self.helper_problem()
        {
            return Execution::rejected(&job.spec, ComputeError::Unavailable(p));
        }
        match resolved {
            Source::Program { bytes, hash } => {
                let spec = ProcessSpec::for_job(format!("./{PROGRAM_FILE}"), job)
                    .executable(PROGRAM_FILE, bytes)
                    .pids_limit(self.pids_limit);
                self.sandbox
                    .run(spec, &job.cancel)
                    .await
                    .execution(job, Some(hash))
            }
            Source::Library { bytes, hash } => {
                let spec = self
                    .helper_spec(job, ["cdylib", &format!("./{LIBRARY_FILE}")])
                    .file(LIBRARY_FILE, bytes);
                self.run_helper(job, spec, hash).await
            }
            Source::Builtin(name) => {
                let hash = match self.builtin_hash(&name).await {
                    Ok(h) => h,
                    Err(e) => return Execution::rejected(&job.spec, e),
                };
                let spec = self.helper_spec(job, ["builtin", &name]);
                self.run_helper(job, spec, hash).await
            }
        }
    }
}

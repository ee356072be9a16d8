//! The environment cache: one virtual environment per (dependency set, requires-python,
//! interpreter), built once by uv and shared read-only by every job that needs it.
//!
//! `<data_dir>/python/envs/<key>`, `key` = sha256 of [`EnvKey::canonical`]. An
//! environment is built in `<envs>/.tmp-<key>-<nonce>` and renamed into place only when
//! complete, so a job either finds a whole environment or none; a build that fails or
//! is cancelled removes its temporary directory. Builds of one key are serialised by an
//! in-process lock and a `flock` on `<envs>/.lock-<key>` (nodes sharing a data
//! directory), and whoever gets the lock second finds the environment built. Both are
//! released when the build ends: the map entry and the lock file are removed, so neither
//! grows with the number of keys ever built.
//!
//! The uv cache is shared by every environment and is writable during installs, so no
//! process that can run package code may ever see it: uv only downloads and unpacks
//! wheels (no `--compile-bytecode`, which starts the environment's python with `site`
//! and so runs every `.pth` file a wheel ships), and bytecode is compiled afterwards in a
//! step of its own that sees only the new environment, with no network and `site` off.

use crate::toolchain::Toolchain;
use hanzo_compute::{CancelToken, ComputeError, Mount, Network, ResourceLimits};
use hanzo_sandbox::{Exit, ProcessSpec, Sandbox};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The most an environment build may take (uv venv and uv pip install together).
/// Installs are the node's work, not the tool's, so they do not count against the
/// job's `timeout_ms`; this bounds them instead.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Memory and scratch space of the sandboxed installer.
const INSTALL_MEMORY_MB: u64 = 2048;
const INSTALL_DISK_MB: u64 = 1024;
/// uv resolves and downloads with a thread pool per core.
const INSTALL_PIDS: u32 = 512;

/// Version of the key's layout: bump it when what goes into an environment changes.
const KEY_VERSION: &str = "hanzo-python-env/1";

/// Node environment variables handed to uv: proxies, certificates and the operator's
/// choice of package index. Nothing else of the node's environment reaches it.
const UV_PASSTHROUGH: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_INDEX",
    "UV_NATIVE_TLS",
    "UV_OFFLINE",
];

/// What an environment is built from; equal keys give interchangeable environments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvKey {
    /// Normalised, sorted, de-duplicated requirements.
    pub dependencies: Vec<String>,
    /// The script's `requires-python`, as written.
    pub requires_python: Option<String>,
    /// The interpreter: its real path, full version string and cache tag.
    pub interpreter: String,
}

impl EnvKey {
    /// The text that is hashed: one field per line, dependencies one per line.
    pub fn canonical(&self) -> String {
        let mut s = format!(
            "{KEY_VERSION}\ninterpreter={}\nrequires-python={}\nwheels-only=true\n",
            self.interpreter,
            self.requires_python.as_deref().unwrap_or("")
        );
        for d in &self.dependencies {
            s.push_str("dependency=");
            s.push_str(d);
            s.push('\n');
        }
        s
    }

    /// sha256 (hex) of [`canonical`](Self::canonical): the environment's directory name.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
    }
}

/// The environment cache under `<data_dir>/python`.
#[derive(Debug)]
pub(crate) struct EnvCache {
    envs: PathBuf,
    uv_cache: PathBuf,
    locks: KeyLocks,
}

/// The in-process build locks, one per key being built (or waited for) right now.
type KeyLocks = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// Holds a key's in-process lock; dropping it (also when the waiting future is
/// dropped on cancellation) removes the map entry once nobody else holds or awaits it.
struct LocalLock<'a> {
    map: &'a KeyLocks,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for LocalLock<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Clones are only made under this map lock, so a count of one (the map's own)
        // means no task holds or waits for the entry: removing it cannot split waiters.
        if m.get(&self.key).is_some_and(|a| Arc::strong_count(a) == 1) {
            m.remove(&self.key);
        }
    }
}

/// Holds the `flock` on `envs/.lock-<key>`; dropping it removes the file (then
/// unlocks by closing it). A waiter that then gets the lock on the removed file sees
/// that the path no longer names it and locks the path afresh ([`lock_file`]).
struct FileLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Locks `path` (created if missing), retrying until the locked file is the one the
/// path names: the previous holder removes the file when it is done.
fn lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    loop {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        f.lock()?;
        let held = f.metadata()?;
        if let Ok(now) = std::fs::metadata(path)
            && now.ino() == held.ino()
            && now.dev() == held.dev()
        {
            return Ok(f);
        }
    }
}

impl EnvCache {
    pub(crate) fn new(data_dir: &Path) -> Self {
        let root = data_dir.join("python");
        EnvCache {
            envs: root.join("envs"),
            uv_cache: root.join("uv-cache"),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// `<data_dir>/python/envs`.
    pub(crate) fn envs_dir(&self) -> &Path {
        &self.envs
    }

    /// `<data_dir>/python/uv-cache`.
    pub(crate) fn uv_cache_dir(&self) -> &Path {
        &self.uv_cache
    }

    /// The environment for `key`, built first if it does not exist yet, and whether it
    /// was built now.
    pub(crate) async fn ensure(
        &self,
        key: &EnvKey,
        tc: &Toolchain,
        sandbox: &Sandbox,
        cancel: &CancelToken,
    ) -> Result<(PathBuf, bool), ComputeError> {
        let hash = key.hash();
        let dir = self.envs.join(&hash);
        // The fast path: renamed into place only when complete, so existing means ready.
        if is_env(&dir) {
            return Ok((dir, false));
        }
        let _local = self.lock_key(&hash, cancel).await?;
        if is_env(&dir) {
            return Ok((dir, false));
        }
        std::fs::create_dir_all(&self.envs)
            .map_err(|e| ComputeError::internal(format!("cannot create {}: {e}", self.envs.display())))?;
        // The shared uv cache is in use for the whole build: a prune skips it.
        let _uv_lease = hanzo_compute::cache::lease_dir(&self.uv_cache)?;
        let lock_path = self.envs.join(format!(".lock-{hash}"));
        let file_lock = {
            let path = lock_path.clone();
            tokio::task::spawn_blocking(move || lock_file(&path))
        };
        let _file_lock = tokio::select! {
            r = file_lock => FileLock {
                path: lock_path,
                _file: r
                    .map_err(ComputeError::internal)?
                    .map_err(|e| ComputeError::internal(format!("cannot lock the environment {hash}: {e}")))?,
            },
            _ = cancel.cancelled() => return Err(ComputeError::Cancelled),
        };
        if is_env(&dir) {
            return Ok((dir, false));
        }
        // Leftovers of a build that crashed with the node: nobody else builds this key
        // while we hold its lock.
        if let Ok(rd) = std::fs::read_dir(&self.envs) {
            let prefix = format!(".tmp-{hash}-");
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let tmp = self
            .envs
            .join(format!(".tmp-{hash}-{}", hanzo_compute::new_job_id()));
        let built = self.build(key, tc, sandbox, cancel, &tmp).await;
        let done = built.and_then(|()| {
            // What the steps' user wrote becomes the node's: jobs (and later steps of
            // that user) get the finished environment read-only.
            sandbox
                .take_back(&tmp)
                .and_then(|()| std::fs::write(tmp.join("hanzo-env.txt"), key.canonical()))
                .and_then(|()| std::fs::rename(&tmp, &dir))
                .map_err(|e| ComputeError::internal(format!("cannot finish the environment {hash}: {e}")))
        });
        if done.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        done.map(|()| (dir, true))
    }

    /// Takes the in-process lock of `key`.
    async fn lock_key(&self, key: &str, cancel: &CancelToken) -> Result<LocalLock<'_>, ComputeError> {
        let shared = {
            let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(key.to_string()).or_default().clone()
        };
        // Made before waiting, so a cancelled wait also removes the entry.
        let mut held = LocalLock {
            map: &self.locks,
            key: key.to_string(),
            guard: None,
        };
        // select! drops the unfinished lock future (and its Arc) before the handler
        // runs, so `held`'s drop on cancellation sees the true count.
        held.guard = Some(tokio::select! {
            g = shared.lock_owned() => g,
            _ = cancel.cancelled() => return Err(ComputeError::Cancelled),
        });
        Ok(held)
    }

    /// `uv venv` then `uv pip install`, into `tmp`.
    async fn build(
        &self,
        key: &EnvKey,
        tc: &Toolchain,
        sandbox: &Sandbox,
        cancel: &CancelToken,
        tmp: &Path,
    ) -> Result<(), ComputeError> {
        if !sandbox.isolates_filesystem() {
            return Err(unsandboxed(sandbox));
        }
        let python = tmp.join("bin").join("python");
        let venv = vec![
            "venv".to_string(),
            "--no-config".into(),
            "--relocatable".into(),
            "--quiet".into(),
            "--python".into(),
            tc.python.executable.display().to_string(),
            tmp.display().to_string(),
        ];
        // Wheels only (`--no-build`): building a source distribution runs its setup.py
        // or build backend, arbitrary code from the index, at install time. Installing
        // a wheel only unpacks files. No `--compile-bytecode`: uv compiles by starting
        // the environment's python with `site` on, which executes every `.pth` file
        // the wheels just installed, i.e. package code in a process that has the
        // network and the shared uv cache writable (it could rewrite other packages
        // there for every later install). The only python uv starts here is its
        // interpreter query, before anything is installed. `--no-config` keeps the
        // host's uv.toml (and any credentials in it) out; `--` ends the options
        // before the requirements.
        let mut install = vec![
            "pip".to_string(),
            "install".into(),
            "--no-config".into(),
            "--no-build".into(),
            "--link-mode".into(),
            "copy".into(),
            "--python".into(),
            python.display().to_string(),
            "--".into(),
        ];
        install.extend(key.dependencies.iter().cloned());
        for d in [tmp, self.uv_cache.as_path()] {
            // The steps run as the sandbox's tool user, who is handed these (in uv()).
            std::fs::create_dir_all(d)
                .map_err(|e| ComputeError::internal(format!("cannot create {}: {e}", d.display())))?;
        }
        for args in [venv, install] {
            self.uv(tc, sandbox, cancel, tmp, args).await?;
        }
        self.compile(tc, sandbox, cancel, tmp, &python).await
    }

    /// Compiles the environment's bytecode (jobs see it read-only, so they could not
    /// write `__pycache__` themselves). `-I -S`: `site` is off, so no `.pth` file
    /// runs, and `compileall` only compiles the sources, it never imports them; the
    /// standard library alone is on `sys.path`. Defence in depth on top: the sandbox
    /// shows only this environment writable, not the uv cache, and has no network.
    /// Bytecode is an optimisation, so a file that does not compile (a package may
    /// ship sources for another Python) or a failed run leaves the environment as it
    /// is, usable without it; only cancellation ends the build.
    async fn compile(
        &self,
        tc: &Toolchain,
        sandbox: &Sandbox,
        cancel: &CancelToken,
        tmp: &Path,
        python: &Path,
    ) -> Result<(), ComputeError> {
        let args: Vec<String> = vec![
            "-I".into(),
            "-S".into(),
            "-m".into(),
            "compileall".into(),
            "-q".into(),
            "-j".into(),
            "0".into(),
            tmp.join("lib").display().to_string(),
        ];
        let env = vec![("PATH".to_string(), hanzo_sandbox::TOOL_PATH.to_string())];
        match self
            .run_step(python, args, env, Network::None, &[tmp], tc, sandbox, cancel)
            .await
        {
            Err(ComputeError::Cancelled) => Err(ComputeError::Cancelled),
            _ => Ok(()),
        }
    }

    /// Runs uv once, with the environment and the uv cache writable and the network.
    async fn uv(
        &self,
        tc: &Toolchain,
        sandbox: &Sandbox,
        cancel: &CancelToken,
        tmp: &Path,
        args: Vec<String>,
    ) -> Result<(), ComputeError> {
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), hanzo_sandbox::TOOL_PATH.into()),
            ("UV_CACHE_DIR".into(), self.uv_cache.display().to_string()),
            ("UV_NO_CONFIG".into(), "1".into()),
            ("UV_PYTHON_DOWNLOADS".into(), "never".into()),
            ("UV_NO_PROGRESS".into(), "1".into()),
            ("NO_COLOR".into(), "1".into()),
        ];
        for k in UV_PASSTHROUGH {
            if let Ok(v) = std::env::var(k) {
                env.push((k.to_string(), v));
            }
        }
        let writable = [tmp, self.uv_cache.as_path()];
        self.run_step(&tc.uv, args, env, Network::Full, &writable, tc, sandbox, cancel)
            .await
    }

    /// Runs one build step in the sandbox, with only `writable` writable (as the
    /// sandbox's tool user). Without bubblewrap no step runs: uv on the host would
    /// install as the node, with the node's view of the machine.
    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        program: &Path,
        args: Vec<String>,
        env: Vec<(String, String)>,
        network: Network,
        writable: &[&Path],
        tc: &Toolchain,
        sandbox: &Sandbox,
        cancel: &CancelToken,
    ) -> Result<(), ComputeError> {
        if !sandbox.isolates_filesystem() {
            return Err(unsandboxed(sandbox));
        }
        let (code, stderr) = {
            let mut spec = ProcessSpec::new(program)
                .args(args)
                .network(network)
                .pids_limit(INSTALL_PIDS)
                .limits(ResourceLimits {
                    memory_mb: INSTALL_MEMORY_MB,
                    disk_mb: INSTALL_DISK_MB,
                    timeout_ms: INSTALL_TIMEOUT.as_millis() as u64,
                    ..ResourceLimits::default()
                });
            for (k, v) in env {
                spec = spec.env(k, v);
            }
            for p in tc.ro_paths() {
                spec = spec.ro_path(p);
            }
            for dir in writable {
                // The step runs as the tool's user (never root): the directories it
                // writes must be that user's.
                sandbox
                    .hand_to_tool(dir)
                    .map_err(|e| ComputeError::internal(format!("cannot prepare {}: {e}", dir.display())))?;
                spec = spec.mount(Mount {
                    host: dir.to_path_buf(),
                    guest: dir.display().to_string(),
                    writable: true,
                });
            }
            let out = sandbox.run(spec, cancel).await;
            let code = match out.exit {
                Exit::Exited(c) => c,
                Exit::Cancelled => return Err(ComputeError::Cancelled),
                Exit::TimedOut => {
                    return Err(ComputeError::Unavailable(format!(
                        "installing the script's dependencies took longer than {} s",
                        INSTALL_TIMEOUT.as_secs()
                    )));
                }
                other => {
                    return Err(ComputeError::internal(format!(
                        "the dependency installer ended with {other:?}: {}",
                        hanzo_compute::stdio::last_log_line(&out.stderr).unwrap_or_default()
                    )));
                }
            };
            (code, out.stderr)
        };
        if code == 0 {
            return Ok(());
        }
        Err(install_error(&String::from_utf8_lossy(&stderr)))
    }
}

/// Why no environment can be built on this host (exit 4).
fn unsandboxed(sandbox: &Sandbox) -> ComputeError {
    let why = if sandbox.notes().is_empty() {
        String::new()
    } else {
        format!(" ({})", sandbox.notes().join("; "))
    };
    ComputeError::Unavailable(format!(
        "installing a script's dependencies runs only in the process sandbox, which needs bubblewrap here{why}; \
         install bubblewrap (scripts without dependencies still run)"
    ))
}

/// Whether `dir` is a finished environment.
fn is_env(dir: &Path) -> bool {
    dir.join("hanzo-env.txt").is_file()
}

/// uv's `error:` and `cause:` lines, as one line.
fn uv_message(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let start = lines.iter().position(|l| l.starts_with("error:"));
    let picked: Vec<&str> = match start {
        Some(i) => lines[i..]
            .iter()
            .map(|l| {
                l.trim_start_matches("error:")
                    .trim_start_matches("cause:")
                    .trim_start_matches(['×', '╰', '─', '▶', '│'])
                    .trim()
            })
            .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
            .collect(),
        None => lines.last().into_iter().copied().collect(),
    };
    if picked.is_empty() {
        "uv failed without a message".into()
    } else {
        picked.join(": ")
    }
}

/// A failed install: unreachable index → unavailable (exit 4); anything else is the
/// script's dependency set (no such package, no matching version, no wheel) → bad
/// input (exit 2).
fn install_error(stderr: &str) -> ComputeError {
    let msg = uv_message(stderr);
    let network = [
        "Failed to fetch",
        "error sending request",
        "dns error",
        "Could not connect",
        "Connection refused",
        "timed out",
        "network is unreachable",
    ];
    if network.iter().any(|n| stderr.contains(n)) && !msg.contains("was not found in the package registry") {
        ComputeError::Unavailable(format!("cannot install the script's dependencies: {msg}"))
    } else {
        ComputeError::invalid(format!("cannot install the script's dependencies: {msg}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_field() {
        let k = EnvKey {
            dependencies: vec!["a".into()],
            requires_python: None,
            interpreter: "/usr/bin/python3 3.11".into(),
        };
        let mut k2 = k.clone();
        k2.dependencies.push("b".into());
        let mut k3 = k.clone();
        k3.requires_python = Some(">=3".into());
        let mut k4 = k.clone();
        k4.interpreter = "/other 3.12".into();
        let hashes = [k.hash(), k2.hash(), k3.hash(), k4.hash()];
        for (i, a) in hashes.iter().enumerate() {
            assert_eq!(a.len(), 64);
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(k.hash(), k.clone().hash());
    }

    #[test]
    fn uv_errors_become_one_line() {
        let e = install_error(
            "Using Python 3.11.7 environment at: x\nerror: No solution found when resolving dependencies\n  cause: Because nope was not found in the package registry and you require nope, we can conclude that your requirements are unsatisfiable.\n",
        );
        assert_eq!(e.exit_code(), 2);
        let m = e.to_string();
        assert!(
            m.contains("No solution found") && m.contains("nope was not found"),
            "{m}"
        );
        assert!(!m.contains('\n'));
        let e = install_error("error: Failed to fetch: `https://pypi.org/simple/x/`\n  cause: dns error\n");
        assert_eq!(e.exit_code(), 4);
    }

    #[tokio::test]
    async fn key_locks_are_removed_when_released_or_cancelled() {
        let data = std::env::temp_dir().join(format!("hanzo-py-locks-{}", std::process::id()));
        let cache = EnvCache::new(&data);
        let live = |c: &EnvCache| c.locks.lock().unwrap().len();
        let cancel = CancelToken::new();
        let a = cache.lock_key("k1", &cancel).await.unwrap();
        assert_eq!(live(&cache), 1);
        // A second waiter for the same key, cancelled while it waits.
        let waiting = CancelToken::new();
        let w = cache.lock_key("k1", &waiting);
        waiting.cancel();
        assert!(matches!(w.await, Err(ComputeError::Cancelled)));
        assert_eq!(live(&cache), 1, "the holder's entry stays");
        drop(a);
        assert_eq!(live(&cache), 0);
        for i in 0..50 {
            drop(cache.lock_key(&format!("k{i}"), &cancel).await.unwrap());
        }
        assert_eq!(live(&cache), 0);
    }

    #[test]
    fn a_lock_file_is_removed_and_a_waiter_relocks_the_new_one() {
        let dir = std::env::temp_dir().join(format!("hanzo-py-lockfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".lock-x");
        let first = FileLock {
            path: path.clone(),
            _file: lock_file(&path).unwrap(),
        };
        // The waiter opens the same file, then blocks on it.
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let f = lock_file(&p).unwrap();
            let ino = f.metadata().unwrap().ino();
            (ino, std::fs::metadata(&p).map(|m| m.ino()).ok())
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(first);
        let (held, named) = waiter.join().unwrap();
        assert_eq!(Some(held), named, "the waiter holds the file the path names");
        std::fs::remove_file(&path).unwrap();
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

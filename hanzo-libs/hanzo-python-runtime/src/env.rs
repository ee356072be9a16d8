//! The environment cache: one virtual environment per (dependency set, requires-python,
//! interpreter), built once by uv and shared read-only by every job that needs it.
//!
//! `<data_dir>/python/envs/<key>`, `key` = sha256 of [`EnvKey::canonical`]. An
//! environment is built in `<envs>/.tmp-<key>-<nonce>` and renamed into place only when
//! complete, so a job either finds a whole environment or none; a build that fails or
//! is cancelled removes its temporary directory. Builds of one key are serialised by an
//! in-process lock and a `flock` on `<envs>/.lock-<key>` (nodes sharing a data
//! directory), and whoever gets the lock second finds the environment built.

use crate::toolchain::Toolchain;
use hanzo_compute::{CancelToken, ComputeError, Mount, Network, ResourceLimits};
use hanzo_sandbox::{Exit, ProcessSpec, Sandbox};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
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
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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

    /// The environment for `key`, built first if it does not exist yet.
    pub(crate) async fn ensure(
        &self,
        key: &EnvKey,
        tc: &Toolchain,
        sandbox: &Sandbox,
        cancel: &CancelToken,
    ) -> Result<PathBuf, ComputeError> {
        let hash = key.hash();
        let dir = self.envs.join(&hash);
        // The fast path: renamed into place only when complete, so existing means ready.
        if is_env(&dir) {
            return Ok(dir);
        }
        let local = {
            let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(hash.clone()).or_default().clone()
        };
        let _local = tokio::select! {
            g = local.lock() => g,
            _ = cancel.cancelled() => return Err(ComputeError::Cancelled),
        };
        if is_env(&dir) {
            return Ok(dir);
        }
        std::fs::create_dir_all(&self.envs)
            .and_then(|_| std::fs::create_dir_all(&self.uv_cache))
            .map_err(|e| ComputeError::internal(format!("cannot create {}: {e}", self.envs.display())))?;
        let lock_path = self.envs.join(format!(".lock-{hash}"));
        let file_lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)?;
            f.lock()?;
            Ok(f)
        });
        let _file_lock = tokio::select! {
            r = file_lock => r
                .map_err(ComputeError::internal)?
                .map_err(|e| ComputeError::internal(format!("cannot lock the environment {hash}: {e}")))?,
            _ = cancel.cancelled() => return Err(ComputeError::Cancelled),
        };
        if is_env(&dir) {
            return Ok(dir);
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
            std::fs::write(tmp.join("hanzo-env.txt"), key.canonical())
                .and_then(|()| std::fs::rename(&tmp, &dir))
                .map_err(|e| ComputeError::internal(format!("cannot finish the environment {hash}: {e}")))
        });
        if done.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        done.map(|()| dir)
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
        // a wheel only unpacks files. `--no-config` keeps the host's uv.toml (and any
        // credentials in it) out; `--` ends the options before the requirements.
        let mut install = vec![
            "pip".to_string(),
            "install".into(),
            "--no-config".into(),
            "--no-build".into(),
            "--compile-bytecode".into(),
            "--link-mode".into(),
            "copy".into(),
            "--python".into(),
            python.display().to_string(),
            "--".into(),
        ];
        install.extend(key.dependencies.iter().cloned());
        std::fs::create_dir_all(tmp)
            .map_err(|e| ComputeError::internal(format!("cannot create {}: {e}", tmp.display())))?;
        for args in [venv, install] {
            self.uv(tc, sandbox, cancel, tmp, args).await?;
        }
        Ok(())
    }

    /// Runs uv once: in the sandbox when it can show only the environment and the uv
    /// cache writable, else (no bubblewrap) as a plain child of the node.
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
        let (code, stderr) = if sandbox.isolates_filesystem() {
            let mut spec = ProcessSpec::new(&tc.uv)
                .args(args)
                .network(Network::Full)
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
            for dir in [tmp, &self.uv_cache] {
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
        } else {
            run_on_host(&tc.uv, &args, &env, cancel).await?
        };
        if code == 0 {
            return Ok(());
        }
        Err(install_error(&String::from_utf8_lossy(&stderr)))
    }
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

async fn run_on_host(
    uv: &Path,
    args: &[String],
    env: &[(String, String)],
    cancel: &CancelToken,
) -> Result<(i32, Vec<u8>), ComputeError> {
    let mut cmd = tokio::process::Command::new(uv);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().cloned())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| ComputeError::internal(format!("cannot run {}: {e}", uv.display())))?;
    tokio::select! {
        out = tokio::time::timeout(INSTALL_TIMEOUT, child.wait_with_output()) => match out {
            Ok(Ok(o)) => Ok((o.status.code().unwrap_or(-1), o.stderr)),
            Ok(Err(e)) => Err(ComputeError::internal(format!("uv: {e}"))),
            Err(_) => Err(ComputeError::Unavailable(format!(
                "installing the script's dependencies took longer than {} s",
                INSTALL_TIMEOUT.as_secs()
            ))),
        },
        _ = cancel.cancelled() => Err(ComputeError::Cancelled),
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
}

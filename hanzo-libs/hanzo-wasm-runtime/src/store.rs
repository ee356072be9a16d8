//! The content-addressed module store on disk.
//!
//! `<dir>/<sha256>.wasm` holds a module's bytes and `<dir>/<sha256>.<engine>.cwasm` the
//! machine code wasmtime compiled from it for one engine configuration, so that a
//! restarted node maps the code back in instead of compiling again. Every file is
//! written to a temporary name and renamed into place, so a crash never leaves a
//! half-written module under its final name.
//!
//! The store may have a quota (`[node] modules_max_mb`): past it, whole modules (the
//! `.wasm` and its artifacts) are removed least recently used first, skipping those a
//! job of this process is loading or running. A module's last use is its `.wasm`'s
//! mtime, set when it is stored and when a process first loads it. Registered tools and
//! queued jobs do not pin a module: one that names an evicted module fails with an
//! "unknown module" error until the module is added again.

use hanzo_compute::ComputeError;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The first eight bytes of a core WebAssembly module (magic and version 1).
const CORE_MODULE_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/// The largest module accepted, binary or WAT text, in bytes (the API's body limit too):
/// validation and compilation take time and memory in proportion to it.
pub const MAX_MODULE_BYTES: u64 = 64 * 1024 * 1024;

/// Temporary files older than this are left-overs (twice the default largest timeout).
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

/// Modules by sha256, with their compiled artifacts.
#[derive(Debug, Clone)]
pub struct ModuleStore {
    dir: PathBuf,
    /// Bytes the store may take on disk (modules and artifacts); 0 means unbounded.
    quota: u64,
    /// One prune at a time in this process.
    pruning: Arc<Mutex<()>>,
}

/// One module as a prune sees it: its files and their total size.
#[derive(Debug)]
struct StoredModule {
    sha: String,
    files: Vec<PathBuf>,
    bytes: u64,
    /// Bytes of the `.wasm` alone.
    module_bytes: u64,
    last_used: SystemTime,
    /// Whether its `.wasm` is there (artifacts can outlive a module removed by hand).
    has_module: bool,
}

impl StoredModule {
    fn info(&self) -> ModuleInfo {
        ModuleInfo {
            sha256: self.sha.clone(),
            module_bytes: self.module_bytes,
            bytes: self.bytes,
            last_used: self.last_used,
        }
    }
}

/// A module in the store, as [`ModuleStore::modules`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// sha256 (hex) of the binary module.
    pub sha256: String,
    /// Bytes of the module itself (`<sha256>.wasm`).
    pub module_bytes: u64,
    /// Bytes on disk: the module and the machine code compiled from it.
    pub bytes: u64,
    /// Its last use: when it was stored, or a process last loaded it.
    pub last_used: SystemTime,
}

impl ModuleStore {
    /// Opens (creating if needed) a store in `dir`, unbounded.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ComputeError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| {
            ComputeError::internal(format!("cannot create module store {}: {e}", dir.display()))
        })?;
        Ok(ModuleStore {
            dir,
            quota: 0,
            pruning: Arc::new(Mutex::new(())),
        })
    }

    /// The same store with a quota of `bytes` (0: unbounded).
    pub fn with_quota(mut self, bytes: u64) -> Self {
        self.quota = bytes;
        self
    }

    /// The quota in bytes; 0 means unbounded.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds a module (binary, or WAT text) and returns its sha256. The digest is that
    /// of the binary module, whichever form was given. It is not validated here:
    /// `WasmRuntime::add_module` validates before it stores.
    #[cfg(test)]
    pub(crate) fn put(&self, bytes: &[u8]) -> Result<String, ComputeError> {
        let binary = to_binary(bytes, "the module")?;
        let sha = hanzo_compute::receipt::sha256_hex(&binary);
        self.put_binary(&sha, &binary)?;
        Ok(sha)
    }

    /// Adds a binary module whose sha256 the caller has already computed; true when it
    /// was not there before.
    pub(crate) fn put_binary(&self, sha: &str, binary: &[u8]) -> Result<bool, ComputeError> {
        let path = self.wasm_path(sha);
        if path.exists() {
            self.touch(sha);
            return Ok(false);
        }
        write_atomic(&path, binary)?;
        Ok(true)
    }

    /// Records a use of the module (its `.wasm`'s mtime), for LRU eviction. A failure
    /// only makes it look older than it is.
    pub(crate) fn touch(&self, sha: &str) {
        if let Ok(f) = std::fs::File::open(self.wasm_path(sha)) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// Disk space the store takes: modules, artifacts and anything else in it.
    pub fn usage(&self) -> u64 {
        let (modules, strays) = self.scan_all(false);
        modules.iter().map(|m| m.bytes).sum::<u64>() + strays
    }

    /// Every module with its files, size and last use.
    fn scan(&self) -> Vec<StoredModule> {
        self.scan_all(false).0
    }

    /// One pass over the directory (every node start and every new module prunes; it
    /// used to list the directory three times, with a `statx` per file each time):
    /// every module with its files, size and last use, and the bytes of files
    /// that belong to no module (compilations in progress). With `sweep`, temporary
    /// files (`*.tmp*`) older than [`STALE_TMP`] are removed on the way and not counted:
    /// left by a node or a compiler process that died mid-write. A live write is never
    /// that old (a compile is killed at its job's deadline, at most
    /// `max_execution_time_ms`).
    fn scan_all(&self, sweep: bool) -> (Vec<StoredModule>, u64) {
        let mut by_sha: HashMap<String, StoredModule> = HashMap::new();
        let mut strays = 0;
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return (Vec::new(), 0);
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let Some(sha) = sha_of(&name) else {
                let stale = || {
                    meta.modified()
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > STALE_TMP)
                };
                if sweep && name.contains(".tmp") && stale() && std::fs::remove_file(e.path()).is_ok() {
                    continue;
                }
                strays += meta.len();
                continue;
            };
            let m = by_sha.entry(sha.to_string()).or_insert_with(|| StoredModule {
                sha: sha.to_string(),
                files: Vec::new(),
                bytes: 0,
                module_bytes: 0,
                last_used: SystemTime::UNIX_EPOCH,
                has_module: false,
            });
            m.bytes += meta.len();
            if name.ends_with(".wasm") {
                m.has_module = true;
                m.module_bytes = meta.len();
                // The module's mtime is its last use; an orphan artifact's own mtime
                // stands in (below).
                m.last_used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                m.files.insert(0, e.path());
            } else {
                if !m.has_module {
                    m.last_used = m.last_used.max(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
                }
                m.files.push(e.path());
            }
        }
        (by_sha.into_values().collect(), strays)
    }

    /// Removes least recently used modules (with their artifacts) until the store fits
    /// its quota, skipping `keep` and those `in_use` says a job is loading or running.
    /// Returns the sha256 of every module removed. Does nothing when unbounded.
    pub(crate) fn prune(&self, keep: Option<&str>, in_use: impl Fn(&str) -> bool) -> Vec<String> {
        if self.quota == 0 {
            return Vec::new();
        }
        self.prune_to(self.quota, |sha| keep == Some(sha) || in_use(sha))
            .into_iter()
            .map(|m| m.sha256)
            .collect()
    }

    /// Removes least recently used modules (with their artifacts; orphan artifacts
    /// first) until the store takes at most `budget` bytes, sparing those `spare`
    /// names; a `budget` of 0 removes every module not spared. Returns the modules
    /// removed. A process that has a removed module loaded (a serving node) may keep
    /// running it from memory; to every other it is unknown from then on.
    pub fn prune_to(&self, budget: u64, spare: impl Fn(&str) -> bool) -> Vec<ModuleInfo> {
        let _one = self.pruning.lock().unwrap_or_else(|p| p.into_inner());
        let (mut modules, strays) = self.scan_all(true);
        let mut total: u64 = modules.iter().map(|m| m.bytes).sum::<u64>() + strays;
        // Orphan artifacts first, then modules by last use.
        modules.sort_by_key(|m| (m.has_module, m.last_used));
        let mut removed = Vec::new();
        for m in modules {
            if total <= budget {
                break;
            }
            if spare(&m.sha) {
                continue;
            }
            // The module first: from then on it is unknown, and its artifacts unused.
            for f in &m.files {
                let _ = std::fs::remove_file(f);
            }
            total = total.saturating_sub(m.bytes);
            if m.has_module {
                removed.push(m.info());
            }
        }
        removed
    }

    /// Every module in the store, least recently used first (orphan artifacts, whose
    /// module is gone, are not listed; they count in [`usage`](ModuleStore::usage)).
    pub fn modules(&self) -> Vec<ModuleInfo> {
        let mut modules: Vec<StoredModule> = self.scan().into_iter().filter(|m| m.has_module).collect();
        modules.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.sha.cmp(&b.sha)));
        modules.iter().map(StoredModule::info).collect()
    }

    /// Removes a module and its compiled artifacts; `None` when the store does not hold
    /// it. As with [`prune_to`](ModuleStore::prune_to), a process that has it loaded may
    /// keep running it from memory.
    pub fn remove(&self, sha: &str) -> Result<Option<ModuleInfo>, ComputeError> {
        let _one = self.pruning.lock().unwrap_or_else(|p| p.into_inner());
        let Some(m) = self.scan().into_iter().find(|m| m.sha == sha && m.has_module) else {
            return Ok(None);
        };
        // The module first: from then on it is unknown, and its artifacts unused.
        for f in &m.files {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ComputeError::internal(format!(
                        "cannot remove {}: {e}",
                        f.display()
                    )));
                }
            }
        }
        Ok(Some(m.info()))
    }

    /// Whether the store holds the module.
    pub fn contains(&self, sha: &str) -> bool {
        self.wasm_path(sha).is_file()
    }

    /// A module's size in bytes, or `None` when the store does not hold it.
    pub fn size(&self, sha: &str) -> Option<u64> {
        std::fs::metadata(self.wasm_path(sha))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// A module's bytes, or `None` when the store does not hold it.
    pub fn read(&self, sha: &str) -> Result<Option<Vec<u8>>, ComputeError> {
        match std::fs::read(self.wasm_path(sha)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ComputeError::internal(format!("cannot read module {sha}: {e}"))),
        }
    }

    /// Every module in the store: sha256 and size in bytes.
    pub fn list(&self) -> Result<Vec<(String, u64)>, ComputeError> {
        let entries = std::fs::read_dir(&self.dir).map_err(ComputeError::internal)?;
        let mut out: Vec<(String, u64)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let sha = name.strip_suffix(".wasm")?;
                (sha.len() == 64).then(|| (sha.to_string(), e.metadata().map(|m| m.len()).unwrap_or(0)))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    pub(crate) fn wasm_path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.wasm"))
    }

    /// Where a compilation writes an artifact before it is renamed into place: a name
    /// beginning with `.`, which is never taken for a module or an artifact.
    pub(crate) fn artifact_tmp_path(&self, sha: &str, engine: &str) -> PathBuf {
        self.dir.join(format!(
            ".{sha}.{engine}.cwasm.tmp-{}",
            hanzo_compute::new_job_id()
        ))
    }

    pub(crate) fn artifact_path(&self, sha: &str, engine: &str) -> PathBuf {
        self.dir.join(format!("{sha}.{engine}.cwasm"))
    }

    pub(crate) fn write_artifact(&self, sha: &str, engine: &str, bytes: &[u8]) -> Result<(), ComputeError> {
        write_atomic(&self.artifact_path(sha, engine), bytes)
    }
}

/// The sha256 a store file belongs to: `<sha>.wasm` or `<sha>.<engine>.cwasm`.
fn sha_of(name: &str) -> Option<&str> {
    let sha = name.get(..64)?;
    let rest = &name[64..];
    let ok = sha.bytes().all(|b| b.is_ascii_hexdigit())
        && (rest == ".wasm" || (rest.starts_with('.') && rest.ends_with(".cwasm")));
    ok.then_some(sha)
}

/// Checks that `bytes` are a core module (or WAT text, which is converted) and
/// returns the binary. `what` names the input in errors.
pub(crate) fn to_binary(bytes: &[u8], what: &str) -> Result<Vec<u8>, ComputeError> {
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        return Err(ComputeError::invalid(format!(
            "{what} is {} MiB, more than the {} MiB a module may have",
            bytes.len() >> 20,
            MAX_MODULE_BYTES >> 20
        )));
    }
    if bytes.starts_with(b"\0asm") {
        if bytes.len() >= 8 && bytes[..8] != CORE_MODULE_HEADER {
            return Err(ComputeError::invalid(format!(
                "{what} is a WebAssembly component or an unknown binary version; only core modules are supported"
            )));
        }
        return Ok(bytes.to_vec());
    }
    // Text that parses as WAT is accepted; anything else is not a module.
    let looks_textual = std::str::from_utf8(bytes)
        .map(|s| s.trim_start().starts_with('(') || s.trim_start().starts_with(";;"))
        .unwrap_or(false);
    if looks_textual {
        return wat::parse_bytes(bytes)
            .map(|b| b.into_owned())
            .map_err(|e| ComputeError::invalid(format!("{what} is not valid WAT: {e}")));
    }
    Err(ComputeError::invalid(format!(
        "{what} is not a WebAssembly module (no \\0asm header)"
    )))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ComputeError> {
    let tmp = path.with_extension(format!("tmp.{}", hanzo_compute::new_job_id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| ComputeError::internal(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanzo_compute::receipt::sha256_hex;

    #[test]
    fn one_pass_counts_strays_and_sweeps_only_old_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path()).unwrap();
        let sha = store.put(b"(module)").unwrap();
        let module = std::fs::metadata(store.wasm_path(&sha)).unwrap().len();
        let file = |name: &str, bytes: usize, age_s: u64| {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![b'x'; bytes]).unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(SystemTime::now() - std::time::Duration::from_secs(age_s))
                .unwrap();
            path
        };
        // A compile in progress, one left by a process that died hours ago, and a file
        // that is no temporary at all (never swept, whatever its age).
        let live = file(&format!(".{sha}.x.cwasm.tmp1"), 100, 0);
        let dead = file(&format!(".{sha}.x.cwasm.tmp2"), 1000, STALE_TMP.as_secs() + 60);
        let other = file("notes", 10_000, STALE_TMP.as_secs() + 60);
        assert_eq!(
            store.usage(),
            module + 100 + 1000 + 10_000,
            "usage sweeps nothing"
        );
        assert!(store.prune_to(u64::MAX, |_| false).is_empty());
        assert!(live.exists() && !dead.exists() && other.exists());
        assert_eq!(store.usage(), module + 100 + 10_000);
        // A budget below the strays removes every module: they count against it.
        let removed = store.prune_to(module + 100, |_| false);
        assert_eq!(removed.len(), 1);
        assert!(!store.contains(&sha));
    }

    #[test]
    fn modules_are_stored_by_the_digest_of_their_binary() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path()).unwrap();
        let sha_text = store.put(b"(module)").unwrap();
        let binary = wat::parse_str("(module)").unwrap();
        assert_eq!(sha_text, sha256_hex(&binary));
        assert_eq!(store.put(&binary).unwrap(), sha_text);
        assert!(store.contains(&sha_text));
        assert_eq!(store.read(&sha_text).unwrap().unwrap(), binary);
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn store_files_belong_to_their_module() {
        let sha = "ab".repeat(32);
        assert_eq!(sha_of(&format!("{sha}.wasm")), Some(sha.as_str()));
        assert_eq!(
            sha_of(&format!("{sha}.0123456789abcdef.cwasm")),
            Some(sha.as_str())
        );
        assert_eq!(sha_of(&format!(".{sha}.0123.cwasm.tmp-x")), None);
        assert_eq!(sha_of(&format!("{sha}.wasm.tmp.x")), None);
        assert_eq!(sha_of("short.wasm"), None);
    }

    #[test]
    fn non_modules_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path()).unwrap();
        let e = store.put(b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(e.to_string().contains("not a WebAssembly module"), "{e}");
        let e = store.put(b"(module (func").unwrap_err();
        assert!(e.to_string().contains("not valid WAT"), "{e}");
        let e = store.put(&[0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]).unwrap_err();
        assert!(e.to_string().contains("component"), "{e}");
    }

    #[test]
    fn modules_are_removed_with_their_artifacts_and_pruned_to_a_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path()).unwrap();
        let mut shas = Vec::new();
        for (i, body) in ["(module)", "(module (memory 1))", "(module (memory 2))"]
            .iter()
            .enumerate()
        {
            let sha = store.put(body.as_bytes()).unwrap();
            store.write_artifact(&sha, "engine", &[0u8; 100]).unwrap();
            let when = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + i as u64);
            std::fs::File::open(store.wasm_path(&sha))
                .unwrap()
                .set_modified(when)
                .unwrap();
            shas.push(sha);
        }
        let listed = store.modules();
        assert_eq!(
            listed.iter().map(|m| m.sha256.clone()).collect::<Vec<_>>(),
            shas,
            "oldest first"
        );
        assert!(
            listed.iter().all(|m| m.bytes == m.module_bytes + 100),
            "{listed:?}"
        );
        // Removing takes the module and its artifact; a second time there is nothing.
        let gone = store.remove(&shas[1]).unwrap().unwrap();
        assert_eq!(gone.sha256, shas[1]);
        assert!(!store.contains(&shas[1]));
        assert!(!store.artifact_path(&shas[1], "engine").exists());
        assert_eq!(store.remove(&shas[1]).unwrap(), None);
        // A budget of 0 removes everything not spared; the oldest goes first.
        let removed = store.prune_to(0, |sha| sha == shas[2]);
        assert_eq!(
            removed.iter().map(|m| m.sha256.clone()).collect::<Vec<_>>(),
            [shas[0].clone()]
        );
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(store.usage(), store.modules()[0].bytes);
    }
}

//! Bounded caches: what the process runtimes build once and keep under the data
//! directory (Python environments, Go builds, stored native tools, ...), evicted least
//! recently used first when their total passes `[node] cache_max_mb`.
//!
//! An *entry* is one file or directory that a job can use as a whole: a runtime
//! registers where its entries live as [`Pool`]s. The protocol between jobs and a prune:
//!
//! - a job that uses an entry holds a [`Lease`] on it for as long as it runs: a shared
//!   `flock` on the entry itself (directories can be locked like files); taking it
//!   touches `.<name>.last-used` beside the entry, its last use ([`lease`]). The entry
//!   itself is never written: content-addressed entries stay exactly as built, and
//!   their own mtime (when they were built) stands in until a first lease;
//! - a prune takes an exclusive `flock` without waiting, and skips the entry when that
//!   fails: an entry in use is never removed under a job;
//! - a pruned entry is first renamed to `.trash-<name>-<nonce>` beside it (atomic), then
//!   deleted, so a job sees the whole entry or none; a job that locked the entry just as
//!   it was renamed sees that its path no longer names what it locked, gets `None`, and
//!   builds the entry again.
//!
//! Names beginning with `.` in a pool are never entries: builds in progress
//! (`.tmp-*`), lock files and trash. Trash left by a prune that was interrupted is
//! removed by the next prune.

use crate::RuntimeKind;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// How a pool's path holds entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every child of the directory is an entry (`python/envs/<sha>`).
    Entries,
    /// The path itself is one entry: a cache shared by every build, such as uv's
    /// download cache, removed whole when it is the least recently used.
    Whole,
}

/// Where one runtime keeps entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The runtime the entries belong to.
    pub runtime: RuntimeKind,
    /// The directory of entries ([`Layout::Entries`]) or the entry ([`Layout::Whole`]).
    pub path: PathBuf,
    /// How `path` holds entries.
    pub layout: Layout,
}

impl Pool {
    /// A directory whose children are entries.
    pub fn entries(runtime: RuntimeKind, path: impl Into<PathBuf>) -> Pool {
        Pool {
            runtime,
            path: path.into(),
            layout: Layout::Entries,
        }
    }

    /// A path that is one entry as a whole.
    pub fn whole(runtime: RuntimeKind, path: impl Into<PathBuf>) -> Pool {
        Pool {
            runtime,
            path: path.into(),
            layout: Layout::Whole,
        }
    }

    /// The directory trash of this pool's entries is renamed into (the same file
    /// system, so the rename is atomic).
    fn trash_dir(&self) -> Option<&Path> {
        match self.layout {
            Layout::Entries => Some(&self.path),
            Layout::Whole => self.path.parent(),
        }
    }
}

/// One entry as a prune sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its runtime.
    pub runtime: RuntimeKind,
    /// Its path.
    pub path: PathBuf,
    /// Disk space it takes (allocated blocks, as `du` counts).
    pub bytes: u64,
    /// Its last use (the mtime a [`Lease`] sets).
    pub last_used: SystemTime,
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Total size of the entries before.
    pub before_bytes: u64,
    /// Total size of the entries after.
    pub after_bytes: u64,
    /// The entries removed, least recently used first.
    pub removed: Vec<Entry>,
    /// Entries that would have been removed but were in use.
    pub in_use: Vec<Entry>,
}

/// A job's hold on an entry: while it lives no prune removes the entry.
#[derive(Debug)]
pub struct Lease {
    _file: File,
}

/// Creates the directory `dir` if needed and leases it, trying again when a prune
/// removes it between the two (three times, then an error naming it).
pub fn lease_dir(dir: &Path) -> Result<Lease, crate::ComputeError> {
    use crate::ComputeError;
    for _ in 0..3 {
        std::fs::create_dir_all(dir)
            .map_err(|e| ComputeError::internal(format!("cannot create {}: {e}", dir.display())))?;
        if let Some(l) =
            lease(dir).map_err(|e| ComputeError::internal(format!("cannot lock {}: {e}", dir.display())))?
        {
            return Ok(l);
        }
    }
    Err(ComputeError::internal(format!(
        "{} was removed three times while it was being locked",
        dir.display()
    )))
}

/// Takes a [`Lease`] on the entry at `path` and records its use (its `.last-used`
/// file beside it is touched). `Ok(None)` when there is no entry there, or it was pruned while the
/// lease was taken: the caller builds it (again). Blocks only while a prune renames
/// the entry away (it holds its exclusive lock for a rename, never for a delete).
///
/// Take it before the tool starts: a tool that sees its entry (a read-only mount) could
/// `flock` it too, but an exclusive lock cannot be had while this shared one is held,
/// and the sandbox ends every process of the tool with the job, so no tool can pin an
/// entry past its job or stall another job's lease.
pub fn lease(path: &Path) -> std::io::Result<Option<Lease>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    file.lock_shared()?;
    if !still_named(&file, path) {
        return Ok(None);
    }
    // The last use, for LRU: an open and a futimens, cheap enough for every job. A
    // failure (a read-only data directory) only makes the entry look older than it is.
    if let Some(stamp) = stamp_path(path) {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(stamp)
            .and_then(|f| f.set_modified(SystemTime::now()));
    }
    Ok(Some(Lease { _file: file }))
}

/// `<dir>/.<name>.last-used` for the entry `<dir>/<name>`.
fn stamp_path(entry: &Path) -> Option<PathBuf> {
    let name = entry.file_name()?.to_string_lossy();
    Some(entry.parent()?.join(format!(".{name}.last-used")))
}

/// An entry's last use: its stamp, else its own mtime (when it was built).
fn last_used(entry: &Path, meta: &std::fs::Metadata) -> SystemTime {
    let own = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let stamp = stamp_path(entry)
        .and_then(|s| std::fs::metadata(s).ok())
        .and_then(|m| m.modified().ok());
    stamp.map_or(own, |s| s.max(own))
}

/// Whether `path` still names the file `file` has open (a prune renames it away).
fn still_named(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(held), Ok(now)) => held.ino() == now.ino() && held.dev() == now.dev(),
        _ => false,
    }
}

/// The node's caches: the pools of every runtime and the quota they share.
#[derive(Debug)]
pub struct Cache {
    pools: Vec<Pool>,
    /// The quota in bytes; 0 means unbounded.
    budget: u64,
    /// One prune at a time in this process (others on the same data directory are
    /// kept safe by the locks).
    pruning: Mutex<()>,
}

impl Cache {
    /// Caches made of `pools` sharing a quota of `max_mb` MiB (`[node] cache_max_mb`;
    /// 0 means unbounded).
    pub fn new(pools: Vec<Pool>, max_mb: u64) -> Cache {
        Cache {
            pools,
            budget: max_mb.saturating_mul(1 << 20),
            pruning: Mutex::new(()),
        }
    }

    /// The pools.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The quota in bytes; 0 means unbounded.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Every entry with its size and last use (one walk of every entry).
    pub fn scan(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for pool in &self.pools {
            let paths: Vec<PathBuf> = match pool.layout {
                Layout::Whole => vec![pool.path.clone()],
                Layout::Entries => match std::fs::read_dir(&pool.path) {
                    Ok(rd) => rd
                        .flatten()
                        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                        .map(|e| e.path())
                        .collect(),
                    Err(_) => Vec::new(),
                },
            };
            for path in paths {
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if !meta.is_dir() && !meta.is_file() {
                    continue;
                }
                out.push(Entry {
                    runtime: pool.runtime,
                    bytes: disk_usage(&path),
                    last_used: last_used(&path, &meta),
                    path,
                });
            }
        }
        out
    }

    /// Prunes to the quota when it is bounded and passed; `None` when unbounded.
    pub fn prune_to_quota(&self) -> Option<PruneReport> {
        (self.budget > 0).then(|| self.prune(self.budget))
    }

    /// After a runtime created an entry (and leased it, so that it is not the one
    /// removed): prunes to the quota off the async workers.
    pub async fn created(self: &Arc<Self>) {
        if self.budget == 0 {
            return;
        }
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.prune_to_quota()).await;
    }

    /// Removes least recently used entries until their total is at most `budget`
    /// bytes (0 removes every entry not in use), skipping entries in use.
    pub fn prune(&self, budget: u64) -> PruneReport {
        let _one = self.pruning.lock().unwrap_or_else(|p| p.into_inner());
        self.empty_trash();
        let mut entries = self.scan();
        let before: u64 = entries.iter().map(|e| e.bytes).sum();
        let mut report = PruneReport {
            before_bytes: before,
            after_bytes: before,
            ..PruneReport::default()
        };
        entries.sort_by_key(|e| e.last_used);
        for entry in entries {
            if report.after_bytes <= budget {
                break;
            }
            match evict(&entry.path) {
                Evicted::Removed => {
                    report.after_bytes -= entry.bytes;
                    report.removed.push(entry);
                }
                Evicted::InUse => report.in_use.push(entry),
                // Already gone (another prune) or not removable: counted as it was.
                Evicted::Gone => report.after_bytes -= entry.bytes,
                Evicted::Failed => {}
            }
        }
        report
    }

    /// Deletes `.trash-*` left by a prune that was interrupted, and the stamps of
    /// entries that are gone.
    fn empty_trash(&self) {
        for dir in self.pools.iter().filter_map(Pool::trash_dir) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".trash-") {
                    remove(&e.path());
                } else if let Some(entry) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".last-used"))
                    && std::fs::symlink_metadata(dir.join(entry)).is_err()
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

enum Evicted {
    Removed,
    InUse,
    Gone,
    Failed,
}

/// Removes one entry unless a job holds a lease on it.
fn evict(path: &Path) -> Evicted {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Evicted::Gone,
        Err(_) => return Evicted::Failed,
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Evicted::InUse,
        Err(std::fs::TryLockError::Error(_)) => return Evicted::Failed,
    }
    if !still_named(&file, path) {
        return Evicted::Gone;
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Evicted::Failed;
    };
    let trash = dir.join(format!(
        ".trash-{}-{}",
        name.to_string_lossy(),
        crate::new_job_id()
    ));
    // Renamed while the exclusive lock is held: a job taking its lease now waits
    // for this rename, then finds the path gone. Deleted after unlocking.
    if std::fs::rename(path, &trash).is_err() {
        return Evicted::Failed;
    }
    drop(file);
    remove(&trash);
    if let Some(stamp) = stamp_path(path) {
        let _ = std::fs::remove_file(stamp);
    }
    Evicted::Removed
}

fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            // Entries may be read-only (stored tools are 0555, Go's module cache
            // 0444 directories); as the owner we may make them writable to delete.
            if std::fs::remove_dir_all(path).is_err() {
                make_writable(path);
                let _ = std::fs::remove_dir_all(path);
            }
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(m) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m.mode() | 0o700));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            make_writable(&e.path());
        }
    }
}

/// Allocated size of `path` and everything under it; links are not followed.
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir()
        && let Ok(rd) = std::fs::read_dir(path)
    {
        for e in rd.flatten() {
            total += disk_usage(&e.path());
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(dir: &Path, name: &str, kib: usize, age_s: u64) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("data"), vec![7u8; kib * 1024]).unwrap();
        let f = File::open(&p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_s))
            .unwrap();
        p
    }

    #[test]
    fn prune_removes_the_least_recently_used_first() {
        let d = tempfile::tempdir().unwrap();
        let old = entry(d.path(), "old", 512, 300);
        let mid = entry(d.path(), "mid", 512, 200);
        let new = entry(d.path(), "new", 512, 100);
        let cache = Cache::new(vec![Pool::entries(RuntimeKind::Python, d.path())], 0);
        let total: u64 = cache.scan().iter().map(|e| e.bytes).sum();
        assert!(total >= 3 * 512 * 1024, "{total}");
        // Leasing `old` makes it the most recently used.
        drop(lease(&old).unwrap().unwrap());
        let r = cache.prune(total - 1);
        assert_eq!(r.removed.len(), 1, "{r:?}");
        assert_eq!(r.removed[0].path, mid);
        assert!(old.exists() && new.exists() && !mid.exists());
        assert!(r.after_bytes < total - 400 * 1024);
        // Nothing but the two entries and old's stamp is left: the trash is gone too.
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".old.last-used", "new", "old"]);
        // The entry itself was not written: its mtime is still its build's.
        let built = std::fs::metadata(&old).unwrap().modified().unwrap();
        assert!(built < SystemTime::now() - Duration::from_secs(250));
    }

    #[test]
    fn an_entry_in_use_is_skipped_and_whole_pools_count() {
        let d = tempfile::tempdir().unwrap();
        let envs = d.path().join("envs");
        let a = entry(&envs, "a", 64, 300);
        let b = entry(&envs, "b", 64, 200);
        let shared = entry(d.path(), "shared", 64, 250);
        let cache = Cache::new(
            vec![
                Pool::entries(RuntimeKind::Python, &envs),
                Pool::whole(RuntimeKind::Python, &shared),
            ],
            0,
        );
        let held = lease(&a).unwrap().unwrap();
        let r = cache.prune(0);
        assert_eq!(r.in_use.len(), 1);
        assert_eq!(r.in_use[0].path, a);
        assert!(a.join("data").is_file() && !b.exists() && !shared.exists());
        drop(held);
        cache.prune(0);
        assert!(!a.exists());
        assert!(lease(&a).unwrap().is_none());
        // No stamp outlives its entry.
        assert_eq!(std::fs::read_dir(&envs).unwrap().count(), 0);
    }

    #[test]
    fn files_are_entries_and_a_lease_after_eviction_is_none() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("abc.wasm");
        std::fs::write(&f, b"module").unwrap();
        let cache = Cache::new(vec![Pool::entries(RuntimeKind::Go, d.path())], 0);
        // A lease taken on the inode before the rename sees the path gone.
        let early = File::open(&f).unwrap();
        assert_eq!(cache.prune(0).removed.len(), 1);
        early.lock_shared().unwrap();
        assert!(!still_named(&early, &f));
        assert!(lease(&f).unwrap().is_none());
        // Interrupted prunes' trash is removed by the next one.
        std::fs::create_dir_all(d.path().join(".trash-x-1/sub")).unwrap();
        cache.prune(0);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}

//! What the kernel recorded about a container's cgroup: whether its pids limit refused
//! forks, whether its memory limit was hit or OOM-killed a process, and its peak memory.
//! Read from the host's cgroup filesystem, for both cgroup v1 (cgroupfs or systemd
//! driver) and v2; when the node cannot see the files (a remote daemon, a rootless one),
//! the answers are simply unknown.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a container's cgroup directory can be, per controller (`pids`, `memory`).
fn candidates(controller: &str, id: &str) -> Vec<PathBuf> {
    let root = PathBuf::from("/sys/fs/cgroup");
    vec![
        // v1, cgroupfs driver
        root.join(controller).join("docker").join(id),
        // v1, systemd driver
        root.join(controller)
            .join("system.slice")
            .join(format!("docker-{id}.scope")),
        // v2, systemd driver
        root.join("system.slice").join(format!("docker-{id}.scope")),
        // v2, cgroupfs driver
        root.join("docker").join(id),
    ]
}

fn read(controller: &str, id: &str, file: &str) -> Option<String> {
    candidates(controller, id)
        .into_iter()
        .find_map(|dir| std::fs::read_to_string(dir.join(file)).ok())
}

/// How many forks the pids limit refused (`pids.events`: `max N`).
pub(crate) fn pids_refused(id: &str) -> Option<u64> {
    let events = read("pids", id, "pids.events")?;
    events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|n| n.trim().parse().ok())
}

/// The most memory the container held, in bytes.
pub(crate) fn peak_memory(id: &str) -> Option<u64> {
    read("memory", id, "memory.max_usage_in_bytes")
        .or_else(|| read("memory", id, "memory.peak"))
        .and_then(|s| s.trim().parse().ok())
}

/// What the kernel recorded about a container's memory cgroup.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryRecord {
    /// How often a charge hit the limit (v1 `memory.failcnt` or `memory.memsw.failcnt`,
    /// v2 `memory.events` `max`).
    pub failcnt: u64,
    /// Processes the kernel's OOM killer killed in the cgroup (v1 `memory.oom_control`,
    /// v2 `memory.events`, `oom_kill N`); `None` on kernels that do not count them.
    pub oom_kills: Option<u64>,
    /// The most memory the cgroup held, in bytes, where the kernel keeps it.
    pub peak: Option<u64>,
    /// The limit in bytes (none when unlimited).
    pub limit: Option<u64>,
}

/// Peak usage this close to the limit counts as having reached it: the kernel charges
/// in pages and batches, so a cgroup at its limit can show a little below it.
const NEAR_LIMIT_BYTES: u64 = 1 << 20;

impl MemoryRecord {
    /// The kernel's OOM killer acted in the cgroup. Where the kernel counts OOM kills,
    /// that count alone decides: a tool that only filled its memory and then killed
    /// itself must not pass for an OOM kill. On older kernels without the counter, a
    /// refused charge or a peak at the limit stands in for it.
    pub fn hit_limit(&self) -> bool {
        match self.oom_kills {
            Some(n) => n > 0,
            None => {
                self.failcnt > 0
                    || matches!((self.peak, self.limit), (Some(p), Some(l)) if p.saturating_add(NEAR_LIMIT_BYTES) >= l)
            }
        }
    }

    /// A cgroup v1 record from the files' texts (`memsw` only with swap accounting).
    fn from_v1(
        failcnt: &str,
        memsw_failcnt: Option<&str>,
        oom_control: &str,
        max_usage: Option<&str>,
        limit: Option<&str>,
    ) -> Option<Self> {
        let failcnt = number(failcnt)?.max(memsw_failcnt.and_then(number).unwrap_or(0));
        Some(MemoryRecord {
            failcnt,
            oom_kills: keyed(oom_control, "oom_kill"),
            peak: max_usage.and_then(number),
            // v1 writes "unlimited" as a huge page-rounded number.
            limit: limit.and_then(number).filter(|&l| l < i64::MAX as u64 / 2),
        })
    }

    /// A cgroup v2 record from the files' texts (`memory.peak` needs Linux 5.19).
    fn from_v2(events: &str, peak: Option<&str>, max: Option<&str>) -> Option<Self> {
        Some(MemoryRecord {
            failcnt: keyed(events, "max")?,
            oom_kills: keyed(events, "oom_kill"),
            peak: peak.and_then(number),
            // "max" means unlimited, which does not parse.
            limit: max.and_then(number),
        })
    }

    /// Reads the record from a memory cgroup directory, v1 or v2; `None` once the
    /// directory is gone (the container stopped and its cgroup was deleted).
    fn read(dir: &Path) -> Option<Self> {
        let file = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        if let Some(failcnt) = file("memory.failcnt") {
            Self::from_v1(
                &failcnt,
                file("memory.memsw.failcnt").as_deref(),
                &file("memory.oom_control")?,
                file("memory.max_usage_in_bytes").as_deref(),
                file("memory.limit_in_bytes").as_deref(),
            )
        } else {
            Self::from_v2(
                &file("memory.events")?,
                file("memory.peak").as_deref(),
                file("memory.max").as_deref(),
            )
        }
    }
}

fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `key N` from a flat-keyed cgroup file (`memory.oom_control`, `memory.events`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key { number(v) } else { None }
    })
}

/// The container's memory cgroup directory, where this host shows it.
fn memory_dir(id: &str) -> Option<PathBuf> {
    candidates("memory", id)
        .into_iter()
        .find(|d| d.join("memory.failcnt").exists() || d.join("memory.events").exists())
}

/// How often the watch reads the cgroup. The counters it reads are set when usage
/// first reaches the limit, before the kernel's reclaim gives up and kills, and stay
/// until the container's cgroup is deleted after the daemon has handled the exit: a
/// window of many polls even on an idle host, and longer on a loaded one.
const WATCH_EVERY: Duration = Duration::from_millis(20);

/// Reads a running container's memory cgroup until the cgroup is deleted, keeping the
/// last record. The daemon's own OOM verdict (`State.OOMKilled`) comes from an event
/// that races with the exit on a loaded host (Docker 20.10 drops it when the cgroup
/// is already gone), and the cgroup disappears with the container: so the record is
/// taken while it still exists.
pub(crate) struct MemoryWatch {
    last: Arc<Mutex<Option<MemoryRecord>>>,
    /// The most forks the pids limit was seen refusing: a tool that exits because a
    /// fork failed ("can't fork") takes its cgroup with it, so the count is kept here.
    forks_refused: Arc<std::sync::atomic::AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MemoryWatch {
    /// Starts watching a started container; watches nothing when its cgroup is not
    /// visible here.
    pub fn start(id: &str) -> Self {
        let last = Arc::new(Mutex::new(None));
        let forks_refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = memory_dir(id).map(|dir| {
            let last = last.clone();
            let forks = forks_refused.clone();
            let id = id.to_string();
            tokio::spawn(async move {
                while let Some(record) = MemoryRecord::read(&dir) {
                    *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(record);
                    if let Some(n) = pids_refused(&id) {
                        forks.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
                    }
                    tokio::time::sleep(WATCH_EVERY).await;
                }
            })
        });
        MemoryWatch {
            last,
            forks_refused,
            task,
        }
    }

    /// The most forks the pids limit was seen refusing while the container ran.
    pub fn forks_refused(&self) -> u64 {
        self.forks_refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops watching; the last record read, if any.
    pub fn finish(mut self) -> Option<MemoryRecord> {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OOM_CONTROL_V1: &str = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n";

    #[test]
    fn a_v1_cgroup_that_oom_killed() {
        let r = MemoryRecord::from_v1(
            "17\n",
            Some("0\n"),
            OOM_CONTROL_V1,
            Some("33554432\n"),
            Some("33554432\n"),
        )
        .unwrap();
        assert_eq!(
            r,
            MemoryRecord {
                failcnt: 17,
                oom_kills: Some(1),
                peak: Some(32 << 20),
                limit: Some(32 << 20)
            }
        );
        assert!(r.hit_limit());
    }

    #[test]
    fn a_v1_cgroup_under_its_limit() {
        let quiet = "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n";
        let r = MemoryRecord::from_v1("0\n", None, quiet, Some("4194304\n"), Some("33554432\n")).unwrap();
        assert_eq!((r.failcnt, r.oom_kills, r.peak), (0, Some(0), Some(4 << 20)));
        assert!(!r.hit_limit());
        // Unlimited: the huge number v1 writes is no limit.
        let r =
            MemoryRecord::from_v1("0", None, quiet, Some("4194304"), Some("9223372036854771712")).unwrap();
        assert_eq!(r.limit, None);
        assert!(!r.hit_limit());
        // Where the kernel counts OOM kills, the count alone decides: a tool that filled
        // its memory (refused charges, a peak at the limit) and then killed itself is
        // not an OOM kill.
        let r = MemoryRecord::from_v1("9", Some("3"), quiet, Some("33554432"), Some("33554432")).unwrap();
        assert!(!r.hit_limit());
        // Older kernels have no oom_kill line: not an error, no kills known, and then
        // each sign of the limit alone stands in for the count.
        let old = "oom_kill_disable 0\nunder_oom 0\n";
        let r = MemoryRecord::from_v1("0", None, old, None, None).unwrap();
        assert_eq!(r.oom_kills, None);
        assert!(!r.hit_limit());
        let r = MemoryRecord::from_v1("0", Some("3"), old, None, None).unwrap();
        assert_eq!(r.failcnt, 3, "memory+swap refusals count");
        assert!(r.hit_limit());
        let r = MemoryRecord::from_v1("0", None, old, Some("33300000"), Some("33554432")).unwrap();
        assert!(r.hit_limit(), "a peak within a page batch of the limit");
        assert_eq!(MemoryRecord::from_v1("", None, quiet, None, None), None);
    }

    #[test]
    fn a_v2_cgroup_from_memory_events() {
        let events = "low 0\nhigh 0\nmax 42\noom 1\noom_kill 1\noom_group_kill 0\n";
        let r = MemoryRecord::from_v2(events, Some("33554432\n"), Some("33554432\n")).unwrap();
        assert_eq!(
            r,
            MemoryRecord {
                failcnt: 42,
                oom_kills: Some(1),
                peak: Some(32 << 20),
                limit: Some(32 << 20)
            }
        );
        assert!(r.hit_limit());
        let quiet = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n";
        let r = MemoryRecord::from_v2(quiet, None, Some("max\n")).unwrap();
        assert_eq!(
            r,
            MemoryRecord {
                oom_kills: Some(0),
                ..MemoryRecord::default()
            }
        );
        assert!(!r.hit_limit());
        // `oom_kill_count` must not be read as `oom_kill`.
        assert_eq!(keyed("oom_kill_count 5\noom_kill 2", "oom_kill"), Some(2));
        assert_eq!(MemoryRecord::from_v2("garbage", None, None), None);
    }

    #[test]
    fn a_record_is_read_from_the_files_until_the_cgroup_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("v1");
        std::fs::create_dir(&v1).unwrap();
        for (name, text) in [
            ("memory.failcnt", "5\n"),
            ("memory.oom_control", OOM_CONTROL_V1),
            ("memory.max_usage_in_bytes", "33554432\n"),
            ("memory.limit_in_bytes", "33554432\n"),
        ] {
            std::fs::write(v1.join(name), text).unwrap();
        }
        let r = MemoryRecord::read(&v1).unwrap();
        assert_eq!(
            (r.failcnt, r.oom_kills, r.peak, r.limit),
            (5, Some(1), Some(32 << 20), Some(32 << 20))
        );

        let v2 = dir.path().join("v2");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("memory.events"), "max 0\noom_kill 3\n").unwrap();
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        let r = MemoryRecord::read(&v2).unwrap();
        assert_eq!(
            (r.failcnt, r.oom_kills, r.peak, r.limit),
            (0, Some(3), None, None)
        );

        std::fs::remove_dir_all(&v1).unwrap();
        assert_eq!(MemoryRecord::read(&v1), None, "a deleted cgroup ends the watch");
    }
}

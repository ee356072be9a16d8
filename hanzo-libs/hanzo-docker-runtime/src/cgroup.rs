//! What the kernel recorded about a container's cgroup: whether its pids limit refused
//! forks, and its peak memory. Read from the host's cgroup filesystem, for both cgroup
//! v1 (cgroupfs or systemd driver) and v2; when the node cannot see the files (a remote
//! daemon, a rootless one), the answers are simply unknown.

use std::path::PathBuf;

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

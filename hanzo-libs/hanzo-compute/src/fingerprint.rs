//! What this machine really has, for the defaults of `[compute.resources]` and for
//! what the node may tell peers (as Nomad fingerprints a client). A node that
//! advertised 8 cores on a 2-core host would draw work it cannot do.
//!
//! - CPU cores: [`std::thread::available_parallelism`], which honours the process's
//!   CPU affinity and a cgroup CPU quota (`cpu.max`, `cpu.cfs_quota_us`).
//! - Memory: `MemTotal` of `/proc/meminfo`, lowered to the cgroup memory limit when one
//!   is set: cgroup v2 `memory.max`, v1 `memory.limit_in_bytes`, read at the cgroup
//!   root (what a container sees) and along the process's own cgroup path from
//!   `/proc/self/cgroup` (a systemd unit's `MemoryMax=`), the lowest winning.
//!   Where `/proc/meminfo` cannot be read, the physical pages `sysconf` reports.
//!
//! Computed once per process: the machine does not change under a running node.

use std::path::PathBuf;
use std::sync::OnceLock;

/// What the machine offers this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// CPUs this process may use (at least 1).
    pub cpu_cores: u32,
    /// Memory this process may use, in MiB (at least 1).
    pub memory_mb: u64,
}

impl Machine {
    /// The memory in whole GiB, rounded down, at least 1 (`[compute.resources]
    /// total_memory_gb`'s default).
    pub fn memory_gb(&self) -> u64 {
        (self.memory_mb / 1024).max(1)
    }
}

/// This machine, measured on first use.
pub fn machine() -> Machine {
    static MACHINE: OnceLock<Machine> = OnceLock::new();
    *MACHINE.get_or_init(measure)
}

fn measure() -> Machine {
    let cpu_cores = std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let total = read_proc("/proc/meminfo")
        .and_then(|t| parse_meminfo(&t))
        .or_else(physical_memory);
    let limit = cgroup_memory_limit();
    let bytes = match (total, limit) {
        (Some(t), Some(l)) => t.min(l),
        (Some(b), None) | (None, Some(b)) => b,
        // Nothing to go by: claim the least, 1 GiB, rather than invent memory.
        (None, None) => 1 << 30,
    };
    Machine {
        cpu_cores: cpu_cores.max(1),
        memory_mb: (bytes >> 20).max(1),
    }
}

/// A /proc file's text. Such files report a size of 0, so `fs::read_to_string` reads
/// them 32 bytes first and doubling: eight reads for `/proc/meminfo`, at every start of
/// every command. One 4 KiB buffer takes it in one.
fn read_proc(path: &str) -> Option<String> {
    use std::io::Read;
    let mut text = String::with_capacity(4096);
    std::fs::File::open(path).ok()?.read_to_string(&mut text).ok()?;
    Some(text)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    // The kernel writes "kB" (meaning KiB); any other unit is not a meminfo we know.
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        _ => None,
    }
}

/// A cgroup memory limit file's text (v2 `memory.max`, v1 `memory.limit_in_bytes`), in
/// bytes; `None` when it sets no limit: `max` (v2), the page-rounded `LONG_MAX` v1
/// writes for none, or another value no machine has (from 1 EiB up). 0 is taken as
/// unset too: a cgroup with no memory at all would not be running this node.
pub fn parse_cgroup_memory_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    let n: u64 = text.parse().ok()?;
    (n > 0 && n < 1 << 60).then_some(n)
}

/// The process's cgroup paths from a `/proc/self/cgroup` text: the v2 one (`0::/path`)
/// and the v1 memory controller's (`N:...memory...:/path`).
pub fn parse_proc_self_cgroup(text: &str) -> (Option<String>, Option<String>) {
    let (mut v2, mut v1) = (None, None);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    (v2, v1)
}

/// The lowest memory limit of the cgroups this process is in, if any is set.
fn cgroup_memory_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let (v2, v1) = parse_proc_self_cgroup(&own);
    let mut files = Vec::new();
    // cgroup v2: the root (a container's own cgroup namespace) and every level of the
    // process's path, since a parent's limit binds the children too.
    files.extend(along("/sys/fs/cgroup", v2.as_deref(), "memory.max"));
    // cgroup v1: the memory hierarchy, likewise (v1 limits are hierarchical as well).
    files.extend(along(
        "/sys/fs/cgroup/memory",
        v1.as_deref(),
        "memory.limit_in_bytes",
    ));
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|t| parse_cgroup_memory_limit(&t))
        .min()
}

/// `<mount>/<file>` and `<mount>/<each prefix of path>/<file>`.
fn along(mount: &str, path: Option<&str>, file: &str) -> Vec<PathBuf> {
    let mut dir = PathBuf::from(mount);
    let mut out = vec![dir.join(file)];
    for part in path
        .unwrap_or("")
        .split('/')
        .filter(|p| !p.is_empty() && *p != "..")
    {
        dir.push(part);
        out.push(dir.join(file));
    }
    out
}

/// Physical memory as `sysconf` reports it, where there is no `/proc/meminfo`.
fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system values.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let (pages, size) = (u64::try_from(pages).ok()?, u64::try_from(size).ok()?);
    pages.checked_mul(size).filter(|b| *b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24683784 kB\n\
                           MemFree:         1234567 kB\n\
                           MemAvailable:   20000000 kB\n";

    #[test]
    fn meminfo_gives_memtotal_in_bytes() {
        assert_eq!(parse_meminfo(MEMINFO), Some(24_683_784 * 1024));
        // Wherever the line is.
        assert_eq!(
            parse_meminfo("MemFree: 1 kB\nMemTotal: 2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: lots kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: 2048 MB\n"), None);
        assert_eq!(parse_meminfo(""), None);
    }

    #[test]
    fn cgroup_limits_ignore_max_and_absurd_values() {
        assert_eq!(parse_cgroup_memory_limit("2147483648\n"), Some(2 << 30));
        assert_eq!(parse_cgroup_memory_limit("max\n"), None);
        // What v1 writes for "no limit" (LONG_MAX rounded down to a page).
        assert_eq!(parse_cgroup_memory_limit("9223372036854771712\n"), None);
        assert_eq!(parse_cgroup_memory_limit("0\n"), None);
        assert_eq!(parse_cgroup_memory_limit("-1\n"), None);
        assert_eq!(parse_cgroup_memory_limit(""), None);
    }

    #[test]
    fn proc_self_cgroup_names_the_v2_and_v1_memory_paths() {
        assert_eq!(
            parse_proc_self_cgroup("0::/system.slice/hanzo-node.service\n"),
            (Some("/system.slice/hanzo-node.service".into()), None)
        );
        let v1 = "12:pids:/docker/abc\n\
                  4:cpu,cpuacct:/docker/abc\n\
                  3:memory:/docker/abc\n\
                  1:name=systemd:/docker/abc\n";
        assert_eq!(parse_proc_self_cgroup(v1), (None, Some("/docker/abc".into())));
        assert_eq!(parse_proc_self_cgroup(""), (None, None));
    }

    #[test]
    fn limits_are_read_at_the_root_and_along_the_path() {
        assert_eq!(
            along("/sys/fs/cgroup", Some("/a/b"), "memory.max"),
            vec![
                PathBuf::from("/sys/fs/cgroup/memory.max"),
                PathBuf::from("/sys/fs/cgroup/a/memory.max"),
                PathBuf::from("/sys/fs/cgroup/a/b/memory.max"),
            ]
        );
        // `..` (a path outside the namespace) never climbs out of the mount.
        assert_eq!(
            along("/sys/fs/cgroup", Some("/../x"), "memory.max"),
            vec![
                PathBuf::from("/sys/fs/cgroup/memory.max"),
                PathBuf::from("/sys/fs/cgroup/x/memory.max"),
            ]
        );
        assert_eq!(along("/m", None, "f"), vec![PathBuf::from("/m/f")]);
    }

    #[test]
    fn this_machine_is_measured_within_what_the_host_reports() {
        let m = machine();
        let cores = std::thread::available_parallelism().unwrap().get() as u32;
        assert_eq!(m.cpu_cores, cores);
        let total = parse_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap()).unwrap();
        assert!(m.memory_mb >= 1 && m.memory_mb <= total >> 20, "{m:?}");
        // No cgroup limit below MemTotal: the whole of it.
        if cgroup_memory_limit().is_none_or(|l| l >= total) {
            assert_eq!(m.memory_mb, total >> 20, "{m:?}");
        }
        assert_eq!(m.memory_gb(), (m.memory_mb / 1024).max(1));
        assert_eq!(machine(), m, "measured once");
    }
}

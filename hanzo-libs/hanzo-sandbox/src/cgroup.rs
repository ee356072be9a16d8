//! Per-job control groups, on cgroup v1 (one hierarchy per controller) or v2 (one
//! unified hierarchy): memory, pids and cpu.
//!
//! Every job gets a cgroup of its own, `<hierarchy>/<parent>/<node pid>-<n>`, which the
//! tool's first process joins between `fork` and `exec` (so nothing it starts can run
//! outside it, even for an instant). The cgroup holds the job's limits and the kernel's
//! record of what the job did (OOM kills, refused forks, peak memory), lets the node
//! find and kill every process of the job however it detached itself, and is removed
//! when the job ends.

use crate::sys;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Which cgroup interface the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// cgroup v1: a hierarchy per controller (`/sys/fs/cgroup/memory`, ...).
    V1,
    /// cgroup v2: one unified hierarchy (`/sys/fs/cgroup/cgroup.controllers` exists).
    V2,
}

/// A cgroup controller the sandbox uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    /// Memory ceiling, OOM kills, peak usage.
    Memory,
    /// Process (task) count.
    Pids,
    /// CPU weight.
    Cpu,
}

impl Controller {
    const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    /// The kernel's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }

    /// A file that exists in a cgroup where this controller is usable.
    fn probe_file(self, v: CgroupVersion) -> &'static str {
        match (self, v) {
            (Controller::Memory, CgroupVersion::V1) => "memory.limit_in_bytes",
            (Controller::Memory, CgroupVersion::V2) => "memory.max",
            (Controller::Pids, _) => "pids.max",
            (Controller::Cpu, CgroupVersion::V1) => "cpu.shares",
            (Controller::Cpu, CgroupVersion::V2) => "cpu.weight",
        }
    }
}

/// The usable cgroup controllers of this host, found by [`Cgroups::detect`].
#[derive(Debug, Clone)]
pub(crate) struct Cgroups {
    pub(crate) version: CgroupVersion,
    /// Per usable controller, the directory job cgroups are created in (on v2, the
    /// same directory for all).
    parents: Vec<(Controller, PathBuf)>,
    /// v1 `memory.memsw.*` (swap accounting) or v2 `memory.swap.max` exists.
    pub(crate) swap_limit: bool,
    /// The kernel counts OOM kills (v1 `oom_kill` in `memory.oom_control`, v2 always).
    pub(crate) oom_counter: bool,
    /// v2 `cgroup.kill` (Linux 5.14) exists: one write kills every process.
    kill_file: bool,
}

/// What the kernel recorded about a job, read from its cgroup before removal.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    pub(crate) oom_kills: Option<u64>,
    pub(crate) memory_failcnt: Option<u64>,
    pub(crate) forks_refused: Option<u64>,
    pub(crate) peak_memory: Option<u64>,
}

static NEXT_JOB: AtomicU64 = AtomicU64::new(0);

/// A mounted cgroup hierarchy, from /proc/self/mountinfo.
struct Hierarchy {
    mount_point: PathBuf,
    /// v1: the controllers attached to it; v2: empty.
    controllers: Vec<String>,
    v2: bool,
}

fn unescape_mount_path(s: &str) -> PathBuf {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(
        out,
    ))
}

fn hierarchies() -> Vec<Hierarchy> {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|info| parse_mountinfo(&info))
        .unwrap_or_default()
}

/// The cgroup hierarchies in a mountinfo text.
fn parse_mountinfo(info: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in info.lines() {
        // id parent maj:min root mount-point options [optional...] - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let mount_point = unescape_mount_path(left[4]);
        match right[0] {
            "cgroup2" => out.push(Hierarchy {
                mount_point,
                controllers: Vec::new(),
                v2: true,
            }),
            "cgroup" => out.push(Hierarchy {
                mount_point,
                controllers: right[2].split(',').map(str::to_string).collect(),
                v2: false,
            }),
            _ => {}
        }
    }
    out
}

fn read_trimmed(p: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(p)?.trim().to_string())
}

fn write_file(p: &Path, value: &str) -> io::Result<()> {
    // One write(2) per value: cgroup files act on each write, and a short write would
    // be a different (wrong) value.
    let mut f = fs::OpenOptions::new().write(true).open(p)?;
    f.write_all(value.as_bytes())
}

/// `key value` lines (`memory.events`, `pids.events`, v1 `memory.oom_control`).
fn keyed(p: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(p).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn number(p: &Path) -> Option<u64> {
    read_trimmed(p).ok()?.parse().ok()
}

/// Removes job cgroups a crashed node left behind: names `<pid>-<n>` or
/// `probe-<pid>-<n>` whose pid is gone. `rmdir` on a cgroup only succeeds when no
/// process is in it, so a live job's cgroup can never be removed by mistake.
fn collect_garbage(parent: &Path) {
    let Ok(dir) = fs::read_dir(parent) else { return };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let pid = name
            .strip_prefix("probe-")
            .unwrap_or(&name)
            .split('-')
            .next()
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(pid) = pid
            && !sys::alive(pid)
        {
            let _ = fs::remove_dir(e.path());
        }
    }
}

/// Makes a cgroup for a probe, checks `file` is in it and that a forked child can
/// join it, then removes it.
fn probe(parent: &Path, file: &str) -> Result<(), String> {
    let dir = parent.join(format!(
        "probe-{}-{}",
        std::process::id(),
        NEXT_JOB.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir(&dir).map_err(|e| format!("cannot create cgroups under {}: {e}", parent.display()))?;
    let result = (|| {
        if !dir.join(file).exists() {
            return Err(format!("{} has no {file}", dir.display()));
        }
        let procs: OwnedFd = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .map_err(|e| format!("cannot join cgroups under {}: {e}", parent.display()))?
            .into();
        if !sys::fork_probe(|| sys::child::write_all(procs.as_raw_fd(), b"0").is_ok()) {
            return Err(format!(
                "a process cannot join cgroups under {}",
                parent.display()
            ));
        }
        Ok(())
    })();
    let _ = fs::remove_dir(&dir);
    result
}

impl Cgroups {
    /// Finds the controllers this process can use under `parent` (a path relative to
    /// each hierarchy's root), or says why there are none.
    pub(crate) fn detect(parent: &Path) -> Result<Cgroups, String> {
        let hs = hierarchies();
        let v1: Vec<&Hierarchy> = hs.iter().filter(|h| !h.v2).collect();
        let has_v1 = Controller::ALL
            .iter()
            .any(|c| v1.iter().any(|h| h.controllers.iter().any(|x| x == c.name())));
        if has_v1 {
            Self::detect_v1(&v1, parent)
        } else if let Some(h) = hs
            .iter()
            .filter(|h| h.v2)
            .min_by_key(|h| h.mount_point != Path::new("/sys/fs/cgroup"))
        {
            Self::detect_v2(&h.mount_point, parent)
        } else {
            Err("no cgroup hierarchy is mounted".into())
        }
    }

    fn detect_v1(v1: &[&Hierarchy], rel: &Path) -> Result<Cgroups, String> {
        let mut parents = Vec::new();
        let mut why = Vec::new();
        for c in Controller::ALL {
            let Some(h) = v1.iter().find(|h| h.controllers.iter().any(|x| x == c.name())) else {
                why.push(format!("no {} hierarchy", c.name()));
                continue;
            };
            let parent = h.mount_point.join(rel);
            if let Err(e) = fs::create_dir_all(&parent) {
                why.push(format!("cannot create {}: {e}", parent.display()));
                continue;
            }
            collect_garbage(&parent);
            match probe(&parent, c.probe_file(CgroupVersion::V1)) {
                Ok(()) => parents.push((c, parent)),
                Err(e) => why.push(e),
            }
        }
        if parents.is_empty() {
            return Err(why.join("; "));
        }
        let memory = parents
            .iter()
            .find(|(c, _)| *c == Controller::Memory)
            .map(|(_, p)| p.clone());
        Ok(Cgroups {
            version: CgroupVersion::V1,
            swap_limit: memory
                .as_ref()
                .is_some_and(|p| p.join("memory.memsw.limit_in_bytes").exists()),
            oom_counter: memory
                .as_ref()
                .is_some_and(|p| keyed(&p.join("memory.oom_control"), "oom_kill").is_some()),
            parents,
            kill_file: false,
        })
    }

    fn detect_v2(mount: &Path, rel: &Path) -> Result<Cgroups, String> {
        let parent = mount.join(rel);
        fs::create_dir_all(&parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        collect_garbage(&parent);
        // On v2 a controller reaches a cgroup only if every ancestor enables it for its
        // children (cgroup.subtree_control). Enable ours from just below the hierarchy's
        // root down to the parent; the root itself is the host's to configure. The
        // parent holds no process (the node stays where it is), so the kernel's "no
        // internal processes" rule allows it.
        let mut levels = vec![parent.clone()];
        let mut p = parent.as_path();
        while let Some(up) = p.parent() {
            if up == mount || !up.starts_with(mount) {
                break;
            }
            levels.push(up.to_path_buf());
            p = up;
        }
        for dir in levels.iter().rev() {
            for c in Controller::ALL {
                let _ = write_file(&dir.join("cgroup.subtree_control"), &format!("+{}", c.name()));
            }
        }
        let enabled = read_trimmed(&parent.join("cgroup.subtree_control")).unwrap_or_default();
        let mut parents = Vec::new();
        let mut why = Vec::new();
        for c in Controller::ALL {
            if !enabled.split(' ').any(|x| x == c.name()) {
                why.push(format!(
                    "cannot enable {} in {}/cgroup.subtree_control (not delegated to it, or it holds processes)",
                    c.name(),
                    parent.display()
                ));
                continue;
            }
            match probe(&parent, c.probe_file(CgroupVersion::V2)) {
                Ok(()) => parents.push((c, parent.clone())),
                Err(e) => why.push(e),
            }
        }
        if parents.is_empty() {
            return Err(why.join("; "));
        }
        Ok(Cgroups {
            version: CgroupVersion::V2,
            swap_limit: true,
            oom_counter: true,
            parents,
            kill_file: probe(&parent, "cgroup.kill").is_ok(),
        })
    }

    /// Whether `c` is usable.
    pub(crate) fn has(&self, c: Controller) -> bool {
        self.parents.iter().any(|(x, _)| *x == c)
    }

    /// The usable controllers.
    pub(crate) fn controllers(&self) -> Vec<Controller> {
        self.parents.iter().map(|(c, _)| *c).collect()
    }

    /// The parent directory of job cgroups, for messages.
    pub(crate) fn parent_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = Vec::new();
        for (_, p) in &self.parents {
            if !v.contains(p) {
                v.push(p.clone());
            }
        }
        v
    }

    /// Creates a job's cgroup with its limits set.
    pub(crate) fn create_job(&self, memory_bytes: u64, pids: u32, cpu_shares: u32) -> io::Result<JobCgroup> {
        let name = format!(
            "{}-{}",
            std::process::id(),
            NEXT_JOB.fetch_add(1, Ordering::Relaxed)
        );
        let mut job = JobCgroup {
            version: self.version,
            dirs: Vec::new(),
            procs: Vec::new(),
            kill_file: self.kill_file,
        };
        for (c, parent) in &self.parents {
            let dir = parent.join(&name);
            if !job.dirs.iter().any(|(_, d)| *d == dir) {
                if let Err(e) = fs::create_dir(&dir) {
                    // A previous node with our pid left it behind: rmdir succeeds only
                    // if it is empty, so this never takes over a live job's cgroup.
                    if e.kind() != io::ErrorKind::AlreadyExists || fs::remove_dir(&dir).is_err() {
                        return Err(e);
                    }
                    fs::create_dir(&dir)?;
                }
                job.procs.push(
                    fs::OpenOptions::new()
                        .write(true)
                        .open(dir.join("cgroup.procs"))?
                        .into(),
                );
            }
            job.dirs.push((*c, dir));
        }
        job.set_limits(self, memory_bytes, pids, cpu_shares)?;
        Ok(job)
    }
}

/// One job's cgroup (on v1, one directory per controller).
#[derive(Debug)]
pub(crate) struct JobCgroup {
    version: CgroupVersion,
    dirs: Vec<(Controller, PathBuf)>,
    /// `cgroup.procs` of each distinct directory, open for the child to write "0" into.
    procs: Vec<OwnedFd>,
    kill_file: bool,
}

/// cgroup v2's `cpu.weight` (1..=10000, default 100) for Docker-style shares
/// (2..=262144, default 1024), by the conversion runc and systemd use.
pub(crate) fn shares_to_weight(shares: u32) -> u64 {
    let s = u64::from(shares.clamp(2, 262_144));
    1 + ((s - 2) * 9999) / 262_142
}

impl JobCgroup {
    fn dir(&self, c: Controller) -> Option<&Path> {
        self.dirs.iter().find(|(x, _)| *x == c).map(|(_, d)| d.as_path())
    }

    fn unique_dirs(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = Vec::new();
        for (_, d) in &self.dirs {
            if !v.contains(&d.as_path()) {
                v.push(d);
            }
        }
        v
    }

    fn set_limits(&self, cg: &Cgroups, memory_bytes: u64, pids: u32, cpu_shares: u32) -> io::Result<()> {
        if let Some(d) = self.dir(Controller::Memory) {
            match self.version {
                CgroupVersion::V1 => {
                    write_file(&d.join("memory.limit_in_bytes"), &memory_bytes.to_string())?;
                    // memsw is memory plus swap: equal to the memory limit means no swap,
                    // so a hog is stopped at the limit instead of thrashing the disk.
                    if cg.swap_limit {
                        write_file(&d.join("memory.memsw.limit_in_bytes"), &memory_bytes.to_string())?;
                    }
                }
                CgroupVersion::V2 => {
                    write_file(&d.join("memory.max"), &memory_bytes.to_string())?;
                    let swap = d.join("memory.swap.max");
                    if swap.exists() {
                        write_file(&swap, "0")?;
                    }
                    // Kill the whole job on OOM, not just its largest process: a tool
                    // with a dead worker is broken anyway, and the rest must not linger.
                    let group = d.join("memory.oom.group");
                    if group.exists() {
                        write_file(&group, "1")?;
                    }
                }
            }
        }
        if let Some(d) = self.dir(Controller::Pids) {
            write_file(&d.join("pids.max"), &pids.to_string())?;
        }
        if let Some(d) = self.dir(Controller::Cpu) {
            match self.version {
                CgroupVersion::V1 => write_file(&d.join("cpu.shares"), &cpu_shares.max(2).to_string())?,
                CgroupVersion::V2 => {
                    write_file(&d.join("cpu.weight"), &shares_to_weight(cpu_shares).to_string())?
                }
            }
        }
        Ok(())
    }

    /// Descriptors of `cgroup.procs` for the child to write "0" into before `exec`.
    pub(crate) fn join_fds(&self) -> Vec<RawFd> {
        self.procs.iter().map(|f| f.as_raw_fd()).collect()
    }

    /// The processes in the cgroup now.
    pub(crate) fn pids(&self) -> Vec<i32> {
        let Some(d) = self.unique_dirs().first().copied() else {
            return Vec::new();
        };
        fs::read_to_string(d.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILLs every process in the cgroup, once. A fork bomb may add processes while
    /// this runs; callers repeat until [`pids`](Self::pids) is empty (the pids limit
    /// bounds how many there can be, and a killed process cannot fork).
    pub(crate) fn kill_all(&self) {
        if self.kill_file
            && let Some(d) = self.unique_dirs().first()
            && write_file(&d.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        for pid in self.pids() {
            sys::kill(pid, libc::SIGKILL);
        }
    }

    /// What the kernel recorded about the job.
    pub(crate) fn stats(&self) -> Stats {
        let mut s = Stats::default();
        if let Some(d) = self.dir(Controller::Memory) {
            match self.version {
                CgroupVersion::V1 => {
                    s.oom_kills = keyed(&d.join("memory.oom_control"), "oom_kill");
                    s.memory_failcnt = number(&d.join("memory.failcnt"));
                    s.peak_memory = number(&d.join("memory.max_usage_in_bytes"));
                }
                CgroupVersion::V2 => {
                    s.oom_kills = keyed(&d.join("memory.events"), "oom_kill");
                    s.memory_failcnt = keyed(&d.join("memory.events"), "max");
                    s.peak_memory = number(&d.join("memory.peak"));
                }
            }
        }
        if let Some(d) = self.dir(Controller::Pids) {
            s.forks_refused = keyed(&d.join("pids.events"), "max");
        }
        s
    }

    /// Removes the cgroup's directories; whether they are all gone.
    fn try_remove(&self) -> bool {
        let mut all = true;
        for d in self.unique_dirs() {
            match fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => all = false,
            }
        }
        all
    }

    /// Kills what is left and removes the cgroup, waiting up to `patience` for dying
    /// processes to leave it; whether it is gone.
    pub(crate) async fn remove(self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        let mut pause = Duration::from_micros(200);
        loop {
            if self.pids().is_empty() && self.try_remove() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.kill_all();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// [`remove`](Self::remove) for a plain thread (cleanup after a dropped run).
    pub(crate) fn remove_blocking(self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        loop {
            if self.pids().is_empty() && self.try_remove() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.kill_all();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchies_are_read_from_mountinfo() {
        let v1 = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        let hs = parse_mountinfo(v1);
        assert_eq!(hs.len(), 4);
        assert_eq!(hs[0].mount_point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(hs[0].controllers, ["rw", "cpu", "cpuacct"]);
        assert!(hs[3].v2 && hs[3].mount_point == Path::new("/sys/fs/cgroup/unified"));
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate";
        let hs = parse_mountinfo(v2);
        assert!(hs.len() == 1 && hs[0].v2 && hs[0].mount_point == Path::new("/sys/fs/cgroup"));
    }

    /// A job cgroup over plain files: the files a kernel would provide, pre-created.
    fn fake_job(version: CgroupVersion, files: &[&str]) -> (tempfile::TempDir, JobCgroup) {
        let d = tempfile::tempdir().unwrap();
        for f in files {
            fs::write(d.path().join(f), "").unwrap();
        }
        let dir = d.path().to_path_buf();
        let job = JobCgroup {
            version,
            dirs: Controller::ALL.iter().map(|c| (*c, dir.clone())).collect(),
            procs: Vec::new(),
            kill_file: false,
        };
        (d, job)
    }

    fn cgroups(version: CgroupVersion) -> Cgroups {
        Cgroups {
            version,
            parents: Vec::new(),
            swap_limit: true,
            oom_counter: true,
            kill_file: false,
        }
    }

    fn read(d: &tempfile::TempDir, f: &str) -> String {
        fs::read_to_string(d.path().join(f)).unwrap()
    }

    #[test]
    fn v2_limits_and_records_use_the_unified_files() {
        let files = [
            "memory.max",
            "memory.swap.max",
            "memory.oom.group",
            "pids.max",
            "cpu.weight",
        ];
        let (d, job) = fake_job(CgroupVersion::V2, &files);
        job.set_limits(&cgroups(CgroupVersion::V2), 64 << 20, 10, 512)
            .unwrap();
        assert_eq!(read(&d, "memory.max"), "67108864");
        assert_eq!(read(&d, "memory.swap.max"), "0");
        assert_eq!(read(&d, "memory.oom.group"), "1");
        assert_eq!(read(&d, "pids.max"), "10");
        assert_eq!(read(&d, "cpu.weight"), "20");
        fs::write(
            d.path().join("memory.events"),
            "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n",
        )
        .unwrap();
        fs::write(d.path().join("pids.events"), "max 3\n").unwrap();
        fs::write(d.path().join("memory.peak"), "1234\n").unwrap();
        let s = job.stats();
        assert_eq!(
            (s.oom_kills, s.memory_failcnt, s.forks_refused, s.peak_memory),
            (Some(1), Some(5), Some(3), Some(1234))
        );
    }

    #[test]
    fn v1_limits_and_records_use_each_controllers_files() {
        let files = [
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "pids.max",
            "cpu.shares",
        ];
        let (d, job) = fake_job(CgroupVersion::V1, &files);
        job.set_limits(&cgroups(CgroupVersion::V1), 32 << 20, 7, 1)
            .unwrap();
        assert_eq!(read(&d, "memory.limit_in_bytes"), "33554432");
        assert_eq!(read(&d, "memory.memsw.limit_in_bytes"), "33554432");
        assert_eq!(read(&d, "pids.max"), "7");
        // cpu.shares has a floor of 2.
        assert_eq!(read(&d, "cpu.shares"), "2");
        fs::write(
            d.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        fs::write(d.path().join("memory.failcnt"), "9\n").unwrap();
        fs::write(d.path().join("memory.max_usage_in_bytes"), "4096\n").unwrap();
        fs::write(d.path().join("pids.events"), "max 4\n").unwrap();
        let s = job.stats();
        assert_eq!(
            (s.oom_kills, s.memory_failcnt, s.forks_refused, s.peak_memory),
            (Some(2), Some(9), Some(4), Some(4096))
        );
    }

    #[test]
    fn shares_map_onto_weights_as_runc_does() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(
            unescape_mount_path("/sys/fs/cgroup"),
            PathBuf::from("/sys/fs/cgroup")
        );
    }
}

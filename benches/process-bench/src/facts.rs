//! What the bench needs from outside itself (the natively built SDK example, built by
//! invoking cargo unless `--no-build`), and the facts about the machine that the
//! report must state: the machine is shared, so it says how busy it was.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The workspace root, two levels above this crate. Fixed at compile time: the bench
/// only makes sense inside the checkout it was built from.
pub fn workspace_root() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize()
        .with_context(|| format!("cannot find the workspace root at {}", root.display()))
}

/// `examples/rust/text-tools` built natively: its stdio command `text-tools-cmd`.
pub fn text_tools_cmd(root: &Path, no_build: bool) -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_relative() { root.join(t) } else { t })
        .unwrap_or_else(|| root.join("target"));
    let args = [
        "build",
        "--release",
        "-p",
        "text-tools",
        "--bin",
        "text-tools-cmd",
    ];
    let output = target.join("release/text-tools-cmd");
    if !no_build {
        eprintln!("process-bench: building text-tools-cmd (native) ...");
        // `cargo run` exports CARGO, the cargo that built us; prefer it over PATH.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        // Cargo's progress goes to our stderr; stdout stays the report's.
        let status = Command::new(&cargo)
            .args(args)
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .status()
            .with_context(|| format!("cannot run cargo ({})", Path::new(&cargo).display()))?;
        if !status.success() {
            bail!(
                "building text-tools-cmd failed; run `cargo {}` in {} to see why",
                args.join(" "),
                root.display()
            );
        }
    }
    if !output.is_file() {
        bail!(
            "text-tools-cmd is missing ({}); build it with `cargo {}` in {}",
            output.display(),
            args.join(" "),
            root.display()
        );
    }
    Ok(output)
}

/// The machine, as the report states it.
pub fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = field(&read("/proc/cpuinfo"), "model name").unwrap_or_else(|| "unknown CPU".into());
    let memory = field(&read("/proc/meminfo"), "MemTotal")
        .and_then(|kb| kb.trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| format!("{:.0} GiB RAM", kb as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "unknown RAM".into());
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!(
        "{cpu}, nproc {nproc}, {memory}, Linux {}",
        read("/proc/sys/kernel/osrelease").trim()
    )
}

/// `git rev-parse --short HEAD`, with a note when the tree has uncommitted changes.
pub fn git(root: &Path) -> String {
    let Some(rev) = capture(
        Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(root),
    ) else {
        return "unknown".into();
    };
    let dirty = capture(
        Command::new("git")
            .args(["status", "--porcelain"])
            .current_dir(root),
    )
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{rev} + uncommitted changes")
    } else {
        rev
    }
}

/// The 1-, 5- and 15-minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// CPU time counters, to tell how much of the machine something else used while the
/// bench ran (a build next door skews every figure).
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    /// All CPUs' busy time, hypervisor steal included (clock ticks).
    busy: u64,
    /// All CPUs' time, idle included.
    total: u64,
    /// This process's and its waited-for children's time.
    own: u64,
}

impl CpuTimes {
    pub fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal
        let [user, nice, system, idle, iowait, irq, softirq, steal] = cpu.try_into().ok()?;
        let me = std::fs::read_to_string("/proc/self/stat").ok()?;
        // After the command name (which may hold spaces): utime, stime, cutime and
        // cstime are the 12th to 15th fields.
        let rest: Vec<&str> = me.rsplit_once(')')?.1.split_whitespace().collect();
        let own = rest
            .get(11..15)?
            .iter()
            .map(|v| v.parse::<u64>().ok())
            .sum::<Option<u64>>()?;
        Some(CpuTimes {
            busy: user + nice + system + irq + softirq + steal,
            total: user + nice + system + idle + iowait + irq + softirq + steal,
            own,
        })
    }

    /// The share of the whole machine's CPU that others used between `self` and
    /// `later`. The sandboxed tools are our waited-for children, so they count as ours;
    /// a bubblewrap process reaped by its own parent may not, which can only make the
    /// figure higher than the truth.
    pub fn others_share(&self, later: &CpuTimes) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let others = (later.busy.checked_sub(self.busy)?).saturating_sub(later.own.checked_sub(self.own)?);
        (total > 0).then(|| others as f64 / total as f64)
    }
}

fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn capture(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

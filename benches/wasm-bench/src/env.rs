//! What the bench needs from outside itself: the guests and the node binary (built
//! by invoking cargo, unless `--no-build`), and the facts about the machine and the
//! versions that the report must state.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Paths of everything the bench loads or runs.
pub struct Artifacts {
    pub root: PathBuf,
    /// `examples/rust/echo` built for wasm32-wasip1 (exports ABI).
    pub echo: PathBuf,
    /// `benches/extism-echo` built for wasm32-wasip1.
    pub extism_echo: PathBuf,
    /// The release `hanzo-node` binary.
    pub node: PathBuf,
}

/// A cargo invocation and the file it produces; the args are printed in errors so a
/// user can run the same command by hand.
struct Step {
    what: &'static str,
    args: Vec<String>,
    output: PathBuf,
}

impl Artifacts {
    /// Locates the artifacts, building them first unless `no_build`.
    pub fn prepare(no_build: bool) -> Result<Artifacts> {
        // The workspace root, two levels above this crate. Fixed at compile time:
        // the bench only makes sense inside the checkout it was built from.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot find the workspace root at {}", root.display()))?;
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_relative() { root.join(t) } else { t })
            .unwrap_or_else(|| root.join("target"));
        let extism_target = target.join("extism-echo");
        let steps = [
            Step {
                what: "the echo example (wasm32-wasip1)",
                args: words("build --release --target wasm32-wasip1 -p echo"),
                output: target.join("wasm32-wasip1/release/echo.wasm"),
            },
            Step {
                what: "the Extism echo plugin (wasm32-wasip1)",
                args: {
                    let mut a = words("build --release --target wasm32-wasip1 --manifest-path");
                    a.push(root.join("benches/extism-echo/Cargo.toml").display().to_string());
                    a.push("--target-dir".into());
                    a.push(extism_target.display().to_string());
                    a
                },
                output: extism_target.join("wasm32-wasip1/release/extism_echo.wasm"),
            },
            Step {
                what: "the hanzo-node release binary",
                args: words("build --release -p hanzo-node"),
                output: target.join("release/hanzo-node"),
            },
        ];
        // `cargo run` exports CARGO, the cargo that built us; prefer it over PATH.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        for step in &steps {
            if !no_build {
                eprintln!("wasm-bench: building {} ...", step.what);
                // Cargo's progress goes to our stderr; stdout stays the report's.
                let status = Command::new(&cargo)
                    .args(&step.args)
                    .current_dir(&root)
                    .stdin(Stdio::null())
                    .stdout(Stdio::inherit())
                    .stderr(Stdio::inherit())
                    .status()
                    .with_context(|| format!("cannot run cargo ({})", Path::new(&cargo).display()))?;
                if !status.success() {
                    bail!(
                        "building {} failed; run `cargo {}` in {} to see why{}",
                        step.what,
                        step.args.join(" "),
                        root.display(),
                        if step.args.iter().any(|a| a == "wasm32-wasip1") {
                            " (the target may be missing: rustup target add wasm32-wasip1)"
                        } else {
                            ""
                        }
                    );
                }
            }
            if !step.output.is_file() {
                bail!(
                    "{} is missing ({}); build it with `cargo {}` in {}",
                    step.what,
                    step.output.display(),
                    step.args.join(" "),
                    root.display()
                );
            }
        }
        let [echo, extism_echo, node] = steps.map(|s| s.output);
        Ok(Artifacts {
            root,
            echo,
            extism_echo,
            node,
        })
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// The machine and the software, as the report states them.
pub struct Facts {
    pub cpu: String,
    pub nproc: usize,
    pub memory: String,
    pub kernel: String,
    pub rustc: String,
    pub node_version: &'static str,
    pub git: String,
    pub wasmtime: String,
    pub extism: String,
    pub extism_pdk: String,
}

impl Facts {
    pub fn gather(a: &Artifacts) -> Facts {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into());
        let memory = field(&read("/proc/meminfo"), "MemTotal")
            .and_then(|kb| kb.trim_end_matches(" kB").trim().parse::<u64>().ok())
            .map(|kb| format!("{:.0} GiB", kb as f64 / (1024.0 * 1024.0)))
            .unwrap_or_else(|| "unknown".into());
        let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
        let lock = std::fs::read_to_string(a.root.join("Cargo.lock")).unwrap_or_default();
        let pdk_lock =
            std::fs::read_to_string(a.root.join("benches/extism-echo/Cargo.lock")).unwrap_or_default();
        let git = capture(
            Command::new("git")
                .args(["rev-parse", "--short", "HEAD"])
                .current_dir(&a.root),
        )
        .map(|rev| {
            let dirty = capture(
                Command::new("git")
                    .args(["status", "--porcelain"])
                    .current_dir(&a.root),
            )
            .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev} + uncommitted changes")
            } else {
                rev
            }
        })
        .unwrap_or_else(|| "unknown".into());
        Facts {
            cpu,
            nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory,
            kernel,
            rustc: capture(Command::new("rustc").arg("--version")).unwrap_or_else(|| "unknown".into()),
            node_version: env!("CARGO_PKG_VERSION"),
            git,
            wasmtime: locked(&lock, "wasmtime"),
            extism: locked(&lock, "extism"),
            extism_pdk: locked(&pdk_lock, "extism-pdk"),
        }
    }
}

/// The 1-, 5- and 15-minute load averages: the machine is shared, so the report
/// says how busy it was.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// CPU time counters, to tell how much of the machine something else used while the
/// bench ran (the machine is shared, and a build next door skews every figure).
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
        // Fields after the command name, which may itself contain spaces: utime,
        // stime, cutime and cstime are the 12th to 15th of them.
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

    /// The share of the whole machine's CPU that others used between `self` and `later`.
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

/// The version of `name` in a Cargo.lock (the first, if several are locked).
fn locked(lock: &str, name: &str) -> String {
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.find(&needle)
        .map(|i| &lock[i + needle.len()..])
        .and_then(|rest| rest.split('"').next())
        .map(String::from)
        .unwrap_or_else(|| "unknown".into())
}

fn capture(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_versions() {
        let lock = "[[package]]\nname = \"wasmtime-wasi\"\nversion = \"1.0.0\"\n\n[[package]]\nname = \"wasmtime\"\nversion = \"49.0.5\"\n";
        assert_eq!(locked(lock, "wasmtime"), "49.0.5");
        assert_eq!(locked(lock, "extism"), "unknown");
    }

    #[test]
    fn cpuinfo_fields() {
        let text = "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\n";
        assert_eq!(field(text, "model name").as_deref(), Some("Some CPU @ 2.0GHz"));
        assert_eq!(field(text, "flags"), None);
    }
}

//! What to run: [`ProcessSpec`], the files placed in the work directory, and the
//! checks that run before anything starts.

use crate::SandboxError;
use hanzo_compute::stdio::LogSink;
use hanzo_compute::{Mount, Network, ResourceLimits};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Where the tool's private work directory is, inside the bubblewrap sandbox.
///
/// It is the tool's current directory, on the sandbox's private `/tmp` (a tmpfs capped
/// at `disk_mb`). Without bubblewrap the work directory is a fresh host directory
/// instead, so refer to work files by paths relative to the current directory.
pub const GUEST_WORKDIR: &str = "/tmp/job";

/// The host paths most dynamically linked programs need, for [`ProcessSpec::ro_paths`].
///
/// Deliberately not `/etc` as a whole: it holds `/etc/shadow`, host keys and the node's
/// own configuration. Only the dynamic loader's cache and the `alternatives` links
/// (through which Debian names programs such as `awk`) are shared. Paths missing on a
/// host are skipped.
pub const SYSTEM_RO_PATHS: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/etc/ld.so.cache",
    "/etc/alternatives",
];

/// Host files a tool with `Network::Full` needs to resolve names and check TLS
/// certificates; shared read-only only when the job has the network.
pub(crate) const NETWORK_RO_PATHS: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
];

/// The process-count limit of a [`ProcessSpec::new`]: room for a runtime's threads
/// (the kernel counts threads as tasks: V8 and Go start a dozen or more) and a few
/// child processes.
pub const DEFAULT_PIDS_LIMIT: u32 = 128;

/// A file placed in the work directory before the tool starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkFile {
    /// Its path relative to the work directory (`tool.py`, `lib/util.ts`).
    pub name: String,
    /// Its contents.
    pub contents: Vec<u8>,
    /// Whether it is executable (mode 0755 rather than 0644).
    pub executable: bool,
}

/// One process to run in the sandbox.
///
/// Every field is the complete truth for the tool: it sees only this environment, only
/// these host paths, only these mounts. Nothing is inherited from the node.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The program: an absolute path visible in the sandbox (under a read-only path or
    /// a mount), or a path with a `/` relative to the work directory (`./tool`), or a
    /// bare name looked up in `env["PATH"]`.
    pub program: PathBuf,
    /// Its arguments (not including the program name).
    pub args: Vec<String>,
    /// The complete environment: nothing of the node's own leaks in.
    pub env: BTreeMap<String, String>,
    /// Written to the tool's stdin, which is then closed.
    pub stdin: Vec<u8>,
    /// Host paths shown read-only at the same path (the toolchain: `/usr`, the deno
    /// binary's directory). Missing paths are skipped. Ignored without bubblewrap.
    pub ro_paths: Vec<PathBuf>,
    /// The job's grants: host directories at their guest paths, read-only unless
    /// marked writable. Needs bubblewrap.
    pub mounts: Vec<Mount>,
    /// `None` gives the tool a network namespace of its own with only loopback.
    pub network: Network,
    /// memory_mb, timeout_ms, max_output_bytes, disk_mb and cpu_shares apply.
    pub limits: ResourceLimits,
    /// The most processes and threads the job may have at once.
    pub pids_limit: u32,
    /// Files to place in the work directory before start (the script, its modules).
    pub workdir_files: Vec<WorkFile>,
    /// Where the kept part of stderr goes as it is written (the job's live logs);
    /// discarded by default.
    pub log_sink: LogSink,
}

impl ProcessSpec {
    /// A spec for `program` with no arguments, an empty environment, empty stdin, the
    /// [`SYSTEM_RO_PATHS`], no mounts, no network, default limits and
    /// [`DEFAULT_PIDS_LIMIT`].
    pub fn new(program: impl Into<PathBuf>) -> Self {
        ProcessSpec {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            stdin: Vec::new(),
            ro_paths: SYSTEM_RO_PATHS.iter().map(PathBuf::from).collect(),
            mounts: Vec::new(),
            network: Network::None,
            limits: ResourceLimits::default(),
            pids_limit: DEFAULT_PIDS_LIMIT,
            workdir_files: Vec::new(),
            log_sink: LogSink::default(),
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets what the tool reads on stdin.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = bytes.into();
        self
    }

    /// Adds a read-only host path.
    pub fn ro_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.ro_paths.push(path.into());
        self
    }

    /// Adds a mount.
    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Sets the network.
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: ResourceLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the process-count limit.
    pub fn pids_limit(mut self, n: u32) -> Self {
        self.pids_limit = n;
        self
    }

    /// Places a file (mode 0644) in the work directory.
    pub fn file(mut self, name: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.workdir_files.push(WorkFile {
            name: name.into(),
            contents: contents.into(),
            executable: false,
        });
        self
    }

    /// Places an executable file (mode 0755) in the work directory.
    pub fn executable(mut self, name: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.workdir_files.push(WorkFile {
            name: name.into(),
            contents: contents.into(),
            executable: true,
        });
        self
    }

    /// Checks everything that can be checked before starting: limits that mean
    /// something, safe work-file names and guest paths, a program that will be found.
    pub(crate) fn validate(&self, with_bwrap: bool) -> Result<(), SandboxError> {
        let bad = |m: String| Err(SandboxError::Spec(m));
        if let Err(e) = self.limits.validate() {
            return bad(e.to_string());
        }
        if self.pids_limit == 0 {
            return bad("pids_limit must be greater than 0".into());
        }
        if self.limits.disk_mb == 0 {
            return bad("disk_mb must be greater than 0".into());
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                return bad(format!("invalid environment variable {k:?}"));
            }
        }
        if !with_bwrap && let Some(k) = self.env.keys().find(|k| is_loader_variable(k)) {
            // Without bubblewrap the tool is a host process with the host's files: a
            // loader variable would load any host library into it (and into whatever
            // host program it runs). With bubblewrap they apply inside the sandbox only.
            return bad(format!(
                "environment variable {k} is refused: it loads native code, and without \
                 bubblewrap the tool runs on the host's filesystem"
            ));
        }
        if self.args.iter().any(|a| a.contains('\0')) {
            return bad("an argument contains a NUL byte".into());
        }
        for f in &self.workdir_files {
            // A name like `../../etc/cron.d/x` would write outside the work directory
            // (on the host, without bubblewrap).
            if !is_plain_relative(Path::new(&f.name)) {
                return bad(format!(
                    "work file name {:?} must be a relative path without '..'",
                    f.name
                ));
            }
        }
        for p in &self.ro_paths {
            if !p.is_absolute() {
                return bad(format!("read-only path {} must be absolute", p.display()));
            }
            if hides_sandbox(p) {
                return bad(format!(
                    "read-only path {} would hide the sandbox's own",
                    p.display()
                ));
            }
        }
        if !self.mounts.is_empty() && !with_bwrap {
            return bad("mounts need bubblewrap, which this host does not have".into());
        }
        for m in &self.mounts {
            let guest = Path::new(&m.guest);
            if !guest.is_absolute() || !is_plain_relative(guest.strip_prefix("/").unwrap_or(guest)) {
                return bad(format!(
                    "mount guest path {:?} must be absolute, without '..'",
                    m.guest
                ));
            }
            if hides_sandbox(guest) {
                return bad(format!("mount guest path {:?} is reserved", m.guest));
            }
            if !m.host.exists() {
                return bad(format!("mount source {} does not exist", m.host.display()));
            }
        }
        self.check_program()
    }

    /// Fails early, with a clear message, when the program cannot be found, rather than
    /// letting the sandbox report a bare `execvp` error.
    fn check_program(&self) -> Result<(), SandboxError> {
        let p = &self.program;
        let missing = |why: &str| Err(SandboxError::Spec(format!("program {}: {why}", p.display())));
        if p.as_os_str().is_empty() {
            return missing("empty program name");
        }
        if p.is_absolute() {
            // A program under a mount lives at another host path.
            for m in &self.mounts {
                if let Ok(rest) = p.strip_prefix(&m.guest) {
                    return if m.host.join(rest).is_file() {
                        Ok(())
                    } else {
                        missing("not found")
                    };
                }
            }
            return if p.is_file() { Ok(()) } else { missing("not found") };
        }
        if p.components().count() > 1 || p.to_string_lossy().contains('/') {
            let rel = p.strip_prefix(".").unwrap_or(p);
            return if self.workdir_files.iter().any(|f| Path::new(&f.name) == rel) {
                Ok(())
            } else {
                missing("not among the work directory's files")
            };
        }
        let path = self
            .env
            .get("PATH")
            .map(String::as_str)
            .unwrap_or("/usr/bin:/bin");
        if path.split(':').any(|d| Path::new(d).join(p).is_file()) {
            Ok(())
        } else {
            missing("not found in the tool's PATH")
        }
    }
}

/// Whether `name` tells the dynamic loader or the C library to load code or data from
/// a path: every `LD_*` variable (`LD_PRELOAD`, `LD_LIBRARY_PATH`, `LD_AUDIT`, ...),
/// `GCONV_PATH` and `GLIBC_TUNABLES`.
pub(crate) fn is_loader_variable(name: &str) -> bool {
    name.starts_with("LD_") || name == "GCONV_PATH" || name == "GLIBC_TUNABLES"
}

/// Whether a path mounted at `p` would cover part of what the sandbox itself provides:
/// `/proc` and `/dev` (what keeps the tool from seeing the host's), the root, or the
/// work directory and its `/tmp` (a mount below the work directory is fine).
fn hides_sandbox(p: &Path) -> bool {
    p == Path::new("/")
        || p.starts_with("/proc")
        || p.starts_with("/dev")
        || Path::new(GUEST_WORKDIR).starts_with(p)
}

/// Whether `p` is a relative path of plain names only (no `..`, `.`, root or prefix).
fn is_plain_relative(p: &Path) -> bool {
    p.components().next().is_some() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_file_names_cannot_escape() {
        for name in ["../x", "a/../../x", "/etc/passwd", ""] {
            let s = ProcessSpec::new("/bin/sh").file(name, "x");
            let e = s.validate(true).unwrap_err().to_string();
            assert!(
                e.contains("work file name") || e.contains("relative"),
                "{name}: {e}"
            );
        }
        ProcessSpec::new("/bin/sh")
            .file("lib/a.py", "x")
            .validate(true)
            .unwrap();
    }

    #[test]
    fn reserved_and_relative_guest_paths_are_refused() {
        for guest in ["/", "/proc/x", "/dev", "/a/../b", "/tmp", "/tmp/job"] {
            let s = ProcessSpec::new("/bin/sh").mount(Mount {
                host: "/tmp".into(),
                guest: guest.into(),
                writable: false,
            });
            assert!(s.validate(true).is_err(), "{guest}");
        }
    }

    #[test]
    fn read_only_paths_cannot_cover_the_sandbox() {
        for p in ["/", "/tmp", "/proc", "/dev/shm", "relative"] {
            assert!(
                ProcessSpec::new("/bin/sh").ro_path(p).validate(true).is_err(),
                "{p}"
            );
        }
        let ok = ProcessSpec::new("/bin/sh")
            .ro_path("/tmp/toolchain")
            .mount(Mount {
                host: "/tmp".into(),
                guest: "/tmp/job/data".into(),
                writable: false,
            });
        ok.validate(true).unwrap();
    }

    #[test]
    fn programs_are_found_or_named() {
        ProcessSpec::new("sh").validate(true).unwrap();
        ProcessSpec::new("./t")
            .executable("t", "#!/bin/sh\n")
            .validate(true)
            .unwrap();
        let e = ProcessSpec::new("/no/such/tool").validate(true).unwrap_err();
        assert!(e.to_string().contains("/no/such/tool"), "{e}");
        assert!(ProcessSpec::new("./t").validate(true).is_err());
    }
}

//! bubblewrap: finding it, probing what it can do on this host, and turning a
//! [`ProcessSpec`] into its command line.
//!
//! The sandbox a tool gets: fresh pid, mount, ipc, uts and cgroup namespaces, a fresh
//! network namespace (loopback only) unless the job has the network (then bubblewrap
//! starts in the tool's own namespace behind NAT: see `net`), a user namespace
//! where the host allows one; a read-only root holding only the requested host paths,
//! a `/proc` of its own pid namespace, a minimal `/dev`, a private `/tmp` (tmpfs, capped
//! at `disk_mb`) holding the work directory; no capabilities; and bubblewrap's init as
//! pid 1, so the whole sandbox dies when the tool's main process ends.

use crate::spec::{GUEST_WORKDIR, NETWORK_RO_PATHS};
use crate::sys;
use crate::{ChildSetup, ProcessSpec};
use hanzo_compute::Network;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What bubblewrap can do here, found once by [`Bwrap::detect`].
#[derive(Debug, Clone)]
pub(crate) struct Bwrap {
    pub(crate) path: PathBuf,
    pub(crate) version: String,
    /// `--unshare-user` works (as the tool's user).
    pub(crate) userns: bool,
    /// `--size` (0.7+): tmpfs mounts can be capped, so `disk_mb` is enforced.
    pub(crate) size: bool,
    /// `--perms` (0.5+): work files can be made executable.
    pub(crate) perms: bool,
    /// `--disable-userns` (0.8+): the tool cannot create nested user namespaces.
    disable_userns: bool,
    /// `--bind-fd` / `--ro-bind-fd`.
    bind_fd: bool,
}

/// Everything about one run that shapes bubblewrap's command line.
pub(crate) struct Layout<'a> {
    pub(crate) spec: &'a ProcessSpec,
    /// `(descriptor, index into spec.workdir_files)` of each work file's memfd.
    pub(crate) files: Vec<(RawFd, usize)>,
    /// Where bubblewrap writes its JSON status (the sandbox's pid 1, its exit code).
    pub(crate) status_fd: RawFd,
    /// The host paths the sandbox shows (read-only paths, then mounts), in order.
    pub(crate) entries: Vec<Entry>,
    /// `Network::Full`: the `/etc/resolv.conf` naming the NAT's resolver.
    pub(crate) resolv_conf: Option<RawFd>,
}

/// One host path shown in the sandbox.
pub(crate) enum Entry {
    /// A symlink recreated as itself (`/bin -> usr/bin` when `/usr` is shown anyway).
    Symlink {
        /// What the link says.
        target: PathBuf,
        /// Where it is.
        at: PathBuf,
    },
    /// A bind mount.
    Bind {
        /// Where bubblewrap finds it.
        source: Source,
        /// Where the tool sees it.
        dest: PathBuf,
        /// Read-write rather than read-only.
        writable: bool,
    },
}

/// Where bubblewrap finds what it binds.
pub(crate) enum Source {
    /// A host path bubblewrap looks up itself, skipped when missing: a read-only
    /// toolchain path, when bubblewrap runs as the node's own (unprivileged) user.
    Optional(PathBuf),
    /// An `O_PATH` descriptor opened without following symlinks (`--bind-fd`):
    /// bubblewrap checks after mounting that it mounted that very file.
    Fd(RawFd),
    /// A path bubblewrap binds as it is: a detached copy attached in a root node's
    /// staging directory (see `child::Stage`), which bubblewrap, started as the
    /// tool's unprivileged user, can reach even when the original is under a
    /// directory that user may not enter (`/root`); or, with a bubblewrap too old
    /// for `--bind-fd`, a job's mount that was just opened without following symlinks.
    Exact(PathBuf),
}

/// The read-only paths of a run, in order: a path that is a symlink whose target is
/// shown anyway becomes that symlink; the rest are bound (`Err`); missing ones are
/// dropped.
pub(crate) fn read_only_plan(spec: &ProcessSpec) -> Vec<Result<(PathBuf, PathBuf), PathBuf>> {
    let mut ro: Vec<&Path> = spec.ro_paths.iter().map(PathBuf::as_path).collect();
    if spec.network == Network::Full {
        // Not the host's resolv.conf (its resolver may be a loopback one the tool cannot
        // reach): a granted network always goes through the NAT, whose resolver the
        // sandbox is given instead (`Layout::resolv_conf`).
        ro.extend(
            NETWORK_RO_PATHS
                .iter()
                .filter(|p| **p != "/etc/resolv.conf")
                .map(Path::new),
        );
    }
    let canonical: Vec<PathBuf> = ro.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let mut plan = Vec::new();
    for p in &ro {
        let Ok(meta) = p.symlink_metadata() else { continue };
        // A link such as /bin -> usr/bin whose target is shared anyway is recreated
        // as the same link: cheaper than a second mount, and what the tool expects.
        if meta.file_type().is_symlink()
            && let (Ok(target), Ok(resolved)) = (p.read_link(), p.canonicalize())
            && canonical
                .iter()
                .any(|c| resolved.starts_with(c) && c.as_path() != resolved)
        {
            plan.push(Ok((target, p.to_path_buf())));
            continue;
        }
        plan.push(Err(p.to_path_buf()));
    }
    plan
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Bwrap {
    /// Finds bubblewrap (`explicit`, else `bwrap` on the node's PATH) and probes it by
    /// running a sandbox as the tool's user; `Err` says why it cannot be used.
    pub(crate) fn detect(explicit: Option<&Path>, setup: &ChildSetup) -> Result<Bwrap, String> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => find_in_path("bwrap").ok_or("bwrap is not installed")?,
        };
        let out = Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        let version = String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_start_matches("bubblewrap ")
            .to_string();
        let help = Command::new(&path)
            .arg("--help")
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
            .unwrap_or_default();
        let mut b = Bwrap {
            version,
            size: help.contains("--size"),
            perms: help.contains("--perms"),
            disable_userns: help.contains("--disable-userns"),
            bind_fd: help.contains("--ro-bind-fd"),
            userns: true,
            path,
        };
        if !help.contains("--json-status-fd") || !help.contains("--args") || !help.contains("--clearenv") {
            return Err(format!(
                "bubblewrap {} is too old (needs --json-status-fd, --args and --clearenv, 0.5+)",
                b.version
            ));
        }
        // With a user namespace first: it is the stronger sandbox, and the only one an
        // unprivileged user can have. Root may do without.
        let first = b.probe_settled(setup);
        if first.is_ok() {
            return Ok(b);
        }
        if sys::euid() == 0 && setup.user.is_none() {
            b.userns = false;
            if b.probe_settled(setup).is_ok() {
                return Ok(b);
            }
        }
        Err(format!(
            "bubblewrap {} cannot create a sandbox here: {}",
            b.version,
            first.unwrap_err()
        ))
    }

    /// Whether bubblewrap binds descriptors (`--bind-fd`, 0.9+ and distribution backports).
    pub(crate) fn bind_fd(&self) -> bool {
        self.bind_fd
    }

    /// [`Bwrap::probe`], tried again (twice at most, 50 ms apart) when it failed on a
    /// mount that changed under it. `--ro-bind / /` copies every mount of the host,
    /// and one being added meanwhile (`ip netns add` binds a file under /run/netns)
    /// fails the remount with EINVAL. One such moment must not leave the node without
    /// a sandbox for its whole life; anything else fails at once.
    fn probe_settled(&self, setup: &ChildSetup) -> Result<(), String> {
        let mut tries = 0;
        loop {
            match self.probe(setup) {
                Err(e) if tries < 2 && e.contains("Unable to apply mount flags") => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                r => return r,
            }
        }
    }

    /// Runs `bwrap --version` inside a sandbox with every namespace a job gets.
    fn probe(&self, setup: &ChildSetup) -> Result<(), String> {
        let mut cmd = Command::new(&self.path);
        cmd.args(self.namespace_args(Network::None));
        cmd.args(["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]);
        if self.size {
            cmd.args(["--size", "1048576"]);
        }
        cmd.args(["--tmpfs", "/tmp", "--remount-ro", "/", "--"]);
        cmd.arg(&self.path).arg("--version");
        cmd.env_clear().current_dir("/").stdin(Stdio::null());
        let setup = setup.clone();
        // SAFETY: ChildSetup::apply only makes async-signal-safe calls.
        unsafe { cmd.pre_exec(move || setup.apply()) };
        let out = cmd.output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The namespaces and hardening every sandbox gets.
    fn namespace_args(&self, network: Network) -> Vec<&'static str> {
        let mut a = vec![
            // bubblewrap's own init is pid 1 and exits with the tool's main process,
            // taking every other process of the namespace with it: nothing the tool
            // leaves in the background survives it.
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "hanzo",
            // If bubblewrap (or the node) dies, the sandbox dies with it.
            "--die-with-parent",
            // No controlling terminal: the tool cannot inject input into the node's.
            "--new-session",
            // Root's capabilities are dropped too (bubblewrap keeps none by default for
            // an unprivileged caller; this makes it explicit for root).
            "--cap-drop",
            "ALL",
        ];
        if network == Network::None {
            a.push("--unshare-net");
        }
        if self.userns {
            a.push("--unshare-user");
            // Nested user namespaces are the usual way in to kernel bugs that need
            // "root" in some namespace; a tool has no use for them.
            if self.disable_userns {
                a.push("--disable-userns");
            }
        }
        a
    }

    /// bubblewrap's options for one run (all but the program and its arguments),
    /// with `env` the tool's complete environment.
    ///
    /// They are handed to bubblewrap through a descriptor (`--args`), not its command
    /// line, which every local user can read in `/proc/<pid>/cmdline` (the job's
    /// environment may hold secrets).
    pub(crate) fn options(&self, l: &Layout<'_>, env: &BTreeMap<String, String>) -> Vec<OsString> {
        let spec = l.spec;
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |parts: &[&std::ffi::OsStr]| args.extend(parts.iter().map(|p| p.to_os_string()));
        let s = |x: &'static str| std::ffi::OsStr::new(x);
        for a in self.namespace_args(spec.network) {
            push(&[s(a)]);
        }
        let status = l.status_fd.to_string();
        push(&[s("--json-status-fd"), status.as_ref()]);
        push(&[s("--proc"), s("/proc"), s("--dev"), s("/dev")]);
        // The scratch space: /tmp (holding the work directory) and /dev/shm, each a
        // tmpfs capped at disk_mb. tmpfs pages are memory, charged to the job's memory
        // cgroup too: files cannot be used to get round memory_mb.
        let size = (spec.limits.disk_mb.saturating_mul(1024 * 1024)).to_string();
        for dir in ["/tmp", "/dev/shm"] {
            if self.size {
                push(&[s("--size"), size.as_ref()]);
            }
            push(&[s("--tmpfs"), s(dir)]);
        }
        push(&[s("--dir"), s(GUEST_WORKDIR)]);
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (_, i) in &l.files {
            let name = Path::new(&spec.workdir_files[*i].name);
            for anc in name.ancestors().skip(1) {
                if !anc.as_os_str().is_empty() && !dirs.iter().any(|d| d == anc) {
                    dirs.push(anc.to_path_buf());
                }
            }
        }
        dirs.sort_by_key(|d| d.components().count());
        for d in &dirs {
            push(&[s("--dir"), Path::new(GUEST_WORKDIR).join(d).as_os_str()]);
        }
        for (fd, i) in &l.files {
            let f = &spec.workdir_files[*i];
            if self.perms {
                push(&[s("--perms"), s(if f.executable { "0755" } else { "0644" })]);
            }
            let fd = fd.to_string();
            push(&[
                s("--file"),
                fd.as_ref(),
                Path::new(GUEST_WORKDIR).join(&f.name).as_os_str(),
            ]);
        }
        // Host paths after the tmpfs mounts, so that a toolchain kept under /tmp on the
        // host is still visible (mounted inside the sandbox's /tmp).
        for e in &l.entries {
            match e {
                Entry::Symlink { target, at } => push(&[s("--symlink"), target.as_os_str(), at.as_os_str()]),
                Entry::Bind {
                    source,
                    dest,
                    writable,
                } => {
                    let fd;
                    let (how, src) = match source {
                        Source::Optional(p) => ("--ro-bind-try", p.as_os_str()),
                        Source::Fd(f) => {
                            fd = f.to_string();
                            (if *writable { "--bind-fd" } else { "--ro-bind-fd" }, fd.as_ref())
                        }
                        Source::Exact(p) => (if *writable { "--bind" } else { "--ro-bind" }, p.as_os_str()),
                    };
                    push(&[s(how), src, dest.as_os_str()]);
                }
            }
        }
        if let Some(fd) = l.resolv_conf {
            if self.perms {
                push(&[s("--perms"), s("0644")]);
            }
            let fd = fd.to_string();
            push(&[s("--file"), fd.as_ref(), s("/etc/resolv.conf")]);
        }
        // The tool's environment, set inside the sandbox only: bubblewrap itself runs
        // with an empty one, so nothing the job sets (LD_PRELOAD, LD_AUDIT, ...) ever
        // applies to a process on the host side.
        push(&[s("--clearenv")]);
        for (k, v) in env {
            push(&[s("--setenv"), std::ffi::OsStr::new(k), std::ffi::OsStr::new(v)]);
        }
        // Everything is in place: make the root and /dev read-only (a tool can write
        // only to /tmp, /dev/shm and writable mounts).
        push(&[s("--remount-ro"), s("/dev"), s("--remount-ro"), s("/")]);
        push(&[s("--chdir"), s(GUEST_WORKDIR)]);
        args
    }
}

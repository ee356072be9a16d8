//! # hanzo-sandbox
//!
//! The process sandbox every process runtime of hanzo-node shares (Deno, Python
//! through uv, Go built natively, native executables): one [`ProcessSpec`] in, one
//! [`ProcessOutcome`] out, with the tool held to its limits and nothing of it left
//! behind.
//!
//! [`Sandbox::detect`] probes the host once: is bubblewrap installed, and can it create
//! user, pid, net and mount namespaces here? Which cgroup version, and may this process
//! create cgroups? The answer decides how each run is isolated, and
//! [`Sandbox::limit_support`] says, per limit, whether it is enforced, only advisory, or
//! unsupported on this host, for the runtimes' capability tables. Where something is
//! missing the tool still runs, and the table says what is not enforced:
//!
//! | host | isolation | memory / processes | a root node runs tools as |
//! |---|---|---|---|
//! | bubblewrap + writable cgroups | namespaces, read-only root, private `/tmp` | cgroup, enforced | `nobody` (or `tool_uid`), in a user namespace, no capabilities |
//! | bubblewrap only | namespaces, read-only root, private `/tmp` | rlimits, advisory | the same |
//! | cgroups only | own session; own network namespace | cgroup, enforced | `nobody` (or `tool_uid`) |
//! | neither | own session; own network namespace | rlimits, advisory | the same |
//!
//! A tool is never host uid 0: what it writes in a writable mount is its user's (a
//! setuid bit it sets grants nothing more), writable mounts are `nosuid,nodev`, and
//! `/proc/sys` and `/proc/sysrq-trigger` refuse it. With bubblewrap, a root node opens
//! every path the sandbox shows itself (a job's mounts without following symlinks)
//! and hands detached copies to bubblewrap, which runs as the tool's user; bubblewrap
//! gets an empty environment and sets the tool's inside the sandbox.
//!
//! `Network::Full` never shares the host's network namespace: the tool gets one of
//! its own, connected by user-mode NAT (slirp4netns, else pasta), with no route to the
//! host's loopback or its other addresses. A host that cannot do that (no NAT
//! installed, a node that is not root) refuses `Network::Full`
//! ([`Sandbox::network_nat`] is `None`, the capability table says `network: false`).
//!
//! ```no_run
//! # async fn f() {
//! use hanzo_sandbox::{ProcessSpec, Sandbox};
//! let sandbox = Sandbox::detect();
//! let spec = ProcessSpec::new("/usr/bin/python3")
//!     .arg("tool.py")
//!     .file("tool.py", "import json, sys\nprint(json.dumps(json.load(sys.stdin)))")
//!     .env("PATH", "/usr/bin:/bin")
//!     .stdin(r#"{"x": 1}"#);
//! let outcome = sandbox.run(spec, &hanzo_compute::CancelToken::new()).await;
//! let output = outcome.result(); // Ok({"x": 1}), or the error under CONTRACTS §1a/§2
//! # }
//! ```
//!
//! See the crate's README for what each mode enforces and why.

#![warn(missing_docs)]

mod bwrap;
mod cgroup;
mod child;
mod job;
mod net;
mod outcome;
mod run;
mod session;
mod spec;
mod stage;
mod sys;
pub mod toolchain;

pub use cgroup::{CgroupVersion, Controller};
pub use job::TOOL_PATH;
pub use net::{NAT_ADDRESS, NAT_DNS, NAT_GATEWAY, NatChoice};
pub use outcome::{Exit, ProcessOutcome};
pub use session::Session;
pub use spec::{DEFAULT_PIDS_LIMIT, GUEST_WORKDIR, ProcessSpec, SYSTEM_RO_PATHS, WorkFile};

use bwrap::Bwrap;
use cgroup::Cgroups;
use child::ChildSetup;
use hanzo_compute::{CancelToken, Capabilities, LimitKind, Support};
use std::path::PathBuf;

/// Errors of the sandbox's own steps; a run reports them through [`Exit`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum SandboxError {
    /// The spec cannot be run as written.
    #[error("{0}")]
    Spec(String),
    /// A host operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the sandbox was doing.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

impl SandboxError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
        let what = what.into();
        move |source| SandboxError::Io { what, source }
    }
}

/// How to cap memory where there is no memory cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MemoryRlimit {
    /// `RLIMIT_DATA`: heap and private writable mappings. Address-space reservations
    /// (V8's pointer cage, Go's arenas) do not count until used, so runtimes work.
    #[default]
    Data,
    /// `RLIMIT_AS`: all virtual memory. Stricter, but breaks runtimes that reserve
    /// large address ranges up front (Deno's V8 fails to start under a few hundred MiB).
    AddressSpace,
    /// No memory rlimit (the runtime caps itself, e.g. V8's `--max-old-space-size`).
    Off,
}

/// Which host user tool processes run as, when the node runs as root.
///
/// Never root: a tool that is host uid 0 (even in a user namespace, even without
/// capabilities) can write root's files in its writable mounts, leave setuid-root
/// files there, and open what only root may (`/proc/sys`, which rules the whole
/// kernel). A node that is not root runs tools as itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ToolUser {
    /// `nobody` (65534).
    #[default]
    Auto,
    /// This uid and gid (neither may be 0; 0 is refused in favour of `nobody`, with a
    /// note). A dedicated uid keeps tools apart from other services that run as
    /// `nobody` (without bubblewrap's pid namespace, processes of one uid can signal
    /// each other).
    Id {
        /// Host uid.
        uid: u32,
        /// Host gid.
        gid: u32,
    },
}

/// The uid and gid of `nobody` on Debian and most distributions.
pub const NOBODY: (u32, u32) = (65534, 65534);

/// How [`Sandbox::detect_with`] may isolate tools.
#[derive(Debug, Clone)]
pub struct Options {
    /// Use bubblewrap when it is installed and works (default true).
    pub allow_bwrap: bool,
    /// bubblewrap's path; default: `bwrap` on the node's PATH.
    pub bwrap_path: Option<PathBuf>,
    /// Use cgroups when this process may create them (default true).
    pub allow_cgroups: bool,
    /// Where job cgroups go, relative to each hierarchy's root (default `hanzo`, so
    /// `/sys/fs/cgroup/memory/hanzo/<job>` on v1, `/sys/fs/cgroup/hanzo/<job>` on v2).
    /// On v2 without root, point it at a delegated subtree the node's user owns.
    pub cgroup_parent: PathBuf,
    /// Memory cap where there is no memory cgroup.
    pub memory_rlimit: MemoryRlimit,
    /// Which user tools run as when the node is root.
    pub tool_user: ToolUser,
    /// Where work directories go without bubblewrap (default: the system temp dir).
    pub work_root: PathBuf,
    /// The user-mode NAT that connects a `Network::Full` tool's own network namespace
    /// (default: slirp4netns, else pasta). Without one, `Network::Full` is refused.
    pub nat: NatChoice,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allow_bwrap: true,
            bwrap_path: None,
            allow_cgroups: true,
            cgroup_parent: PathBuf::from("hanzo"),
            memory_rlimit: MemoryRlimit::Data,
            tool_user: ToolUser::Auto,
            work_root: std::env::temp_dir(),
            nat: NatChoice::Auto,
        }
    }
}

impl Options {
    /// The options `[compute.sandbox]` asks for (the rest default).
    pub fn from_config(c: &hanzo_compute::config::SandboxConfig) -> Options {
        Options {
            allow_bwrap: c.bubblewrap,
            bwrap_path: Some(PathBuf::from(&c.bubblewrap_path)).filter(|p| !p.as_os_str().is_empty()),
            allow_cgroups: c.cgroups,
            tool_user: ToolUser::Id {
                uid: c.tool_uid,
                gid: c.tool_gid,
            },
            ..Options::default()
        }
    }
}

/// The host's isolation features, probed once; runs processes in them.
#[derive(Debug, Clone)]
pub struct Sandbox {
    options: Options,
    euid: u32,
    bwrap: Option<Bwrap>,
    cgroups: Option<Cgroups>,
    /// Why bubblewrap or cgroups are not used, for the report.
    notes: Vec<String>,
    /// The uid/gid tools become, when different from the node's.
    tool_ids: Option<(u32, u32)>,
    /// Where a root node stages the paths a bubblewrap sandbox shows (see
    /// `child::Stage`); set when bubblewrap runs as the tool's user.
    stage_dir: Option<PathBuf>,
    /// Namespaces a plain (bubblewrap-less) run can still unshare.
    plain_unshare: libc::c_int,
    /// The NAT for `Network::Full`, or why there is none (and the network is refused).
    nat: Result<net::Nat, String>,
    cpus: u64,
}

impl Sandbox {
    /// Probes the host with the default [`Options`].
    pub fn detect() -> Sandbox {
        Sandbox::detect_with(Options::default())
    }

    /// Probes the host: bubblewrap's path and whether it can create its namespaces here
    /// (by running one sandbox), the cgroup version and whether job cgroups can be
    /// created and joined (by creating one). Takes a few milliseconds; do it once.
    pub fn detect_with(options: Options) -> Sandbox {
        let euid = sys::euid();
        let mut notes = Vec::new();
        let cgroups = if options.allow_cgroups {
            match Cgroups::detect(&options.cgroup_parent) {
                Ok(c) => Some(c),
                Err(e) => {
                    notes.push(format!("no cgroups: {e}"));
                    None
                }
            }
        } else {
            notes.push("cgroups disabled by options".into());
            None
        };
        // A root node never runs a tool as root (see ToolUser).
        let tool_ids = match (euid, options.tool_user) {
            (0, ToolUser::Id { uid, gid }) if uid != 0 && gid != 0 => Some((uid, gid)),
            (0, ToolUser::Id { uid, gid }) => {
                notes.push(format!(
                    "tool uid/gid {uid}/{gid} refused (tools never run as root): using nobody (65534)"
                ));
                Some(NOBODY)
            }
            (0, ToolUser::Auto) => Some(NOBODY),
            _ => None,
        };
        let mut bwrap = if options.allow_bwrap {
            let mut setup = ChildSetup::new();
            setup.user = tool_ids;
            match Bwrap::detect(options.bwrap_path.as_deref(), &setup) {
                Ok(b) => Some(b),
                Err(e) => {
                    notes.push(format!("no bubblewrap: {e}"));
                    None
                }
            }
        } else {
            notes.push("bubblewrap disabled by options".into());
            None
        };
        // bubblewrap runs as the tool's user, which may not reach the toolchain (under
        // /root, mode 0700): the node stages what each sandbox shows (child::Stage).
        // Check once that this kernel lets it (open_tree and move_mount, Linux 5.2+).
        let mut stage_dir = None;
        if bwrap.is_some() && tool_ids.is_some() {
            match stage::prepare() {
                Ok(dir) => stage_dir = Some(dir),
                Err(e) => notes.push(format!("no bubblewrap: cannot stage paths for it: {e}")),
            }
            if stage_dir.is_none() {
                bwrap = None;
            }
        }
        // Without bubblewrap, root can still give the tool network, ipc and uts
        // namespaces of its own (one unshare call): Network::None then holds.
        let mut plain_unshare = 0;
        if bwrap.is_none() && euid == 0 {
            let flags = libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
            if sys::fork_probe(|| sys::child::unshare(flags).is_ok()) {
                plain_unshare = flags;
            } else {
                notes.push("cannot unshare namespaces (no CAP_SYS_ADMIN?)".into());
            }
        }
        // Network::Full: the tool's own namespace behind user-mode NAT, or refused.
        let nat = net::Nat::detect(options.nat, euid);
        if let Err(e) = &nat {
            notes.push(format!("network: full is refused: {e}"));
        }
        Sandbox {
            options,
            euid,
            bwrap,
            cgroups,
            notes,
            tool_ids,
            stage_dir,
            plain_unshare,
            nat,
            cpus: sys::cpus(),
        }
    }

    /// The options it was detected with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// bubblewrap's version, when runs use it.
    pub fn bwrap_version(&self) -> Option<&str> {
        self.bwrap.as_ref().map(|b| b.version.as_str())
    }

    /// Whether sandboxes get a user namespace.
    pub fn user_namespace(&self) -> bool {
        self.bwrap.as_ref().is_some_and(|b| b.userns)
    }

    /// The cgroup version in use, if any.
    pub fn cgroup_version(&self) -> Option<CgroupVersion> {
        self.cgroups.as_ref().map(|c| c.version)
    }

    /// The cgroup controllers in use.
    pub fn controllers(&self) -> Vec<Controller> {
        self.cgroups
            .as_ref()
            .map(Cgroups::controllers)
            .unwrap_or_default()
    }

    /// The directories job cgroups are created in (empty without cgroups).
    pub fn cgroup_parents(&self) -> Vec<PathBuf> {
        self.cgroups
            .as_ref()
            .map(Cgroups::parent_dirs)
            .unwrap_or_default()
    }

    /// Whether `Network::None` really cuts the tool off (a network namespace of its own).
    pub fn isolates_network(&self) -> bool {
        self.bwrap.is_some() || self.plain_unshare & libc::CLONE_NEWNET != 0
    }

    /// The user-mode NAT `Network::Full` runs behind (`slirp4netns 1.2.0`), in a
    /// network namespace of the tool's own with no route to the host's addresses;
    /// `None` when this host cannot do that, and `Network::Full` is refused.
    pub fn network_nat(&self) -> Option<String> {
        self.nat.as_ref().ok().map(net::Nat::name)
    }

    /// Whether the tool sees only the paths it is given (bubblewrap); also whether
    /// job mounts can be honoured.
    pub fn isolates_filesystem(&self) -> bool {
        self.bwrap.is_some()
    }

    /// Whether a tool would run as the node's own user with the node's view of the
    /// files: no bubblewrap, and a node that is not root (so it cannot hand the tool
    /// another uid). Such a tool can read the node's data directory (its key, token
    /// and job store).
    pub fn shares_the_nodes_files(&self) -> bool {
        self.bwrap.is_none() && self.tool_ids.is_none()
    }

    /// The host uid tool processes run as.
    pub fn tool_uid(&self) -> u32 {
        self.tool_ids.map(|(u, _)| u).unwrap_or(self.euid)
    }

    /// The host uid and gid tools run as (the node's own when it is not root).
    pub fn tool_ids(&self) -> (u32, u32) {
        self.tool_ids.unwrap_or_else(|| (self.euid, sys::egid()))
    }

    /// Creates `dir` (and its parents) if missing and makes it, and everything in it,
    /// the tool user's, so that a writable mount of it is writable to tools: for a
    /// runtime's own caches and build directories, which the node creates as root.
    /// Nothing when the node is not root (tools are then the node's user).
    ///
    /// Only for directories the runtime owns, never a job's mount (that is the
    /// operator's to grant). The walk never follows a symlink (a tool with the
    /// directory writable may have planted one): every entry is changed through a
    /// descriptor of the directory holding it (`fchownat(AT_SYMLINK_NOFOLLOW)`). A
    /// directory already the tool user's is left as it is, so a call per job is cheap.
    pub fn hand_to_tool(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let Some((uid, gid)) = self.tool_ids else {
            return Ok(());
        };
        let meta = std::fs::symlink_metadata(dir)?;
        if std::os::unix::fs::MetadataExt::uid(&meta) == uid
            && std::os::unix::fs::MetadataExt::gid(&meta) == gid
        {
            return Ok(());
        }
        sys::chown_tree(dir, uid, gid)
    }

    /// Makes what a sandboxed step wrote in `dir` the node's again once the step has
    /// ended (the sandbox has killed all its processes): jobs then get it read-only, and
    /// no later step or tool of the tool user can change it. Walks like
    /// [`Sandbox::hand_to_tool`], never following a link; a no-op when tools run as the
    /// node's own user.
    pub fn take_back(&self, dir: &std::path::Path) -> std::io::Result<()> {
        if self.tool_ids.is_none() {
            return Ok(());
        }
        sys::chown_tree(dir, self.euid, sys::egid())
    }

    /// Why a feature is not in use (bubblewrap missing, cgroups not writable, ...).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    fn has(&self, c: Controller) -> bool {
        self.cgroups.as_ref().is_some_and(|cg| cg.has(c))
    }

    fn cgroup_name(&self) -> String {
        match self.cgroup_version() {
            Some(CgroupVersion::V1) => "cgroup v1".into(),
            Some(CgroupVersion::V2) => "cgroup v2".into(),
            None => "cgroup".into(),
        }
    }

    /// How each limit is honoured on this host: `(limit, support, how)` for every
    /// [`LimitKind`], for the runtimes' capability tables.
    pub fn limit_support(&self) -> Vec<(LimitKind, Support, String)> {
        let cg = self.cgroup_name();
        let memory = if self.has(Controller::Memory) {
            let swap = match self.cgroups.as_ref().map(|c| (c.version, c.swap_limit)) {
                Some((CgroupVersion::V1, true)) => " with memsw equal to it (no swap)",
                Some((CgroupVersion::V2, _)) => " with memory.swap.max 0 and memory.oom.group",
                _ => " (swap is not limited: no swap accounting on this host)",
            };
            let seen = if self.cgroups.as_ref().is_some_and(|c| c.oom_counter) {
                "an OOM kill is a memory limit error"
            } else {
                "a SIGKILL while the cgroup refused memory is a memory limit error (no oom_kill counter here)"
            };
            (
                Support::Enforced,
                format!("{cg} memory limit of memory_mb{swap}; {seen}"),
            )
        } else {
            match self.options.memory_rlimit {
                MemoryRlimit::Off => (
                    Support::Unsupported,
                    "no memory cgroup and no memory rlimit (left to the runtime)".into(),
                ),
                r => (
                    Support::Advisory,
                    format!(
                        "no memory cgroup: {} of memory_mb per process (allocations past it fail \
                         inside the tool; not reported as a memory limit)",
                        if r == MemoryRlimit::Data {
                            "RLIMIT_DATA"
                        } else {
                            "RLIMIT_AS"
                        }
                    ),
                ),
            }
        };
        let processes = if self.has(Controller::Pids) {
            (
                Support::Enforced,
                format!(
                    "{cg} pids limit (pids_limit, threads included); refused forks make a process limit error"
                ),
            )
        } else if self.tool_uid() != 0 {
            (
                Support::Advisory,
                format!(
                    "no pids cgroup: RLIMIT_NPROC of pids_limit above the tasks uid {} already has \
                     (per host user, not per job; a contained fork bomb ends as a failure or timeout)",
                    self.tool_uid()
                ),
            )
        } else {
            (
                Support::Unsupported,
                "no pids cgroup, and RLIMIT_NPROC does not apply to root".into(),
            )
        };
        let cpu = if self.has(Controller::Cpu) {
            match self.cgroup_version() {
                Some(CgroupVersion::V2) => (
                    Support::Enforced,
                    "cgroup v2 cpu.weight converted from cpu_shares (1024 -> 39)".into(),
                ),
                _ => (Support::Enforced, "cgroup v1 cpu.shares = cpu_shares".into()),
            }
        } else {
            (Support::Unsupported, "no cpu cgroup".into())
        };
        let disk = match &self.bwrap {
            Some(b) if b.size => (
                Support::Enforced,
                "/tmp (with the work directory) and /dev/shm are each a private tmpfs of disk_mb, \
                 counted as memory too; writable mounts are not size-limited"
                    .into(),
            ),
            Some(b) => (
                Support::Unsupported,
                format!("bubblewrap {} cannot size its tmpfs (needs 0.7+)", b.version),
            ),
            None => (
                Support::Unsupported,
                "no bubblewrap: the work directory is a plain host directory".into(),
            ),
        };
        let tree = if self.bwrap.is_some() {
            "the sandbox's pid namespace"
        } else if self.cgroups.is_some() {
            "the process group and the job's cgroup"
        } else {
            "the process group (a process that calls setsid escapes it)"
        };
        vec![
            (LimitKind::CpuShares, cpu.0, cpu.1),
            (LimitKind::Memory, memory.0, memory.1),
            (LimitKind::Disk, disk.0, disk.1),
            (
                LimitKind::NetworkBandwidth,
                Support::Unsupported,
                "no bandwidth shaping; network is off unless the job asks for it".into(),
            ),
            (
                LimitKind::Timeout,
                Support::Enforced,
                format!("wall clock; at the deadline every process of {tree} is killed"),
            ),
            (
                LimitKind::Fuel,
                Support::Unsupported,
                "fuel is a WASM measure".into(),
            ),
            (
                LimitKind::Output,
                Support::Enforced,
                "stdout is read up to max_output_bytes; past it every process of the tool is killed".into(),
            ),
            (LimitKind::Processes, processes.0, processes.1),
            (
                LimitKind::Stack,
                Support::Unsupported,
                "the process's own stack rlimit applies".into(),
            ),
            (
                LimitKind::Steps,
                Support::Unsupported,
                "an agent's tool calls; a process makes none".into(),
            ),
        ]
    }

    /// A capability table ([`hanzo_compute::Capabilities`]) filled from
    /// [`limit_support`](Self::limit_support) and [`describe`](Self::describe);
    /// runtimes adjust it (deterministic, their own limits).
    pub fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::new(self.describe());
        for (k, s, how) in self.limit_support() {
            c = c.with(k, s, how);
        }
        // Granted only behind NAT in a namespace of its own: never the host's.
        c.network = self.nat.is_ok();
        c.mounts = self.isolates_filesystem();
        c
    }

    /// One line for operators, e.g. `bubblewrap 0.8.0 (user, pid, mount, net, ipc,
    /// uts, cgroup namespaces) + cgroup v1 (memory, pids, cpu); tools run as nobody
    /// (65534) in a user namespace, without capabilities`.
    pub fn describe(&self) -> String {
        let mut s = match &self.bwrap {
            Some(b) => format!(
                "bubblewrap {} ({}pid, mount, net, ipc, uts, cgroup namespaces)",
                b.version,
                if b.userns { "user, " } else { "" }
            ),
            None => {
                let ns = if self.plain_unshare != 0 {
                    " with its own net, ipc and uts namespaces"
                } else {
                    ", no namespaces"
                };
                format!("plain process in its own session{ns}, no filesystem isolation")
            }
        };
        if let Some(cg) = &self.cgroups {
            let names: Vec<&str> = cg.controllers().iter().map(|c| c.name()).collect();
            s += &format!(" + {} ({})", self.cgroup_name(), names.join(", "));
        }
        let mut rl = Vec::new();
        if !self.has(Controller::Memory) {
            match self.options.memory_rlimit {
                MemoryRlimit::Data => rl.push("RLIMIT_DATA"),
                MemoryRlimit::AddressSpace => rl.push("RLIMIT_AS"),
                MemoryRlimit::Off => {}
            }
        }
        if !self.has(Controller::Pids) && self.tool_uid() != 0 {
            rl.push("RLIMIT_NPROC");
        }
        if !rl.is_empty() {
            s += &format!(" + rlimits ({})", rl.join(", "));
        }
        let who = match self.tool_uid() {
            0 => "root (no isolation from the host!)".to_string(),
            65534 => "nobody (65534)".to_string(),
            uid => format!("uid {uid}"),
        };
        let who = if self.user_namespace() {
            format!("{who} in a user namespace, without capabilities")
        } else {
            who
        };
        s += &format!("; tools run as {who}");
        match &self.nat {
            Ok(nat) => {
                s + &format!(
                    "; network: full through {} (own namespace, no route to the host)",
                    nat.name()
                )
            }
            // The real cause: not root, no NAT program installed, or NAT turned off.
            Err(why) => s + &format!("; network: full refused ({why})"),
        }
    }

    /// Runs one process to completion, limit, timeout or cancellation, and leaves
    /// nothing of it behind: no process (the whole tree is killed), no work directory,
    /// no cgroup. Dropping the future before it completes also kills and cleans up.
    ///
    /// Must be awaited on a thread that outlives the job (any tokio worker does): the
    /// tool is killed when the thread that started it exits (`PR_SET_PDEATHSIG`).
    pub async fn run(&self, spec: ProcessSpec, cancel: &CancelToken) -> ProcessOutcome {
        run::run(self, spec, cancel).await
    }
}

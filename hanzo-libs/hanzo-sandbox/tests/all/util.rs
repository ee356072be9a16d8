//! Shared helpers: the sandbox in each of its modes, specs for shell and Python tools,
//! and a look at the host's process table.
//!
//! The host must have bubblewrap and writable cgroups (CI and our machines do, as
//! root): a test fails, rather than skipping, when they are missing. `source
//! scripts/sandbox.sh && ensure_sandbox_tools` installs bubblewrap.

use hanzo_compute::CancelToken;
use hanzo_sandbox::{Options, ProcessOutcome, ProcessSpec, Sandbox};
use std::sync::OnceLock;

/// How the sandbox isolates a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// bubblewrap and cgroups: the normal case.
    Full,
    /// bubblewrap with rlimits (a host without writable cgroups).
    BwrapOnly,
    /// A plain process in cgroups (a host without bubblewrap).
    CgroupsOnly,
    /// A plain process with rlimits (neither).
    Plain,
}

pub const ALL_MODES: [Mode; 4] = [Mode::Full, Mode::BwrapOnly, Mode::CgroupsOnly, Mode::Plain];

impl Mode {
    pub fn bwrap(self) -> bool {
        matches!(self, Mode::Full | Mode::BwrapOnly)
    }
    pub fn cgroups(self) -> bool {
        matches!(self, Mode::Full | Mode::CgroupsOnly)
    }
    pub fn options(self) -> Options {
        Options {
            allow_bwrap: self.bwrap(),
            allow_cgroups: self.cgroups(),
            ..Options::default()
        }
    }
}

/// The sandbox of `mode`, detected once per test process; panics if this host cannot
/// provide that mode.
pub fn sandbox(mode: Mode) -> &'static Sandbox {
    static CELLS: [OnceLock<Sandbox>; 4] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let i = ALL_MODES.iter().position(|m| *m == mode).unwrap();
    CELLS[i].get_or_init(|| {
        let sb = Sandbox::detect_with(mode.options());
        assert_eq!(
            sb.bwrap_version().is_some(),
            mode.bwrap(),
            "{mode:?}: bubblewrap not usable ({:?}); run `source scripts/sandbox.sh && ensure_sandbox_tools`",
            sb.notes()
        );
        assert_eq!(
            sb.cgroup_version().is_some(),
            mode.cgroups(),
            "{mode:?}: cgroups not usable here ({:?}); the tests need root and writable cgroups",
            sb.notes()
        );
        eprintln!("{mode:?}: {}", sb.describe());
        sb
    })
}

/// PATH for tools.
pub const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A `/bin/sh -c SCRIPT` tool with PATH set.
pub fn sh(script: &str) -> ProcessSpec {
    ProcessSpec::new("/bin/sh").args(["-c", script]).env("PATH", PATH)
}

/// A `python3 -c CODE` tool (Debian's python3, under /usr).
pub fn python(code: &str) -> ProcessSpec {
    ProcessSpec::new("/usr/bin/python3")
        .args(["-c", code])
        .env("PATH", PATH)
}

/// Runs `spec` with a fresh cancel token.
pub async fn run(mode: Mode, spec: ProcessSpec) -> ProcessOutcome {
    sandbox(mode).run(spec, &CancelToken::new()).await
}

/// stdout as text.
pub fn out(o: &ProcessOutcome) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// stderr as text.
pub fn err(o: &ProcessOutcome) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Panics with the whole outcome unless the tool exited 0.
pub fn ok(mode: Mode, o: &ProcessOutcome) -> String {
    assert!(
        o.success(),
        "{mode:?}: expected success, got {:?}\nstdout: {}\nstderr: {}",
        o.exit,
        out(o),
        err(o)
    );
    out(o)
}

pub use hanzo_testkit::{assert_no_process, host_processes, marker};

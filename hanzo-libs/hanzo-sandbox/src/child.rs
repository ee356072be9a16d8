//! What the child process does to itself between `fork` and `exec`, in one place, so
//! that detection probes and real runs set processes up the same way.

use crate::sys::{Resource, child};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// The child's set-up, prepared (allocations included) before `fork`; [`apply`]
/// itself only makes async-signal-safe calls.
///
/// [`apply`]: ChildSetup::apply
#[derive(Debug, Clone, Default)]
pub(crate) struct ChildSetup {
    /// `cgroup.procs` files to write "0" into: the child joins the job's cgroup before
    /// it can run any of the tool's code, so no process of the tool is ever outside it.
    pub(crate) cgroup_procs: Arc<Vec<OwnedFd>>,
    /// `(resource, soft, hard)`.
    pub(crate) rlimits: Vec<(Resource, u64, u64)>,
    /// Namespaces to unshare (plain mode, as root: network, ipc, uts).
    pub(crate) unshare: libc::c_int,
    /// The paths a bubblewrap sandbox shows, staged for a root node (see [`Stage`]).
    pub(crate) stage: Option<Arc<Stage>>,
    /// The network namespace to join (`Network::Full`: the tool's own, behind NAT),
    /// while still root: bubblewrap then starts in it.
    pub(crate) netns: Option<RawFd>,
    /// Host uid/gid to become, when the node is root and the tool must not be.
    pub(crate) user: Option<(u32, u32)>,
    /// Descriptors bubblewrap must inherit (work files, its status pipe).
    pub(crate) pass_fds: Vec<RawFd>,
    /// The node's pid: the child dies with it.
    pub(crate) parent: libc::pid_t,
}

/// What a root node shows a bubblewrap sandbox whose tool runs as another user.
///
/// bubblewrap started as the tool's (unprivileged) user cannot open a path under a
/// directory that user may not enter (toolchains under `/root`, mode 0700), and a path
/// it looks up itself may have been swapped for a symlink since it was checked. So the
/// node opens every path itself, as root (a job's mounts without following any
/// symlink), and takes a detached copy of each mount tree (`open_tree`); the child,
/// still root, attaches them in a staging directory of a mount namespace of its own,
/// and only then becomes the tool's user and runs bubblewrap, which binds them from
/// there.
#[derive(Debug)]
pub(crate) struct Stage {
    /// The staging directory (a `tmpfs` in the child's own mount namespace).
    pub(crate) dir: CString,
    /// `(detached tree, where in the staging directory, whether a directory)`.
    pub(crate) trees: Vec<(OwnedFd, CString, bool)>,
}

impl ChildSetup {
    /// A set-up that only isolates the child's session and ties it to this process.
    pub(crate) fn new() -> Self {
        ChildSetup {
            // SAFETY: getpid cannot fail.
            parent: unsafe { libc::getpid() },
            ..Default::default()
        }
    }

    /// Runs in the child, after `fork` and before `exec`.
    pub(crate) fn apply(&self) -> io::Result<()> {
        child::new_session()?;
        for fd in self.cgroup_procs.iter() {
            child::write_all(fd.as_raw_fd(), b"0")?;
        }
        for &(resource, soft, hard) in &self.rlimits {
            child::set_rlimit(resource, soft, hard)?;
        }
        if let Some(fd) = self.netns {
            // SAFETY: setns is async-signal-safe; fd is the node's, open until spawn.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if self.unshare != 0 {
            child::unshare(self.unshare)?;
        }
        // As root still: a private mount namespace holding the detached copies of what
        // the sandbox shows, where bubblewrap (about to run as the tool's user) can
        // reach them.
        if let Some(stage) = &self.stage {
            child::private_stage(&stage.dir)?;
            for (tree, at, dir) in &stage.trees {
                child::attach(tree.as_raw_fd(), at, *dir)?;
            }
        }
        if let Some((uid, gid)) = self.user {
            child::become_user(uid, gid)?;
        }
        child::die_with_parent(self.parent)?;
        child::no_new_privs()?;
        child::cloexec_from(3);
        for &fd in &self.pass_fds {
            child::keep_across_exec(fd)?;
        }
        Ok(())
    }
}

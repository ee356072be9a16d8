//! Thin wrappers over the few Linux calls the sandbox needs and std does not offer.
//!
//! Everything in [`child`] runs between `fork` and `exec` (in a `pre_exec` hook) of a
//! multi-threaded process, where only async-signal-safe work is allowed: those functions
//! make system calls and nothing else. They never allocate, never lock, and report
//! failure as a raw `errno` (an `io::Error` of the OS kind, which does not allocate).

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The type `setrlimit` takes for its resource argument, which differs between libcs.
#[cfg(target_env = "gnu")]
pub(crate) type Resource = libc::__rlimit_resource_t;
/// The type `setrlimit` takes for its resource argument, which differs between libcs.
#[cfg(not(target_env = "gnu"))]
pub(crate) type Resource = libc::c_int;

/// How a process ended, as `wait` saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitStatus {
    /// It called `exit(code)`.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

/// The effective uid of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// The effective gid of this process.
pub(crate) fn egid() -> u32 {
    // SAFETY: getegid cannot fail and touches no memory.
    unsafe { libc::getegid() }
}

/// Changes the owner of the directory `dir` and of everything below it, never
/// following a symlink: each directory is opened `O_NOFOLLOW` relative to its parent's
/// descriptor and each entry changed relative to it.
pub(crate) fn chown_tree(dir: &std::path::Path, uid: u32, gid: u32) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a valid C string.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open returned a fresh descriptor.
    chown_dir(unsafe { OwnedFd::from_raw_fd(fd) }, uid, gid, 0)
}

fn chown_dir(dir: OwnedFd, uid: u32, gid: u32, depth: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    if depth > 256 {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    let fd = dir.as_raw_fd();
    // SAFETY: a valid descriptor.
    if unsafe { libc::fchown(fd, uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The descriptor's /proc link lists exactly the directory opened.
    for e in std::fs::read_dir(format!("/proc/self/fd/{fd}"))?.flatten() {
        let name = std::ffi::CString::new(e.file_name().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a valid directory descriptor and C string.
        let sub = unsafe {
            libc::openat(
                fd,
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if sub >= 0 {
            // SAFETY: openat returned a fresh descriptor.
            chown_dir(unsafe { OwnedFd::from_raw_fd(sub) }, uid, gid, depth + 1)?;
            continue;
        }
        // Not a directory (or a symlink): the entry itself, never what it points to.
        // SAFETY: a valid directory descriptor and C string.
        if unsafe { libc::fchownat(fd, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Sends `sig` to `pid` (a negative pid names a process group); whether it was delivered.
pub(crate) fn kill(pid: i32, sig: i32) -> bool {
    // A pid of 0 or -1 would signal our own group or every process we may signal:
    // never let a bug turn into that.
    if pid == 0 || pid == -1 {
        return false;
    }
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Whether a process with this pid exists and has not yet died (a zombie, which
/// holds no resources and runs nothing, counts as dead).
pub(crate) fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may itself
        // contain spaces and parentheses: look after the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// A process the node did not start (bubblewrap's init, pid 1 of a sandbox), held so
/// that signalling it can never hit another process that reused its number.
#[derive(Debug)]
pub(crate) enum Handle {
    /// A pidfd (Linux 5.3+): names that process and no other, for as long as it is open.
    Fd(OwnedFd),
    /// A bare pid, on kernels without pidfds, with its parent for a check before use.
    Pid { pid: i32, parent: i32 },
}

/// The parent pid of `pid`, from /proc.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

impl Handle {
    /// Takes hold of `pid`, which must be a child of `parent` (else it is not the
    /// process we were told about: it exited and its number was reused).
    pub(crate) fn open(pid: i32, parent: i32) -> Option<Handle> {
        if pid <= 0 {
            return None;
        }
        // SAFETY: pidfd_open takes a pid and flags.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let handle = if fd >= 0 {
            // SAFETY: pidfd_open returned a fresh descriptor that nothing else owns.
            Handle::Fd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
        } else {
            Handle::Pid { pid, parent }
        };
        // Checked after opening: the descriptor pins the process, so if its parent is
        // right now, it is the right process for good.
        (parent_of(pid) == Some(parent)).then_some(handle)
    }

    /// SIGKILLs the process, if it is still the one we hold.
    pub(crate) fn kill(&self) {
        match self {
            Handle::Fd(fd) => {
                // SAFETY: pidfd_send_signal with a valid descriptor and no siginfo.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        std::os::fd::AsRawFd::as_raw_fd(fd),
                        libc::SIGKILL,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
            }
            Handle::Pid { pid, parent } => {
                if parent_of(*pid) == Some(*parent) {
                    kill(*pid, libc::SIGKILL);
                }
            }
        }
    }

    /// Whether the process has ended (a zombie has ended).
    pub(crate) fn ended(&self) -> bool {
        match self {
            Handle::Fd(fd) => {
                let mut p = libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(fd),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, no waiting. A pidfd polls readable once
                // its process has exited.
                let r = unsafe { libc::poll(&mut p, 1, 0) };
                r != 0
            }
            Handle::Pid { pid, .. } => !alive(*pid),
        }
    }
}

/// Blocks until the child `pid` has exited, without reaping it.
///
/// Leaving it a zombie keeps its pid (and so its process-group id) reserved: the caller
/// can still signal the group the child led, with no risk of hitting an unrelated
/// process that reused the number, before it reaps the child with [`reap`].
pub(crate) fn wait_exit_keep_zombie(pid: i32) -> io::Result<()> {
    loop {
        // SAFETY: siginfo_t is plain data that waitid fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a siginfo_t we own.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Reaps the child `pid`, returning how it ended and the peak resident memory (bytes)
/// of it and of the descendants it reaped in turn (the kernel folds a reaped child's
/// peak into its parent's `ru_maxrss` figure for children).
pub(crate) fn reap(pid: i32) -> io::Result<(WaitStatus, u64)> {
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data that wait4 fills in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to values we own.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            let ended = if libc::WIFSIGNALED(status) {
                WaitStatus::Signaled(libc::WTERMSIG(status))
            } else {
                WaitStatus::Exited(libc::WEXITSTATUS(status))
            };
            return Ok((ended, (usage.ru_maxrss.max(0) as u64) * 1024));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// An anonymous in-memory file holding `data`, positioned at its start, close-on-exec.
///
/// bubblewrap copies it into the sandbox (`--file FD DEST`): the tool's files never
/// touch the host's disk, and no host path is shared with the tool to hold them.
pub(crate) fn memfd(name: &CStr, data: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: name is a valid C string; the flags are constants.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, data)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
    Ok(file.into())
}

/// A pipe whose both ends are close-on-exec: `(read, write)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    unsafe { Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))) }
}

/// Runs `f` in a forked child and reports whether it returned true.
///
/// Used by detection to try an operation (such as `unshare`) without changing this
/// process. `f` runs after `fork` in a copy of a multi-threaded process, so it must only
/// make async-signal-safe calls (those in [`child`]).
pub(crate) fn fork_probe(f: impl FnOnce() -> bool) -> bool {
    // SAFETY: the child only runs `f` (async-signal-safe by contract) and `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return false;
    }
    if pid == 0 {
        let ok = f();
        // SAFETY: _exit ends the child without running this process's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    matches!(reap(pid), Ok((WaitStatus::Exited(0), _)))
}

/// The number of CPUs this process may run on.
pub(crate) fn cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
}

/// Tasks (threads, which is what `RLIMIT_NPROC` counts) that belong to `uid` right now.
///
/// `RLIMIT_NPROC` is a per-user count across the whole host, not a per-job one, so
/// the rlimit fallback sets it to this figure plus the job's allowance.
pub(crate) fn tasks_of_uid(uid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for e in dir.flatten() {
        let name = e.file_name();
        if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        // /proc/<pid> is owned by the process's effective uid: close enough to the
        // real uid the kernel counts, for a limit that only has to stop a fork bomb.
        match e.metadata() {
            Ok(m) if m.uid() == uid => {}
            _ => continue,
        }
        n += std::fs::read_dir(e.path().join("task"))
            .map(|d| d.count() as u64)
            .unwrap_or(1);
    }
    n
}

/// Whether the descriptor names a directory.
pub(crate) fn is_dir(fd: &OwnedFd) -> io::Result<bool> {
    // SAFETY: stat is plain data that fstat fills in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a stat we own.
    if unsafe { libc::fstat(std::os::fd::AsRawFd::as_raw_fd(fd), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

const OPEN_TREE_CLONE: libc::c_uint = 0x01;
const AT_RECURSIVE: libc::c_uint = 0x8000;
/// `MOVE_MOUNT_F_EMPTY_PATH`: move the mount the descriptor names.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOUNT_ATTR_RDONLY: u64 = 0x01;
const MOUNT_ATTR_NOSUID: u64 = 0x02;
const MOUNT_ATTR_NODEV: u64 = 0x04;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount tree at `fd` (`open_tree(OPEN_TREE_CLONE)`): attached
/// nowhere, so nobody sees it until it is moved into a mount namespace; made
/// `nosuid,nodev` (and read-only unless `writable`) where the kernel can
/// (`mount_setattr`, Linux 5.12+; bubblewrap sets the same flags again).
///
/// Needs `CAP_SYS_ADMIN` (a root node). The copy is taken from the descriptor, so it
/// is exactly what was opened, whatever happened to the path since.
pub(crate) fn clone_tree(fd: &OwnedFd, writable: bool) -> io::Result<OwnedFd> {
    let empty = c"";
    // SAFETY: a valid descriptor, an empty C string and flags.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            std::os::fd::AsRawFd::as_raw_fd(fd),
            empty.as_ptr(),
            OPEN_TREE_CLONE
                | libc::O_CLOEXEC as libc::c_uint
                | libc::AT_EMPTY_PATH as libc::c_uint
                | AT_RECURSIVE,
        )
    };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a fresh descriptor that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | if writable { 0 } else { MOUNT_ATTR_RDONLY },
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid descriptor, an empty C string and a mount_attr of the size passed.
    // Best effort: bubblewrap applies the same flags when it binds the copy.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            std::os::fd::AsRawFd::as_raw_fd(&tree),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Ok(tree)
}

/// Calls made in the child between `fork` and `exec`: async-signal-safe only.
pub(crate) mod child {
    use super::*;

    fn check(r: libc::c_int) -> io::Result<()> {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Marks every descriptor from `first` up close-on-exec.
    ///
    /// A descriptor the node opened without `O_CLOEXEC` (a C library's log file, a
    /// database, the node's key) would otherwise be inherited by bubblewrap and then by
    /// the tool, which could read or write through it. Errors are ignored: kernels
    /// before 5.11 lack the flag, and everything std opens is close-on-exec already.
    pub(crate) fn cloexec_from(first: RawFd) {
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor flags.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
    }

    /// Lets `fd` survive `exec` (the descriptors handed to bubblewrap on purpose).
    pub(crate) fn keep_across_exec(fd: RawFd) -> io::Result<()> {
        // SAFETY: fcntl on a descriptor number; F_SETFD takes an integer.
        check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) })
    }

    /// `setrlimit(resource, {soft, hard})`.
    pub(crate) fn set_rlimit(resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
        let lim = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: a valid pointer to an rlimit we own.
        check(unsafe { libc::setrlimit(resource, &lim) })
    }

    /// Writes all of `bytes` to `fd`.
    pub(crate) fn write_all(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < bytes.len() {
            // SAFETY: the pointer and length describe the unwritten part of `bytes`.
            let n = unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e);
            }
            done += n as usize;
        }
        Ok(())
    }

    /// Starts a new session (and process group) led by this process.
    ///
    /// The node kills the whole group at the end of a job, so whatever the tool leaves
    /// running in the background goes too; and a tool without a controlling terminal
    /// cannot push keystrokes into the node's (the TIOCSTI attack).
    pub(crate) fn new_session() -> io::Result<()> {
        // SAFETY: setsid takes no arguments.
        check(unsafe { libc::setsid() })
    }

    /// `unshare(flags)`.
    pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
        // SAFETY: unshare takes an integer.
        check(unsafe { libc::unshare(flags) })
    }

    /// Drops to `uid`/`gid` with no supplementary groups, for good: the real, effective
    /// and saved ids all change, so the tool cannot switch back.
    pub(crate) fn become_user(uid: u32, gid: u32) -> io::Result<()> {
        // SAFETY: plain integer arguments; a null list with size 0 clears the groups.
        unsafe {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(gid, gid, gid))?;
            check(libc::setresuid(uid, uid, uid))
        }
    }

    /// Asks for SIGKILL when the parent goes, and fails if it is already gone (it could
    /// have died between `fork` and this call, and then no signal would ever come).
    ///
    /// The kernel clears this on a change of credentials, so it is set after
    /// [`become_user`].
    pub(crate) fn die_with_parent(parent: libc::pid_t) -> io::Result<()> {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) })?;
        // SAFETY: getppid cannot fail.
        if unsafe { libc::getppid() } != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    }

    /// Gives this process a mount namespace of its own, private in both directions
    /// (nothing mounted here reaches the host's namespace), with a `tmpfs` (mode 0755,
    /// `nosuid,nodev,noexec`) on `stage`: where the detached copies of the paths a
    /// sandbox shows are attached, for bubblewrap (then started as the tool's
    /// unprivileged user) to bind from.
    pub(crate) fn private_stage(stage: &CStr) -> io::Result<()> {
        // SAFETY: unshare and mount with valid C strings or nulls.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                c"tmpfs".as_ptr(),
                stage.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"mode=0755,size=64k".as_ptr().cast(),
            ))
        }
    }

    /// Creates `at` (a directory, or an empty file) and attaches the detached mount
    /// `tree` there.
    pub(crate) fn attach(tree: RawFd, at: &CStr, dir: bool) -> io::Result<()> {
        // SAFETY: valid C strings and descriptors; plain integer flags.
        unsafe {
            if dir {
                check(libc::mkdir(at.as_ptr(), 0o755))?;
            } else {
                let f = libc::open(
                    at.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                check(f)?;
                libc::close(f);
            }
            let r = libc::syscall(
                libc::SYS_move_mount,
                tree,
                c"".as_ptr(),
                libc::AT_FDCWD,
                at.as_ptr(),
                super::MOVE_MOUNT_F_EMPTY_PATH,
            );
            // ENOENT here means the copy's file was unlinked (replaced) since it was
            // opened: ESTALE tells the caller to start again.
            if r < 0 && *libc::__errno_location() == libc::ENOENT {
                return Err(io::Error::from_raw_os_error(libc::ESTALE));
            }
            check(r as libc::c_int)
        }
    }

    /// Sets `no_new_privs`: nothing the tool executes can gain privileges (setuid-root
    /// binaries such as `su` or `mount` in the read-only system paths, file capabilities).
    pub(crate) fn no_new_privs() -> io::Result<()> {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
    }
}

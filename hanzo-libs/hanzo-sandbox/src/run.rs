//! One run: set up (cgroup, work directory, command), start, supervise (stdin, capped
//! stdout and stderr, deadline, cancellation), kill the whole tree, clean up, and name
//! how it ended.

use crate::bwrap::{Entry, Layout, Source};
use crate::cgroup::{Controller, JobCgroup, Stats};
use crate::child::Stage;
use crate::outcome::Applied;
use crate::sys::{self, WaitStatus};
use crate::{
    ChildSetup, Exit, GUEST_WORKDIR, MemoryRlimit, ProcessOutcome, ProcessSpec, Sandbox, SandboxError,
};
use hanzo_compute::stdio::LogBuffer;
use hanzo_compute::{CancelToken, Network};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::task::{AbortHandle, JoinHandle};

/// The share of stderr kept: logs are for people and must never exhaust the node.
pub(crate) const STDERR_CAP: usize = hanzo_compute::stdio::LOG_CAP;

/// How long, once the tool's processes are dead, the node waits for its pipes to reach
/// end-of-file. Only a process that escaped the kill (possible only without bubblewrap
/// and cgroups) can hold them open longer; the node then stops listening.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// How long a killed sandbox may take to go away before the node escalates.
const KILL_PATIENCE: Duration = Duration::from_secs(2);

/// How long the node waits for a dead job's processes to leave its cgroup.
const CGROUP_PATIENCE: Duration = Duration::from_secs(5);

/// Everything a run must undo, whatever happens, even if the caller drops the run's
/// future half-way: the process tree, the cgroup, the work directory.
struct Cleanup {
    /// Our child (bubblewrap's monitor, or the tool itself), not yet reaped.
    pid: Option<i32>,
    /// The sandbox's pid 1 (bubblewrap's init), once bubblewrap has named it.
    pid1: Arc<OnceLock<sys::Handle>>,
    cgroup: Option<JobCgroup>,
    workdir: Option<PathBuf>,
    /// `Network::Full`: the tool's network namespace and its NAT process.
    net: Option<crate::net::NetNs>,
    /// The tasks feeding stdin and reading stderr and bubblewrap's status: stopped
    /// with the run, so that a process that escaped the kill cannot keep them alive.
    tasks: Vec<AbortHandle>,
}

impl Cleanup {
    /// SIGKILLs every process of the job, once.
    ///
    /// With bubblewrap, killing the sandbox's pid 1 makes the kernel kill every other
    /// process of the pid namespace, and bubblewrap's monitor (our child) exits only
    /// once they are all gone: waiting for the monitor then waits for the whole tree.
    /// Before pid 1 is known, the monitor itself is killed, and `--die-with-parent`
    /// takes the sandbox down. Without bubblewrap, the tool leads its own process group.
    fn kill(&self) {
        if let Some(cg) = &self.cgroup {
            cg.kill_all();
        }
        let pid1 = self.pid1.get();
        if let Some(h) = pid1 {
            h.kill();
        }
        if let Some(pid) = self.pid
            && (pid1.is_none() || self.cgroup.is_some())
        {
            sys::kill(-pid, libc::SIGKILL);
            sys::kill(pid, libc::SIGKILL);
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if self.pid.is_none() && self.cgroup.is_none() && self.workdir.is_none() && self.net.is_none() {
            return;
        }
        // The run did not finish (its future was dropped, or setting up failed): kill
        // what there is and finish the slow part (reaping, waiting for the cgroup to
        // empty) on a thread of its own, since drop cannot wait.
        self.kill();
        let pid = self.pid.take();
        let cgroup = self.cgroup.take();
        let workdir = self.workdir.take();
        let net = self.net.take();
        let pid1 = self.pid1.clone();
        let finish = move || {
            drop(net);
            if let Some(pid) = pid {
                sys::kill(pid, libc::SIGKILL);
                let _ = sys::reap(pid);
            }
            if let Some(h) = pid1.get() {
                let deadline = Instant::now() + KILL_PATIENCE;
                while !h.ended() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            if let Some(cg) = cgroup {
                cg.remove_blocking(CGROUP_PATIENCE);
            }
            if let Some(dir) = workdir {
                remove_tree(&dir);
            }
        };
        if std::thread::Builder::new()
            .name("hanzo-sandbox-cleanup".into())
            .spawn(finish)
            .is_err()
        {
            // No thread to be had: the kill above already happened; leave the rest.
        }
    }
}

/// Removes a work directory the tool may have made hard to remove (a directory it
/// chmod-ed to 000 cannot be listed, even by its owner).
///
/// The tree belongs to the tool, which may still be running without bubblewrap and
/// cgroups (a process that left its group): it can swap a directory for a symlink at
/// any moment. So nothing here follows a symlink: `remove_dir_all` does not, and
/// directories are opened with `O_NOFOLLOW` and changed through their descriptor, never
/// by path (a root node chmod-ing `/etc` because a tool said so would be a disaster).
fn remove_tree(dir: &Path) {
    if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return;
    }
    open_up(dir);
    let _ = std::fs::remove_dir_all(dir);
}

/// Makes every directory of a tree owner-accessible again (0700), without following
/// symlinks; see [`remove_tree`].
fn open_up(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    // O_PATH opens even a directory its owner may not read (mode 000).
    let Ok(d) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
    else {
        return;
    };
    // The descriptor's /proc link names exactly the directory opened, however the
    // tool renames things around it: change and list it through that.
    let pinned = PathBuf::from(format!("/proc/self/fd/{}", d.as_raw_fd()));
    let _ = std::fs::set_permissions(&pinned, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(&pinned) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                open_up(&pinned.join(e.file_name()));
            }
        }
    }
}

/// A request to read what a session's stderr holds now, answered once it is read.
pub(crate) type Flush = tokio::sync::oneshot::Sender<()>;

/// Reads a tool's stderr into `logs`, and every byte of it to `forward` (a session's
/// sink, which keeps no cap of the run's: a long-lived server's logs go on flowing).
/// A session asks through `flush` for what is in the pipe right now: what its server
/// wrote before answering on stdout is there by the time the answer is read.
async fn read_logs(
    mut rx: pipe::Receiver,
    logs: Option<Arc<Mutex<LogBuffer>>>,
    forward: hanzo_compute::stdio::LogSink,
    mut flush: Option<tokio::sync::mpsc::Receiver<Flush>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let take = |chunk: &[u8]| {
        if let Some(logs) = &logs {
            logs.lock().unwrap_or_else(|p| p.into_inner()).push(chunk);
        }
        forward.write(chunk);
    };
    // Keep reading after the cap, discarding: a tool blocked on a full stderr pipe
    // would otherwise hang until its timeout.
    loop {
        tokio::select! {
            r = rx.read(&mut buf) => match r {
                Ok(n) if n > 0 => take(&buf[..n]),
                _ => break,
            },
            Some(ack) = async { flush.as_mut()?.recv().await }, if flush.is_some() => {
                let mut ended = false;
                loop {
                    match rx.try_read(&mut buf) {
                        Ok(0) => {
                            ended = true;
                            break;
                        }
                        Ok(n) => take(&buf[..n]),
                        Err(_) => break,
                    }
                }
                let _ = ack.send(());
                if ended {
                    break;
                }
            }
        }
    }
}

/// bubblewrap's `--json-status-fd` stream: `{"child-pid": N, ...}` once the sandbox
/// exists, `{"exit-code": N}` once its command has exited. The second is missing when
/// bubblewrap itself failed (set-up, or `execvp` of the program).
async fn read_status(mut rx: pipe::Receiver, monitor: i32, pid1: Arc<OnceLock<sys::Handle>>) -> Option<i32> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let mut exit = None;
    let mut seen = 0;
    while let Ok(n) = rx.read(&mut buf).await {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        let mut docs = serde_json::Deserializer::from_slice(&all[seen..]).into_iter::<serde_json::Value>();
        while let Some(Ok(v)) = docs.next() {
            if let Some(p) = v.get("child-pid").and_then(|p| p.as_i64())
                && let Some(h) = sys::Handle::open(p as i32, monitor)
            {
                let _ = pid1.set(h);
            }
            if let Some(c) = v.get("exit-code").and_then(|c| c.as_i64()) {
                exit = Some(c as i32);
            }
        }
        seen += docs.byte_offset();
    }
    exit
}

/// Appends `chunk` to `out` up to `cap` bytes in all; whether the cap was passed.
fn push_capped(out: &mut Vec<u8>, chunk: &[u8], cap: u64) -> bool {
    let room = (cap as usize).saturating_sub(out.len());
    out.extend_from_slice(&chunk[..room.min(chunk.len())]);
    chunk.len() > room
}

/// The resolved program for a plain run: std's lookup of relative and bare names
/// depends on the node's working directory and PATH, so resolve them here.
fn plain_program(spec: &ProcessSpec, workdir: &Path) -> PathBuf {
    let p = &spec.program;
    if p.is_absolute() {
        return p.clone();
    }
    if p.to_string_lossy().contains('/') {
        return workdir.join(p);
    }
    let path = spec
        .env
        .get("PATH")
        .map(String::as_str)
        .unwrap_or("/usr/bin:/bin");
    path.split(':')
        .map(|d| Path::new(d).join(p))
        .find(|c| c.is_file())
        .unwrap_or_else(|| p.clone())
}

/// What was started, and the pipes to talk to it.
struct Started {
    child: std::process::Child,
    status: Option<pipe::Receiver>,
}

/// Sets up and starts the process; everything made so far is recorded in `cleanup`.
fn start(sb: &Sandbox, spec: &ProcessSpec, cleanup: &mut Cleanup) -> Result<Started, SandboxError> {
    let limits = &spec.limits;
    let mut setup = ChildSetup::new();
    if let Some(cg) = &sb.cgroups {
        let job = cg
            .create_job(limits.memory_bytes(), spec.pids_limit, limits.cpu_shares)
            .map_err(SandboxError::io("cannot create the job's cgroup"))?;
        let fds: Vec<OwnedFd> = job
            .join_fds()
            .into_iter()
            .map(|fd| {
                // SAFETY: fd is open for as long as `job` lives; we only duplicate it.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
            })
            .collect::<Result<_, _>>()
            .map_err(SandboxError::io("cannot hand the cgroup to the child"))?;
        setup.cgroup_procs = Arc::new(fds);
        cleanup.cgroup = Some(job);
    }
    if let Some(net) = &cleanup.net {
        // The NAT works for the tool: its memory and CPU are the job's, and it is
        // killed with the job's processes.
        if let Some(cg) = &cleanup.cgroup {
            let pid = net.nat_pid().to_string();
            for fd in cg.join_fds() {
                sys::child::write_all(fd, pid.as_bytes())
                    .map_err(SandboxError::io("cannot move the NAT into the job's cgroup"))?;
            }
        }
        setup.netns = Some(net.fd());
    }
    setup.user = sb.tool_ids;
    setup.rlimits = rlimits(sb, spec);

    let mut keep: Vec<OwnedFd> = Vec::new();
    let mut status_rx = None;
    let mut home = PathBuf::new();
    let mut cmd: Command = match &sb.bwrap {
        Some(b) => {
            let mut files = Vec::new();
            for (i, f) in spec.workdir_files.iter().enumerate() {
                let name = CString::new(format!("hanzo:{}", f.name)).unwrap_or_default();
                let fd =
                    sys::memfd(&name, &f.contents).map_err(SandboxError::io("cannot hold a work file"))?;
                files.push((fd.as_raw_fd(), i));
                keep.push(fd);
            }
            let (rx, tx) = sys::pipe().map_err(SandboxError::io("cannot make a pipe"))?;
            // The NAT's resolver, not the host's (which may be a loopback one).
            let resolv_conf = match &cleanup.net {
                Some(_) => {
                    let conf = crate::net::resolv_conf();
                    let fd = sys::memfd(c"hanzo:resolv.conf", conf.as_bytes())
                        .map_err(SandboxError::io("cannot hold resolv.conf"))?;
                    let raw = fd.as_raw_fd();
                    keep.push(fd);
                    Some(raw)
                }
                None => None,
            };
            let mut pass_fds: Vec<i32> = files.iter().map(|(fd, _)| *fd).chain([tx.as_raw_fd()]).collect();
            let entries = entries(sb, b, spec, &mut keep, &mut pass_fds, &mut setup)?;
            pass_fds.extend(resolv_conf);
            let layout = Layout {
                spec,
                files,
                status_fd: tx.as_raw_fd(),
                entries,
                resolv_conf,
            };
            let mut env = spec.env.clone();
            for key in ["HOME", "TMPDIR"] {
                env.entry(key.into()).or_insert_with(|| GUEST_WORKDIR.into());
            }
            let mut blob = Vec::new();
            for a in b.options(&layout, &env) {
                blob.extend_from_slice(a.as_encoded_bytes());
                blob.push(0);
            }
            let args = sys::memfd(c"hanzo:bwrap-args", &blob)
                .map_err(SandboxError::io("cannot hold bubblewrap's arguments"))?;
            pass_fds.push(args.as_raw_fd());
            setup.pass_fds = pass_fds;
            let mut cmd = Command::new(&b.path);
            cmd.arg("--args")
                .arg(args.as_raw_fd().to_string())
                .arg("--")
                .arg(&spec.program)
                .args(&spec.args)
                .current_dir("/");
            keep.push(args);
            keep.push(tx);
            status_rx =
                Some(pipe::Receiver::from_owned_fd(rx).map_err(SandboxError::io("cannot watch a pipe"))?);
            cmd
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("hanzo-job-")
                .tempdir_in(&sb.options.work_root)
                .map_err(SandboxError::io("cannot create the work directory"))?
                .keep();
            cleanup.workdir = Some(dir.clone());
            // Private to the tool's user (the umask may have left it world-readable).
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(SandboxError::io("cannot make the work directory private"))?;
            write_work_files(spec, &dir, sb.tool_ids)?;
            if spec.network == Network::None {
                setup.unshare = sb.plain_unshare;
            } else {
                // Network::Full: setup.netns, the tool's own namespace behind NAT.
                setup.unshare = sb.plain_unshare & !libc::CLONE_NEWNET;
            }
            let mut cmd = Command::new(plain_program(spec, &dir));
            cmd.args(&spec.args).current_dir(&dir);
            home = dir.clone();
            cmd
        }
    };
    // bubblewrap starts with an empty environment and gives the tool its own inside
    // the sandbox (`--setenv`): nothing of the job's (LD_PRELOAD, LD_AUDIT, ...) ever
    // applies to a host-side process. A plain run is the tool itself, exec'd straight
    // away as the tool's user; the loader variables are refused there (spec.rs).
    cmd.env_clear();
    if sb.bwrap.is_none() {
        cmd.envs(&spec.env);
        // Toolchains look for a home and a temporary directory (deno's and uv's caches,
        // Python's tempfile): give them the private work directory unless the spec says
        // otherwise, never the node's own.
        for key in ["HOME", "TMPDIR"] {
            if !spec.env.contains_key(key) {
                cmd.env(key, &home);
            }
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: ChildSetup::apply only makes async-signal-safe calls.
    unsafe { cmd.pre_exec(move || setup.apply()) };
    let child = cmd
        .spawn()
        .map_err(SandboxError::io("cannot start the process"))?;
    cleanup.pid = Some(child.id() as i32);
    // The work files' memfds and the status pipe's write end now live in the child.
    drop(keep);
    Ok(Started {
        child,
        status: status_rx,
    })
}

/// The host paths a bubblewrap run shows, each with where bubblewrap finds it.
///
/// A job's mounts are opened here without following any symlink, right before the
/// start: a path checked earlier whose component has since been replaced with a
/// symlink (`out -> /etc`, planted by another job in a shared writable mount) is
/// refused rather than bound. With a root node (bubblewrap then runs as the tool's
/// unprivileged user) every path is opened here and staged (see `child::Stage`);
/// otherwise a mount's descriptor goes to bubblewrap (`--bind-fd`), which checks that
/// it mounted that very file.
fn entries(
    sb: &Sandbox,
    b: &crate::bwrap::Bwrap,
    spec: &ProcessSpec,
    keep: &mut Vec<OwnedFd>,
    pass_fds: &mut Vec<i32>,
    setup: &mut ChildSetup,
) -> Result<Vec<Entry>, SandboxError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = Vec::new();
    let mut trees: Vec<(OwnedFd, CString, bool)> = Vec::new();
    let stage_dir = sb.stage_dir.as_deref();
    let mut stage = |fd: OwnedFd, writable: bool, what: &Path| -> Result<PathBuf, SandboxError> {
        let dir = stage_dir.unwrap_or(Path::new("/"));
        let is_dir = sys::is_dir(&fd).map_err(SandboxError::io(format!("cannot stat {}", what.display())))?;
        let tree = sys::clone_tree(&fd, writable).map_err(SandboxError::io(format!(
            "cannot take a copy of the mount {}",
            what.display()
        )))?;
        let at = dir.join(trees.len().to_string());
        let c = CString::new(at.as_os_str().as_encoded_bytes()).unwrap_or_default();
        trees.push((tree, c, is_dir));
        Ok(at)
    };
    for item in crate::bwrap::read_only_plan(spec) {
        match item {
            Ok((target, at)) => out.push(Entry::Symlink { target, at }),
            Err(p) if stage_dir.is_some() => {
                // Read-only paths are the runtime's toolchain (trusted): followed.
                let fd: OwnedFd = match std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH)
                    .open(&p)
                {
                    Ok(f) => f.into(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(SandboxError::Io {
                            what: format!("cannot open {}", p.display()),
                            source: e,
                        });
                    }
                };
                let at = stage(fd, false, &p)?;
                out.push(Entry::Bind {
                    source: Source::Exact(at),
                    dest: p,
                    writable: false,
                });
            }
            Err(p) => out.push(Entry::Bind {
                source: Source::Optional(p.clone()),
                dest: p,
                writable: false,
            }),
        }
    }
    for m in &spec.mounts {
        let fd = hanzo_compute::mounts::open_no_symlinks(&m.host).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                SandboxError::Spec(format!(
                    "mount source {} has a symbolic link in its path: refused (it may have been \
                     swapped after the path was checked)",
                    m.host.display()
                ))
            } else {
                SandboxError::Io {
                    what: format!("cannot open mount source {}", m.host.display()),
                    source: e,
                }
            }
        })?;
        let source = if stage_dir.is_some() {
            Source::Exact(stage(fd, m.writable, &m.host)?)
        } else if b.bind_fd() {
            pass_fds.push(fd.as_raw_fd());
            let raw = fd.as_raw_fd();
            keep.push(fd);
            Source::Fd(raw)
        } else {
            // An old bubblewrap: the path was just checked; a swap in the instants
            // until bubblewrap looks it up is not caught.
            Source::Exact(m.host.clone())
        };
        out.push(Entry::Bind {
            source,
            dest: PathBuf::from(&m.guest),
            writable: m.writable,
        });
    }
    if let Some(dir) = stage_dir {
        setup.stage = Some(Arc::new(Stage {
            dir: CString::new(dir.as_os_str().as_encoded_bytes()).unwrap_or_default(),
            trees,
        }));
    }
    Ok(out)
}

/// Writes the work files into a plain run's directory, owned by the tool's user.
fn write_work_files(spec: &ProcessSpec, dir: &Path, owner: Option<(u32, u32)>) -> Result<(), SandboxError> {
    let chown = |p: &Path| match owner {
        Some((uid, gid)) => std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(SandboxError::io(
            "cannot hand the work directory to the tool's user",
        )),
        None => Ok(()),
    };
    chown(dir)?;
    for f in &spec.workdir_files {
        let path = dir.join(&f.name);
        if let Some(parent) = path.parent()
            && !parent.exists()
        {
            std::fs::create_dir_all(parent)
                .map_err(SandboxError::io(format!("cannot create {}", parent.display())))?;
            let mut p = parent;
            while p != dir {
                chown(p)?;
                p = p.parent().unwrap_or(dir);
            }
        }
        std::fs::write(&path, &f.contents).map_err(SandboxError::io(format!("cannot write {}", f.name)))?;
        let mode = if f.executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(SandboxError::io(format!("cannot set the mode of {}", f.name)))?;
        chown(&path)?;
    }
    Ok(())
}

/// The rlimits of a run: always no core dumps and a CPU-time backstop; memory and
/// process count where no cgroup holds them.
fn rlimits(sb: &Sandbox, spec: &ProcessSpec) -> Vec<(sys::Resource, u64, u64)> {
    let mut r = Vec::new();
    // A core dump would write the tool's memory to the host's disk, or hand it to the
    // host's core_pattern helper (as root, when that is a pipe).
    r.push((libc::RLIMIT_CORE as sys::Resource, 0, 0));
    // A backstop should the node die without killing the tool (plain mode, no cgroup):
    // more CPU time than the timeout allows on every CPU, so it never fires first.
    let cpu = spec
        .limits
        .timeout_ms
        .div_ceil(1000)
        .saturating_mul(sb.cpus)
        .saturating_add(1);
    r.push((libc::RLIMIT_CPU as sys::Resource, cpu, cpu.saturating_add(1)));
    if !sb.has(Controller::Memory) {
        let bytes = spec.limits.memory_bytes();
        match sb.options.memory_rlimit {
            MemoryRlimit::Data => r.push((libc::RLIMIT_DATA as sys::Resource, bytes, bytes)),
            MemoryRlimit::AddressSpace => r.push((libc::RLIMIT_AS as sys::Resource, bytes, bytes)),
            MemoryRlimit::Off => {}
        }
    }
    let uid = sb.tool_uid();
    if !sb.has(Controller::Pids) && uid != 0 {
        // RLIMIT_NPROC counts every task of the user on the host, so allow what the
        // user already runs plus the job's share (and bubblewrap's two processes).
        let n = sys::tasks_of_uid(uid)
            .saturating_add(u64::from(spec.pids_limit))
            .saturating_add(2);
        r.push((libc::RLIMIT_NPROC as sys::Resource, n, n));
    }
    r
}

pub(crate) async fn run(sb: &Sandbox, spec: ProcessSpec, cancel: &CancelToken) -> ProcessOutcome {
    // A staged file that is replaced (renamed over, as runtimes update their caches)
    // between being opened and being bound can no longer be mounted: the kernel
    // refuses a file that has been unlinked. The tool never started then; start again
    // (a few times, backing off: a runtime may be replacing it for a moment), with the
    // file now in place.
    if let Some(stage) = &sb.stage_dir {
        let stage = stage.to_string_lossy().to_string();
        for attempt in 0..5u32 {
            let o = run_once(sb, spec.clone(), cancel).await;
            let replaced = matches!(&o.exit, Exit::SpawnFailed(m)
                if m.contains(STAGED_GONE) || (m.contains(&stage) && m.contains("No such file or directory")));
            if !replaced {
                return o;
            }
            tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
        }
    }
    run_once(sb, spec, cancel).await
}

/// How a spawn failure reads when a staged copy could not be attached because its
/// file was unlinked (`ESTALE`, which `child::attach` reports for that case).
const STAGED_GONE: &str = "(os error 116)";

async fn run_once(sb: &Sandbox, spec: ProcessSpec, cancel: &CancelToken) -> ProcessOutcome {
    match open(sb, &spec, cancel, false).await {
        Ok(live) => supervise(spec, cancel, live).await,
        Err(outcome) => outcome,
    }
}

/// Checks the spec, sets up the network and starts the process: a [`Live`] run, or
/// the outcome of a run that never started.
/// A `session` sends all of stderr to `spec.log_sink` and keeps none of it.
pub(crate) async fn open(
    sb: &Sandbox,
    spec: &ProcessSpec,
    cancel: &CancelToken,
    session: bool,
) -> Result<Live, ProcessOutcome> {
    let started_at = Instant::now();
    let applied = Applied {
        timeout_ms: spec.limits.timeout_ms,
        memory_mb: spec.limits.memory_mb,
        max_output_bytes: spec.limits.max_output_bytes,
        pids_limit: spec.pids_limit,
    };
    if let Err(e) = spec.validate(sb.bwrap.is_some()) {
        return Err(ProcessOutcome::failed(
            Exit::Rejected(e.to_string()),
            applied,
            started_at.elapsed(),
        ));
    }
    if cancel.is_cancelled() {
        return Err(ProcessOutcome::failed(
            Exit::Cancelled,
            applied,
            started_at.elapsed(),
        ));
    }
    let mut cleanup = Cleanup {
        pid: None,
        pid1: Arc::new(OnceLock::new()),
        cgroup: None,
        workdir: None,
        net: None,
        tasks: Vec::new(),
    };
    if spec.network == Network::Full {
        // Never the host's namespace: the tool's own behind NAT, or no network at all.
        let nat = match &sb.nat {
            Ok(nat) => nat,
            Err(why) => {
                let why = format!("network: full is not available on this host: {why}");
                return Err(ProcessOutcome::failed(
                    Exit::Rejected(why),
                    applied,
                    started_at.elapsed(),
                ));
            }
        };
        // Started here, on a thread that outlives the run (the NAT dies with the thread
        // that started it); waited for off the async threads.
        let ready = match nat.start() {
            Ok(mut net) => tokio::task::spawn_blocking(move || net.wait_ready().map(|()| net)).await,
            Err(e) => Ok(Err(e)),
        };
        match ready {
            Ok(Ok(net)) => cleanup.net = Some(net),
            Ok(Err(e)) => {
                return Err(ProcessOutcome::failed(
                    Exit::SpawnFailed(e.to_string()),
                    applied,
                    started_at.elapsed(),
                ));
            }
            Err(e) => {
                let why = format!("the network set-up failed: {e}");
                return Err(ProcessOutcome::failed(
                    Exit::SpawnFailed(why),
                    applied,
                    started_at.elapsed(),
                ));
            }
        }
    }
    let started = match start(sb, spec, &mut cleanup) {
        Ok(s) => s,
        Err(e) => {
            drop(cleanup);
            let exit = match e {
                // The job asked for something that cannot be run (a mount that is not
                // what was checked): its fault, not the host's.
                SandboxError::Spec(m) => Exit::Rejected(m),
                e => Exit::SpawnFailed(e.to_string()),
            };
            return Err(ProcessOutcome::failed(exit, applied, started_at.elapsed()));
        }
    };
    Ok(Live::new(
        sb,
        cleanup,
        started,
        spec.log_sink.clone(),
        session,
        started_at,
        applied,
    ))
}

fn receiver<T: Into<OwnedFd>>(end: Option<T>) -> Option<pipe::Receiver> {
    end.and_then(|e| pipe::Receiver::from_owned_fd(e.into()).ok())
}

/// A started process: its pipes not yet taken, stderr and bubblewrap's status being
/// read, its exit being waited for. Dropping it kills and cleans up (through
/// [`Cleanup`]); [`finish`](Live::finish) does the same and reports.
pub(crate) struct Live {
    bwrap: bool,
    pid: i32,
    cleanup: Cleanup,
    pub(crate) stdin: Option<pipe::Sender>,
    pub(crate) stdout: Option<pipe::Receiver>,
    logs: Arc<Mutex<LogBuffer>>,
    stderr_task: Option<JoinHandle<()>>,
    /// A session's way to have its stderr read up to now (see `read_logs`).
    pub(crate) flush: Option<tokio::sync::mpsc::Sender<Flush>>,
    status_task: Option<JoinHandle<Option<i32>>>,
    /// Resolves once the child has exited (left a zombie, so its pid stays ours).
    pub(crate) exited: JoinHandle<()>,
    /// Whether `exited` has resolved.
    pub(crate) child_done: bool,
    started_at: Instant,
    applied: Applied,
}

impl Live {
    fn new(
        sb: &Sandbox,
        mut cleanup: Cleanup,
        mut started: Started,
        log_sink: hanzo_compute::stdio::LogSink,
        session: bool,
        started_at: Instant,
        applied: Applied,
    ) -> Live {
        let pid = started.child.id() as i32;
        let stdin = started
            .child
            .stdin
            .take()
            .and_then(|s| pipe::Sender::from_owned_fd(s.into()).ok());
        let stdout = receiver(started.child.stdout.take());
        let logs = Arc::new(Mutex::new(LogBuffer::new(STDERR_CAP).with_sink(log_sink.clone())));
        let (flush_tx, flush_rx) = match session {
            true => {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        // A session keeps none of it: every byte goes to its sink.
        let (kept, forward) = if session {
            (None, log_sink)
        } else {
            (Some(logs.clone()), Default::default())
        };
        let stderr_task = receiver(started.child.stderr.take())
            .map(|rx| tokio::spawn(read_logs(rx, kept, forward, flush_rx)));
        let status_task = started
            .status
            .take()
            .map(|rx| tokio::spawn(read_status(rx, pid, cleanup.pid1.clone())));
        cleanup.tasks.extend(
            stderr_task
                .iter()
                .map(JoinHandle::abort_handle)
                .chain(status_task.iter().map(JoinHandle::abort_handle)),
        );
        let exited = tokio::task::spawn_blocking(move || {
            let _ = sys::wait_exit_keep_zombie(pid);
        });
        Live {
            bwrap: sb.bwrap.is_some(),
            pid,
            cleanup,
            stdin,
            stdout,
            logs,
            stderr_task,
            flush: flush_tx,
            status_task,
            exited,
            child_done: false,
            started_at,
            applied,
        }
    }

    /// The job cgroup's peak memory so far, where there is one.
    pub(crate) fn peak_memory(&self) -> Option<u64> {
        self.cleanup.cgroup.as_ref().and_then(|c| c.stats().peak_memory)
    }

    /// Stops the run (kills the whole tree when `stop` is given or the child is still
    /// running), reaps it, drains what is left of `stdout` into `out` (up to `cap`),
    /// cleans up and names how it ended.
    pub(crate) async fn finish(
        mut self,
        mut stop: Option<Exit>,
        mut stdout: Option<pipe::Receiver>,
        mut out: Vec<u8>,
        cap: u64,
    ) -> ProcessOutcome {
        let pid = self.pid;
        let mut cleanup = std::mem::replace(
            &mut self.cleanup,
            Cleanup {
                pid: None,
                pid1: Arc::new(OnceLock::new()),
                cgroup: None,
                workdir: None,
                net: None,
                tasks: Vec::new(),
            },
        );
        if stop.is_some() || !self.child_done {
            cleanup.kill();
        }
        if !self.child_done
            && tokio::time::timeout(KILL_PATIENCE, &mut self.exited)
                .await
                .is_err()
        {
            // The sandbox's init did not take its monitor down in time: kill that too.
            sys::kill(pid, libc::SIGKILL);
            sys::kill(-pid, libc::SIGKILL);
            let _ = (&mut self.exited).await;
        }
        // The child is dead but not reaped, so its process-group id still cannot name
        // anything else: kill whatever of the tool is left in the group (background
        // processes of a plain run) and in the cgroup (those that left the group).
        sys::kill(-pid, libc::SIGKILL);
        if let Some(cg) = &cleanup.cgroup {
            cg.kill_all();
        }
        let (status, max_rss) = match sys::reap(pid) {
            Ok(r) => r,
            Err(_) => (WaitStatus::Exited(-1), 0),
        };
        cleanup.pid = None;
        let wall = self.started_at.elapsed();

        // What is left in the pipes (at most their buffers), until end-of-file.
        let mut chunk = vec![0u8; 64 * 1024];
        let grace = tokio::time::Instant::now() + DRAIN_GRACE;
        while let Some(rx) = stdout.as_mut() {
            match tokio::time::timeout_at(grace, rx.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => {
                    if push_capped(&mut out, &chunk[..n], cap) {
                        stop.get_or_insert(Exit::OutputLimit);
                        break;
                    }
                }
                _ => break,
            }
        }
        drop(stdout);
        drop(self.stdout.take());
        drop(self.stdin.take());
        if let Some(t) = self.stderr_task.as_mut()
            && tokio::time::timeout_at(grace, &mut *t).await.is_err()
        {
            t.abort();
        }
        let stderr = self.logs.lock().unwrap_or_else(|p| p.into_inner()).finish();
        let mut bwrap_exit = None;
        if let Some(t) = self.status_task.as_mut() {
            match tokio::time::timeout_at(grace, &mut *t).await {
                Ok(Ok(code)) => bwrap_exit = code,
                _ => t.abort(),
            }
        }
        // If the monitor was killed before the sandbox's pid 1 was, pid 1 dies through
        // --die-with-parent, a moment later: wait for it, so that nothing is left running
        // when the run is over.
        if let Some(h) = cleanup.pid1.get() {
            let deadline = Instant::now() + KILL_PATIENCE;
            while !h.ended() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }

        let stats = cleanup.cgroup.as_ref().map(JobCgroup::stats).unwrap_or_default();
        if let Some(net) = cleanup.net.take() {
            // Stopping the NAT waits for it: off the async threads, before the cgroup it
            // is in is removed.
            let _ = tokio::task::spawn_blocking(move || drop(net)).await;
        }
        if let Some(cg) = cleanup.cgroup.take() {
            cg.remove(CGROUP_PATIENCE).await;
        }
        if let Some(dir) = cleanup.workdir.take() {
            remove_tree(&dir);
        }

        // Without a memory cgroup, the kernel's maximum RSS of the reaped process tree. Not
        // with bubblewrap: its monitor does not reap the sandbox's init, so its figure is
        // only bubblewrap's own.
        let rss_peak = (!self.bwrap && max_rss > 0).then_some(max_rss);
        let natural = natural_exit(self.bwrap, status, bwrap_exit, &stderr);
        let exit = decide(stop, natural, &stats);
        if exit == Exit::OutputLimit {
            out.truncate(cap as usize);
        }
        ProcessOutcome {
            exit,
            stdout: out,
            stderr,
            wall,
            peak_memory_bytes: stats.peak_memory.or(rss_peak),
            applied: self.applied,
        }
    }
}

async fn supervise(spec: ProcessSpec, cancel: &CancelToken, mut live: Live) -> ProcessOutcome {
    let cap = spec.limits.max_output_bytes;

    // stdin: written by a task of its own, so a tool that never reads it (and leaves
    // the pipe full) cannot stall the node; dropping the sender closes it.
    if let Some(tx) = live.stdin.take() {
        let data = spec.stdin;
        let writer = tokio::spawn(async move {
            let mut tx = tx;
            if !data.is_empty() {
                let _ = tx.write_all(&data).await;
            }
        });
        live.cleanup.tasks.push(writer.abort_handle());
    }
    let mut stdout = live.stdout.take();
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut stop: Option<Exit> = None;
    let deadline = tokio::time::sleep(Duration::from_millis(spec.limits.timeout_ms));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => { stop = Some(Exit::Cancelled); break; }
            _ = &mut deadline => { stop = Some(Exit::TimedOut); break; }
            _ = &mut live.exited => { live.child_done = true; break; }
            r = async { stdout.as_mut().unwrap().read(&mut chunk).await }, if stdout.is_some() => match r {
                Ok(n) if n > 0 => {
                    if push_capped(&mut out, &chunk[..n], cap) {
                        stop = Some(Exit::OutputLimit);
                        break;
                    }
                }
                _ => stdout = None,
            },
        }
    }
    live.finish(stop, stdout, out, cap).await
}

/// How the process ended by itself, from its wait status and, with bubblewrap, the
/// exit code bubblewrap reported for the command.
fn natural_exit(bwrap: bool, status: WaitStatus, bwrap_exit: Option<i32>, stderr: &[u8]) -> Exit {
    if !bwrap {
        return match status {
            WaitStatus::Exited(c) => Exit::Exited(c),
            WaitStatus::Signaled(s) => Exit::Signaled(s),
        };
    }
    match (bwrap_exit, status) {
        (Some(code), _) => Exit::Exited(code),
        // No exit code from bubblewrap and a failure of its own: it never got as far as
        // running the command. Its message is its last line on stderr.
        (None, WaitStatus::Exited(c)) if c != 0 => Exit::SpawnFailed(
            hanzo_compute::stdio::last_log_line(stderr)
                .unwrap_or_else(|| format!("bubblewrap exited with {c}")),
        ),
        (None, WaitStatus::Exited(c)) => Exit::Exited(c),
        (None, WaitStatus::Signaled(s)) => Exit::Signaled(s),
    }
}

/// The one ending to report. The node's own reasons for stopping the tool come first
/// (cancellation, the output cap: those are certain), then what the kernel recorded
/// (an OOM kill, refused forks: these explain a failure or a timeout better than
/// the timeout itself does), then the timeout, then the exit status. A tool that
/// exited 0 succeeded, whatever its children ran into.
fn decide(stop: Option<Exit>, natural: Exit, stats: &Stats) -> Exit {
    if matches!(stop, Some(Exit::Cancelled) | Some(Exit::OutputLimit)) {
        return stop.unwrap_or(natural);
    }
    let clean = stop.is_none() && natural == Exit::Exited(0);
    if !clean {
        let oom = match stats.oom_kills {
            Some(n) => n > 0,
            // Kernels without an OOM counter: a SIGKILL the node did not send, while
            // the cgroup was refusing memory, was the OOM killer.
            None => {
                stats.memory_failcnt.unwrap_or(0) > 0
                    && matches!(natural, Exit::Signaled(9) | Exit::Exited(137))
                    && stop.is_none()
            }
        };
        if oom {
            return Exit::MemoryLimit;
        }
        if stats.forks_refused.unwrap_or(0) > 0 {
            return Exit::ProcessLimit;
        }
    }
    stop.unwrap_or(natural)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_exactly() {
        let mut out = Vec::new();
        assert!(!push_capped(&mut out, b"abc", 5));
        assert!(!push_capped(&mut out, b"de", 5));
        assert!(push_capped(&mut out, b"f", 5));
        assert_eq!(out, b"abcde");
    }

    #[test]
    fn endings_are_ranked() {
        let oom = Stats {
            oom_kills: Some(1),
            ..Stats::default()
        };
        let forks = Stats {
            forks_refused: Some(3),
            ..Stats::default()
        };
        let none = Stats::default();
        assert_eq!(
            decide(Some(Exit::Cancelled), Exit::Exited(137), &oom),
            Exit::Cancelled
        );
        assert_eq!(decide(None, Exit::Exited(137), &oom), Exit::MemoryLimit);
        assert_eq!(
            decide(Some(Exit::TimedOut), Exit::Signaled(9), &forks),
            Exit::ProcessLimit
        );
        assert_eq!(
            decide(Some(Exit::TimedOut), Exit::Signaled(9), &none),
            Exit::TimedOut
        );
        // A tool that handled its refused forks and succeeded, succeeded.
        assert_eq!(decide(None, Exit::Exited(0), &forks), Exit::Exited(0));
        assert_eq!(decide(None, Exit::Exited(2), &none), Exit::Exited(2));
    }

    #[test]
    fn unlocking_a_tree_never_follows_its_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o751)).unwrap();
        let tree = tempfile::tempdir().unwrap();
        let sub = tree.path().join("locked");
        std::fs::create_dir_all(sub.join("deeper")).unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), sub.join("link")).unwrap();
        std::fs::set_permissions(sub.join("deeper"), std::fs::Permissions::from_mode(0o000)).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o000)).unwrap();
        open_up(tree.path());
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&sub.join("deeper")), 0o700);
        assert_eq!(mode(outside.path()), 0o751, "followed a symlink out of the tree");
        remove_tree(tree.path());
        assert!(!tree.path().exists());
        assert!(outside.path().exists());
    }
}

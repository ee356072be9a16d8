//! Job mounts, resolved once to what the caller meant and nothing more.
//!
//! Every `Mount::host` that reaches a runtime is absolute and canonical:
//! - the local CLI (`hanzo-node run`: the operator at their own shell) makes a relative
//!   path absolute against its working directory and canonicalises it
//!   ([`resolve_local`]); it may mount what it likes;
//! - a job submitted over the API may mount only a path under one of the operator's
//!   `[compute] mount_roots`, and the part below the root is resolved WITHOUT following
//!   any symlink ([`MountPolicy::resolve`]: `openat2` with `RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS` from the root's descriptor, or an `O_NOFOLLOW` walk on kernels
//!   without `openat2`). A job that plants `out -> /etc` in a shared directory thus
//!   cannot hand the next job the host's `/etc`: the next job's `out` is refused;
//! - the node's data directory (its key, token, job store) and container-engine
//!   sockets and state are never mountable over the API, under a root or not, nor is
//!   any directory that contains them.
//!
//! A path canonical when checked can be swapped for a symlink before a runtime binds
//! it (a rename in a shared directory by a job holding it writable). Runtimes close
//! that by re-opening the path at bind time with [`open_no_symlinks`]: the process
//! sandbox binds the descriptor it got; the Docker daemon binds by path, so the Docker
//! runtime checks right before the container is created and started (the window left
//! is the daemon's own, between that check and its mount).

use crate::{ComputeError, Config, Mount};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

/// Why a mount asked for over the API is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    /// The path cannot be used as given: relative, with `..`, missing, a symlink on the
    /// way, or neither a directory nor a regular file (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// The caller may not mount it: outside every mount root, or a path the node
    /// protects (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
}

impl From<MountError> for ComputeError {
    fn from(e: MountError) -> Self {
        ComputeError::invalid(e.to_string())
    }
}

/// Where container engines keep their sockets and state: mounting one hands a job the
/// engine, and so root on the host. Never mountable over the API.
const CONTAINER_ENGINE_PATHS: [&str; 10] = [
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/docker",
    "/run/containerd",
    "/run/podman",
    "/run/crio",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/containers",
    "/run/user",
];

/// Which mounts jobs from API clients may have: paths under the operator's roots, never
/// a protected path.
#[derive(Debug, Clone, Default)]
pub struct MountPolicy {
    /// Canonical mount roots.
    roots: Vec<PathBuf>,
    /// Canonical protected paths, with what they are (for the message).
    protected: Vec<(PathBuf, &'static str)>,
}

impl MountPolicy {
    /// A policy over `roots` (canonicalised here: each must exist) that protects the
    /// node's `data_dir`, the Docker `socket` and the usual container-engine paths.
    pub fn new(roots: &[PathBuf], data_dir: &Path, socket: &str) -> Result<Self, ComputeError> {
        let mut canonical = Vec::new();
        for root in roots {
            let c = root.canonicalize().map_err(|e| {
                ComputeError::invalid(format!("compute.mount_roots: {}: {e}", root.display()))
            })?;
            if !c.is_dir() {
                return Err(ComputeError::invalid(format!(
                    "compute.mount_roots: {} is not a directory",
                    root.display()
                )));
            }
            canonical.push(c);
        }
        // Protected paths are compared with mount paths as written (before they are
        // opened) and as canonical: keep both spellings (`/var/run` is usually a link
        // to `/run`); a path that does not exist yet is kept as written, made absolute.
        let mut protected = Vec::new();
        let mut protect = |p: &Path, what: &'static str| {
            let written = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            if let Ok(c) = p.canonicalize()
                && c != written
            {
                protected.push((c, what));
            }
            protected.push((written, what));
        };
        protect(data_dir, "the node's data directory");
        let socket = socket.strip_prefix("unix://").unwrap_or(socket);
        let engine = "a container engine's socket or state";
        if !socket.is_empty() {
            protect(Path::new(socket), engine);
        }
        for p in CONTAINER_ENGINE_PATHS {
            protect(Path::new(p), engine);
        }
        Ok(MountPolicy {
            roots: canonical,
            protected,
        })
    }

    /// The policy `config` sets: `[compute] mount_roots`, protecting `[node] data_dir`
    /// and `[compute.docker] socket`.
    pub fn from_config(config: &Config) -> Result<Self, ComputeError> {
        MountPolicy::new(
            &config.compute.mount_roots,
            &config.node.data_dir,
            &config.compute.docker.socket,
        )
    }

    /// The canonical mount roots.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Resolves `m` for a job from an API client: its host path must be absolute, lie
    /// under a mount root, contain no `..`, resolve below the root without any symlink,
    /// be a directory or a regular file, and be none of (nor contain, nor lie in) the
    /// protected paths. Returns the mount with its canonical host path. Blocking
    /// (filesystem calls).
    pub fn resolve(&self, m: &Mount) -> Result<Mount, MountError> {
        let shown = m.host.display();
        let invalid = |why: String| MountError::Invalid(format!("mount {shown}: {why}"));
        let forbidden = |why: String| MountError::Forbidden(format!("mount {shown}: {why}"));
        if !m.host.is_absolute() {
            return Err(invalid(
                "the host path is relative; a job submitted to a node names an absolute path".into(),
            ));
        }
        let path = lexical(&m.host).map_err(invalid)?;
        let Some(root) = self
            .roots
            .iter()
            .filter(|r| path.starts_with(r))
            .max_by_key(|r| r.as_os_str().len())
        else {
            let roots = if self.roots.is_empty() {
                "none are set: [compute] mount_roots".to_string()
            } else {
                let list: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
                format!("[compute] mount_roots: {}", list.join(", "))
            };
            return Err(forbidden(format!(
                "not under any of this node's mount roots ({roots})"
            )));
        };
        for (p, what) in &self.protected {
            if path.starts_with(p) || p.starts_with(&path) {
                return Err(forbidden(format!(
                    "{what} ({}) is never mountable by a job",
                    p.display()
                )));
            }
        }
        // The root itself is opened without following symlinks too: with nested roots,
        // a job holding the outer one writable could otherwise swap the inner one.
        let root_fd =
            open_no_symlinks(root).map_err(|e| invalid(format!("mount root {}: {e}", root.display())))?;
        let below = path.strip_prefix(root).unwrap_or(Path::new(""));
        let fd = if below.as_os_str().is_empty() {
            root_fd
        } else {
            open_beneath(&root_fd, below).map_err(|e| invalid(describe(&e)))?
        };
        let kind = File::from(fd)
            .metadata()
            .map_err(|e| invalid(e.to_string()))?
            .file_type();
        if kind.is_socket() {
            return Err(forbidden(
                "is a socket; sockets are never mountable by a job".into(),
            ));
        }
        if !kind.is_dir() && !kind.is_file() {
            return Err(invalid("is neither a directory nor a regular file".into()));
        }
        Ok(Mount {
            host: path,
            guest: m.guest.clone(),
            writable: m.writable,
        })
    }
}

/// Resolves `m` for the local CLI: a relative host path is taken against `cwd`, and
/// the result canonicalised once (following symlinks: the operator means them), so
/// that what runtimes bind is exactly the path that was checked.
pub fn resolve_local(m: &Mount, cwd: &Path) -> Result<Mount, ComputeError> {
    let host = cwd.join(&m.host);
    let host = host
        .canonicalize()
        .map_err(|e| ComputeError::invalid(format!("mount {}: cannot use {}: {e}", m, host.display())))?;
    Ok(Mount {
        host,
        guest: m.guest.clone(),
        writable: m.writable,
    })
}

/// `path` as normal components under `/`: `.` dropped, `..` refused (it would be
/// resolved against whatever the previous component turns out to be on disk).
fn lexical(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return Err("'..' is not allowed in a mount path".into()),
            Component::Prefix(_) => return Err("not a Unix path".into()),
        }
    }
    Ok(out)
}

/// An error from [`open_no_symlinks`] (or the resolution below a root) in words.
pub fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ELOOP) => {
            "a symbolic link on the way (mount paths are resolved without following symlinks)".into()
        }
        Some(libc::EXDEV) => "resolves outside its mount root".into(),
        Some(libc::ENOENT) => "does not exist".into(),
        _ => e.to_string(),
    }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))
}

/// Opens the absolute `path` (`O_PATH`) without following a symlink in any of its
/// components, and without `..`. What runtimes call at bind time: a path that was
/// canonical when the job was admitted and has since had a component replaced by a
/// symlink fails here with `ELOOP`.
pub fn open_no_symlinks(path: &Path) -> io::Result<OwnedFd> {
    if !path.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not an absolute path", path.display()),
        ));
    }
    let below = lexical(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let root = open_path(libc::AT_FDCWD, Path::new("/"), 0)?;
    let below = below.strip_prefix("/").unwrap_or(&below);
    if below.as_os_str().is_empty() {
        return Ok(root);
    }
    open_beneath(&root, below)
}

/// Opens `below` (relative, no `..`) beneath `dir` without following any symlink.
fn open_beneath(dir: &OwnedFd, below: &Path) -> io::Result<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        match open_path(dir.as_raw_fd(), below, resolve) {
            // ENOSYS: a kernel before 5.6; EPERM: a seccomp filter that refuses it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) => {}
            other => return other,
        }
    }
    walk_nofollow(dir, below)
}

/// `openat2(dirfd, path, O_PATH | O_CLOEXEC, resolve)`; with `resolve` 0 (or off
/// Linux) a plain `openat`.
fn open_path(dirfd: RawFd, path: &Path, resolve: u64) -> io::Result<OwnedFd> {
    let c = cstring(path)?;
    let flags = libc::O_PATH | libc::O_CLOEXEC;
    for _ in 0..16 {
        #[cfg(target_os = "linux")]
        let r = if resolve != 0 {
            // SAFETY: a zeroed open_how is valid (all fields are integers), the path is
            // a NUL-terminated string that outlives the call, and the size passed is
            // the struct's.
            let mut how: libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = flags as u64;
            how.resolve = resolve;
            unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    dirfd,
                    c.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                ) as libc::c_int
            }
        } else {
            // SAFETY: as above.
            unsafe { libc::openat(dirfd, c.as_ptr(), flags) }
        };
        #[cfg(not(target_os = "linux"))]
        let r = {
            let _ = resolve;
            // SAFETY: as above.
            unsafe { libc::openat(dirfd, c.as_ptr(), flags) }
        };
        if r >= 0 {
            // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(r) });
        }
        let e = io::Error::last_os_error();
        // EAGAIN: openat2 saw a concurrent rename and asks for a retry.
        if !matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN)) {
            return Err(e);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

/// The fallback where `openat2` is missing: one component at a time with `O_NOFOLLOW`,
/// refusing a component that is a symlink (`O_PATH | O_NOFOLLOW` opens the link
/// itself, so the type is checked on the descriptor).
fn walk_nofollow(dir: &OwnedFd, below: &Path) -> io::Result<OwnedFd> {
    let mut cur = dir.try_clone()?;
    for c in below.components() {
        let Component::Normal(name) = c else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a plain path"));
        };
        let c = cstring(Path::new(name))?;
        // SAFETY: `cur` is an open descriptor and `c` a NUL-terminated string.
        let r = unsafe {
            libc::openat(
                cur.as_raw_fd(),
                c.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just returned by the kernel.
        let next = unsafe { OwnedFd::from_raw_fd(r) };
        let meta = File::from(next.try_clone()?).metadata()?;
        if meta.file_type().is_symlink() {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        cur = next;
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mount(host: &Path) -> Mount {
        Mount {
            host: host.to_path_buf(),
            guest: "/data".into(),
            writable: true,
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        data: PathBuf,
        policy: MountPolicy,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("shared");
        std::fs::create_dir_all(root.join("in/deeper")).unwrap();
        std::fs::write(root.join("in/file.txt"), "x").unwrap();
        let data = base.join("node-data");
        std::fs::create_dir(&data).unwrap();
        let policy = MountPolicy::new(std::slice::from_ref(&root), &data, "/var/run/docker.sock").unwrap();
        Fixture {
            _dir: dir,
            root,
            data,
            policy,
        }
    }

    #[test]
    fn paths_under_a_root_resolve_to_themselves() {
        let f = fixture();
        for p in ["in", "in/deeper", "in/file.txt", "./in/./deeper/"] {
            let m = f.policy.resolve(&mount(&f.root.join(p))).unwrap();
            assert_eq!(m.host, lexical(&f.root.join(p)).unwrap(), "{p}");
            assert!(m.writable && m.guest == "/data");
        }
        // The root itself.
        assert_eq!(f.policy.resolve(&mount(&f.root)).unwrap().host, f.root);
    }

    #[test]
    fn a_planted_symlink_is_never_followed() {
        let f = fixture();
        // A job that could write the shared directory left these behind.
        symlink("/etc", f.root.join("out")).unwrap();
        symlink(f.root.join("in"), f.root.join("inner-link")).unwrap();
        std::fs::create_dir(f.root.join("real")).unwrap();
        symlink("/etc", f.root.join("real/escape")).unwrap();
        for p in [
            "out",
            "out/passwd",
            "inner-link",
            "inner-link/deeper",
            "real/escape",
        ] {
            let e = f.policy.resolve(&mount(&f.root.join(p))).unwrap_err();
            assert!(matches!(e, MountError::Invalid(_)), "{p}: {e}");
            assert!(e.to_string().contains("symbolic link"), "{p}: {e}");
        }
    }

    #[test]
    fn outside_the_roots_and_protected_paths_are_forbidden() {
        let f = fixture();
        let refuse = |p: &Path, needle: &str| {
            let e = f.policy.resolve(&mount(p)).unwrap_err();
            assert!(matches!(e, MountError::Forbidden(_)), "{}: {e}", p.display());
            assert!(e.to_string().contains(needle), "{}: {e}", p.display());
            assert!(
                e.to_string().starts_with(&format!("mount {}", p.display())),
                "{e}"
            );
        };
        refuse(Path::new("/etc"), "mount roots");
        refuse(Path::new("/"), "mount roots");
        refuse(&f.root.with_file_name("elsewhere"), "mount roots");
        // The data dir, inside it, and a directory holding it, even under a root.
        let inside = f.root.join("in/node-data");
        std::fs::create_dir(&inside).unwrap();
        let p = MountPolicy::new(std::slice::from_ref(&f.root), &inside, "").unwrap();
        for (path, needle) in [
            (inside.clone(), "data directory"),
            (inside.join("key"), "data directory"),
            (f.root.join("in"), "data directory"),
            (f.root.clone(), "data directory"),
        ] {
            let e = p.resolve(&mount(&path)).unwrap_err();
            assert!(matches!(e, MountError::Forbidden(_)), "{}: {e}", path.display());
            assert!(e.to_string().contains(needle), "{e}");
        }
        p.resolve(&mount(&f.root.join("in/deeper"))).unwrap();
        refuse(&f.data, "mount roots");
        let holding = MountPolicy::new(&[PathBuf::from("/")], &f.data, "").unwrap();
        let e = holding.resolve(&mount(f.data.parent().unwrap())).unwrap_err();
        assert!(e.to_string().contains("data directory"), "{e}");
        let e = holding.resolve(&mount(Path::new("/"))).unwrap_err();
        assert!(matches!(e, MountError::Forbidden(_)), "{e}");
        // Container engines, whatever the spelling.
        for p in [
            "/var/run/docker.sock",
            "/run/docker.sock",
            "/run",
            "/var/lib/docker",
        ] {
            let e = holding.resolve(&mount(Path::new(p))).unwrap_err();
            assert!(matches!(e, MountError::Forbidden(_)), "{p}: {e}");
        }
        // No mount roots at all: nothing is mountable.
        let none = MountPolicy::new(&[], &f.data, "").unwrap();
        let e = none.resolve(&mount(&f.root.join("in"))).unwrap_err();
        assert!(e.to_string().contains("none are set"), "{e}");
    }

    #[test]
    fn relative_dotdot_and_odd_files_are_invalid() {
        let f = fixture();
        let invalid = |m: Mount, needle: &str| {
            let e = f.policy.resolve(&m).unwrap_err();
            assert!(matches!(e, MountError::Invalid(_)), "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        };
        invalid(mount(Path::new("in")), "relative");
        invalid(mount(&f.root.join("in/../in")), "'..'");
        invalid(mount(&f.root.join("in/../../etc")), "'..'");
        invalid(mount(&f.root.join("missing")), "does not exist");
        let sock = f.root.join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = f.policy.resolve(&mount(&sock)).unwrap_err();
        assert!(
            matches!(e, MountError::Forbidden(_)) && e.to_string().contains("socket"),
            "{e}"
        );
    }

    #[test]
    fn the_fallback_walk_refuses_symlinks_too() {
        let f = fixture();
        symlink("/etc", f.root.join("out")).unwrap();
        let root = open_no_symlinks(&f.root).unwrap();
        walk_nofollow(&root, Path::new("in/deeper")).unwrap();
        let e = walk_nofollow(&root, Path::new("out")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        let e = walk_nofollow(&root, Path::new("out/passwd")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn open_no_symlinks_sees_a_swap() {
        let f = fixture();
        let target = f.root.join("in/deeper");
        open_no_symlinks(&target).unwrap();
        // Swapped for a symlink after it was admitted: refused at bind time.
        std::fs::rename(f.root.join("in"), f.root.join("was-in")).unwrap();
        symlink(f.root.join("was-in"), f.root.join("in")).unwrap();
        let e = open_no_symlinks(&target).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert!(open_no_symlinks(Path::new("relative")).is_err());
    }

    #[test]
    fn the_cli_resolves_relative_paths_against_its_directory() {
        let f = fixture();
        let m = resolve_local(&mount(Path::new("in/deeper")), &f.root).unwrap();
        assert_eq!(m.host, f.root.join("in/deeper"));
        // The operator's own symlinks are followed, once.
        symlink(f.root.join("in"), f.root.join("link")).unwrap();
        let m = resolve_local(&mount(Path::new("link")), &f.root).unwrap();
        assert_eq!(m.host, f.root.join("in"));
        let e = resolve_local(&mount(Path::new("missing")), &f.root).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}

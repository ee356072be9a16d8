//! Finding a runtime's toolchain (deno, uv, python, go) on the node's host, and the
//! few host-side processes the runtimes start outside the sandbox.
//!
//! A program is taken from the node's configuration when set, else from the node's
//! `PATH`. Version-manager shims (pyenv's, where `pip install deno` puts deno) are
//! resolved to the real binary once, here: a shim is a shell script that costs tens of
//! milliseconds on every call and lives in a directory the sandbox does not show.
//!
//! Host-side processes are only the node's own probes of its toolchain (`--version`,
//! `go env`, `uv python find`, pyenv's shim lookup): fixed arguments, no job input.
//! They start from [`host_command`], with an environment the node chooses. Everything
//! that reads or compiles a tool (a Go build, a uv install, deno's prepare steps) runs
//! in the sandbox, never here.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The variables of the node's own environment a toolchain probe keeps: `PATH` and
/// `HOME`, where a version manager or uv finds the interpreters the operator installed.
/// Both are the operator's (whoever started the node); a job's environment never
/// reaches a host-side process. Nothing else is inherited: no `LD_PRELOAD`, `GOFLAGS`,
/// `UV_*`, `PYTHON*`, `DENO_*` of whoever started the node steers a probe.
pub const HOST_ENV_KEPT: [&str; 2] = ["PATH", "HOME"];

/// A command for a host-side toolchain probe: an empty environment but
/// [`HOST_ENV_KEPT`] and `LANG=C.UTF-8`, stdin from `/dev/null`. Callers add only
/// variables the node chooses (`GOTOOLCHAIN=local`, `UV_PYTHON_DOWNLOADS=never`).
pub fn host_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear().env("LANG", "C.UTF-8").stdin(Stdio::null());
    for k in HOST_ENV_KEPT {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd
}

/// Finds `name`: `configured` when it is set (a path, or a name looked up on `PATH`),
/// else `name` on the node's `PATH`. Returns the canonical path of the real binary, or
/// a one-line reason it is missing.
pub fn find_program(name: &str, configured: Option<&Path>) -> Result<PathBuf, String> {
    let wanted = configured.filter(|p| !p.as_os_str().is_empty());
    let found = match wanted {
        Some(p) if p.components().count() > 1 => {
            if is_executable(p) {
                p.to_path_buf()
            } else {
                return Err(format!(
                    "{} (configured for {name}) is not an executable file",
                    p.display()
                ));
            }
        }
        Some(p) => search_path(&p.to_string_lossy())
            .ok_or_else(|| format!("{} (configured for {name}) is not on PATH", p.display()))?,
        None => search_path(name).ok_or_else(|| format!("{name} is not on PATH"))?,
    };
    let real = resolve_shim(&found).unwrap_or(found);
    Ok(std::fs::canonicalize(&real).unwrap_or(real))
}

/// The first line `program args…` prints (e.g. `deno 2.1.4 (stable, …)`), if it runs.
pub fn program_version(program: &Path, args: &[&str]) -> Option<String> {
    let out = host_command(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A pyenv shim (`<root>/shims/<name>`, a shell script) → the binary it would run,
/// asked of pyenv itself so that its version selection applies.
fn resolve_shim(p: &Path) -> Option<PathBuf> {
    let dir = p.parent()?;
    if dir.file_name()? != "shims" {
        return None;
    }
    let pyenv = dir.parent()?.join("libexec").join("pyenv");
    if !is_executable(&pyenv) {
        return None;
    }
    let out = host_command(&pyenv)
        .arg("which")
        .arg(p.file_name()?)
        .env("PYENV_ROOT", dir.parent()?)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let real = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && is_executable(&real)).then_some(real)
}

/// Gives `dir` and everything below it to host user `uid` (groups unchanged): the
/// directories a preparation step writes (a build's output, a shared build cache) must
/// belong to the user the sandbox runs it as, and what it made is given back to the
/// node afterwards. Needs root; a no-op for the node's own uid.
///
/// The tree may hold what a sandboxed process of that user made, and another one may
/// still be changing a shared cache: nothing here follows a symbolic link. Each
/// directory is opened relative to its parent's descriptor with `O_NOFOLLOW`, and each
/// entry changed with `fchownat(AT_SYMLINK_NOFOLLOW)`; a subdirectory swapped for a
/// link to `/etc` half-way makes the walk skip it, never change `/etc`.
pub fn chown_tree(dir: &Path, uid: u32) -> std::io::Result<()> {
    let top = open_dir_at(libc::AT_FDCWD, dir)?;
    chown_dir(&top, uid, 0)
}

/// The host uid sandboxed processes run as, when it is not the node's own (a root node
/// whose tools run as another user): a preparation step run in the sandbox writes its
/// directories as that user.
pub fn foreign_tool_uid(sandbox: &crate::Sandbox) -> Option<u32> {
    let euid = crate::sys::euid();
    (euid == 0 && sandbox.tool_uid() != euid).then(|| sandbox.tool_uid())
}

/// Hands `dir` to the user a preparation step runs as in `sandbox` (see
/// [`foreign_tool_uid`]), unless it is that user's already: the writable directories of
/// a step (its output, a cache it shares with other steps, never with jobs).
pub fn hand_to_tool(sandbox: &crate::Sandbox, dir: &Path) -> std::io::Result<()> {
    match foreign_tool_uid(sandbox) {
        Some(uid) if !owned_by(dir, uid) => chown_tree(dir, uid),
        _ => Ok(()),
    }
}

/// Makes what a preparation step wrote in `dir` the node's again, once the step has
/// ended (the sandbox has killed all its processes): jobs then get it read-only and no
/// later step or tool of that user can change it.
pub fn take_back(sandbox: &crate::Sandbox, dir: &Path) -> std::io::Result<()> {
    match foreign_tool_uid(sandbox) {
        Some(_) => chown_tree(dir, crate::sys::euid()),
        None => Ok(()),
    }
}

/// Whether `path` exists and belongs to host user `uid` (not following a final link).
pub fn owned_by(path: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == uid)
}

/// Deeper trees than this are left as they are (the walk recurses).
const MAX_DEPTH: usize = 128;

fn open_dir_at(parent: RawFd, name: &Path) -> std::io::Result<OwnedFd> {
    let c = CString::new(name.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `c` is NUL-terminated and outlives the call; the result is checked.
    let fd = unsafe { libc::openat(parent, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor this function owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn chown_dir(dir: &OwnedFd, uid: u32, depth: usize) -> std::io::Result<()> {
    // SAFETY: fchown on a descriptor we own; -1 leaves the group unchanged.
    if unsafe { libc::fchown(dir.as_raw_fd(), uid, libc::gid_t::MAX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    // The descriptor's /proc link names exactly the directory opened, whatever is
    // renamed around it meanwhile.
    let listing = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
    for entry in listing.flatten() {
        let name = PathBuf::from(entry.file_name());
        match open_dir_at(dir.as_raw_fd(), &name) {
            Ok(sub) => chown_dir(&sub, uid, depth + 1)?,
            // Not a directory (a file, or a link, which O_NOFOLLOW refuses): change the
            // entry itself, never what a link points at.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => {
                let c = CString::new(name.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
                // SAFETY: `c` is NUL-terminated; the call does not follow a link.
                let r = unsafe {
                    libc::fchownat(
                        dir.as_raw_fd(),
                        c.as_ptr(),
                        uid,
                        libc::gid_t::MAX,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                };
                let err = std::io::Error::last_os_error();
                if r != 0 && err.raw_os_error() != Some(libc::ENOENT) {
                    return Err(err);
                }
            }
            // Removed meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_and_explains_missing_ones() {
        let sh = find_program("sh", None).expect("sh is on PATH");
        assert!(sh.is_absolute());
        assert_eq!(
            find_program("x", Some(Path::new("/bin/sh"))).unwrap(),
            std::fs::canonicalize("/bin/sh").unwrap()
        );
        let e = find_program("no-such-tool-hanzo", None).unwrap_err();
        assert_eq!(e, "no-such-tool-hanzo is not on PATH");
        let e = find_program("deno", Some(Path::new("/nonexistent/deno"))).unwrap_err();
        assert!(e.contains("/nonexistent/deno (configured for deno)"), "{e}");
        assert!(program_version(&sh, &["-c", "echo v1"]).as_deref() == Some("v1"));
    }

    #[test]
    fn probes_inherit_nothing_but_path_and_home() {
        // The test's own environment stands for whoever started the node.
        let out = host_command(Path::new("/usr/bin/env")).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut keys: Vec<&str> = text.lines().filter_map(|l| l.split('=').next()).collect();
        keys.sort();
        for k in &keys {
            assert!(
                HOST_ENV_KEPT.contains(k) || *k == "LANG",
                "{k} leaked into a probe: {text}"
            );
        }
    }

    #[test]
    fn chown_tree_changes_the_tree_and_never_follows_links() {
        use std::os::unix::fs::MetadataExt;
        if unsafe { libc::geteuid() } != 0 {
            panic!("this test needs root (scripts/test.sh runs the suite as root)");
        }
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "x").unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join("a/link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("dirlink")).unwrap();
        chown_tree(d.path(), 65534).unwrap();
        for p in ["", "a", "a/b", "a/b/f", "a/link", "dirlink"] {
            assert!(owned_by(&d.path().join(p), 65534), "{p}");
        }
        assert_eq!(std::fs::metadata(&victim).unwrap().uid(), 0, "followed a link");
        assert_eq!(
            std::fs::metadata(outside.path()).unwrap().uid(),
            0,
            "followed a link"
        );
        chown_tree(d.path(), 0).unwrap();
        assert!(owned_by(&d.path().join("a/b/f"), 0));
        // The top itself must be a directory, not a link to one.
        assert!(chown_tree(&d.path().join("dirlink"), 65534).is_err());
        assert_eq!(std::fs::metadata(outside.path()).unwrap().uid(), 0);
    }
}

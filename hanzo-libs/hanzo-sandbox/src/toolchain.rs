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
        let owned_by = |p: &Path, uid: u32| std::fs::symlink_metadata(p).is_ok_and(|m| m.uid() == uid);
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
        crate::sys::chown_tree(d.path(), 65534, 65534).unwrap();
        for p in ["", "a", "a/b", "a/b/f", "a/link", "dirlink"] {
            assert!(owned_by(&d.path().join(p), 65534), "{p}");
        }
        assert_eq!(std::fs::metadata(&victim).unwrap().uid(), 0, "followed a link");
        assert_eq!(
            std::fs::metadata(outside.path()).unwrap().uid(),
            0,
            "followed a link"
        );
        crate::sys::chown_tree(d.path(), 0, 0).unwrap();
        assert!(owned_by(&d.path().join("a/b/f"), 0));
        // The top itself must be a directory, not a link to one.
        assert!(crate::sys::chown_tree(&d.path().join("dirlink"), 65534, 65534).is_err());
        assert_eq!(std::fs::metadata(outside.path()).unwrap().uid(), 0);
    }
}

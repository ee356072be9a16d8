//! Finding a runtime's toolchain (deno, uv, python, go) on the node's host.
//!
//! A program is taken from the node's configuration when set, else from the node's
//! `PATH`. Version-manager shims (pyenv's, where `pip install deno` puts deno) are
//! resolved to the real binary once, here: a shim is a shell script that costs tens of
//! milliseconds on every call and lives in a directory the sandbox does not show.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
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
    let out = Command::new(pyenv)
        .arg("which")
        .arg(p.file_name()?)
        .env("PYENV_ROOT", dir.parent()?)
        .stdin(Stdio::null())
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
}

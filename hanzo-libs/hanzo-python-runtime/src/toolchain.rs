//! Finding uv and the interpreter, and asking the interpreter who it is.

use hanzo_compute::config::PythonConfig;
use hanzo_sandbox::toolchain::{find_program, host_command, program_version};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// How to install what is missing, appended to every "not found" message.
pub(crate) const INSTALL_ADVICE: &str = "install uv (`pip install uv`, or https://docs.astral.sh/uv/) and Python 3 (`uv python install`, or your distribution's python3), or set [compute.python] uv/python";

/// The interpreter tools run on, as it describes itself.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Interpreter {
    /// The real binary (symlinks resolved).
    pub executable: PathBuf,
    /// `3.11.7`.
    pub version: String,
    /// `sys.version`, the full build string: part of the environment cache key.
    pub full_version: String,
    /// `cpython-311`.
    pub cache_tag: String,
    /// `sys.prefix`, `sys.base_prefix`, `sys.exec_prefix`, `sys.base_exec_prefix`:
    /// what the sandbox must show read-only for the standard library to load.
    pub prefixes: Vec<PathBuf>,
}

/// uv and the interpreter, found and working.
#[derive(Debug, Clone)]
pub(crate) struct Toolchain {
    pub uv: PathBuf,
    pub uv_version: String,
    pub python: Interpreter,
}

impl Toolchain {
    /// The host paths a process running this interpreter (or uv) needs read-only, on
    /// top of the system paths.
    pub(crate) fn ro_paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = Vec::new();
        let mut add = |p: &Path| {
            // Covered by the sandbox's own system paths, or too broad to share.
            if p == Path::new("/") || hanzo_sandbox::SYSTEM_RO_PATHS.iter().any(|s| p.starts_with(s)) {
                return;
            }
            if !v.iter().any(|q| p.starts_with(q)) {
                v.push(p.to_path_buf());
            }
        };
        for p in &self.python.prefixes {
            add(p);
        }
        if let Some(dir) = self.python.executable.parent() {
            add(dir);
        }
        add(&self.uv);
        v
    }

    /// `Python 3.11.7 (/usr/bin/python3.11), uv 0.5.1`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "Python {} ({}), {}",
            self.python.version,
            self.python.executable.display(),
            self.uv_version
        )
    }
}

const PROBE: &str = r#"import json, os, sys
print(json.dumps({
    "executable": os.path.realpath(sys.executable),
    "version": "%d.%d.%d" % sys.version_info[:3],
    "full_version": sys.version,
    "cache_tag": sys.implementation.cache_tag or sys.implementation.name,
    "prefixes": sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}),
}))"#;

/// Finds uv and the interpreter from the configuration, else on the node's `PATH`,
/// and runs both once. `Err` is a one-line reason with install advice.
pub(crate) fn discover(config: &PythonConfig) -> Result<Toolchain, String> {
    let uv = find_program("uv", Some(Path::new(&config.uv)))
        .map_err(|e| format!("uv not found: {e}; {INSTALL_ADVICE}"))?;
    let uv_version = program_version(&uv, &["--version"])
        .ok_or_else(|| format!("{} --version failed; {INSTALL_ADVICE}", uv.display()))?;
    let python = find_python(&config.python, &uv)?;
    let python = probe(&python)?;
    Ok(Toolchain {
        uv,
        uv_version,
        python,
    })
}

/// Whether the configured `python` is a version request for uv (`3.12`,
/// `cpython@3.12`, `>=3.11`) rather than a path or a program name.
fn is_version_request(s: &str) -> bool {
    !s.contains('/')
        && (s.starts_with(|c: char| c.is_ascii_digit() || "<>=~!".contains(c))
            || s.starts_with("cpython")
            || s.starts_with("pypy"))
}

fn find_python(configured: &str, uv: &Path) -> Result<PathBuf, String> {
    let configured = configured.trim();
    if configured.is_empty() {
        return find_program("python3", None).map_err(|e| format!("python not found: {e}; {INSTALL_ADVICE}"));
    }
    if !is_version_request(configured) {
        return find_program("python", Some(Path::new(configured)))
            .map_err(|e| format!("python not found: {e}; {INSTALL_ADVICE}"));
    }
    // Never download an interpreter behind the operator's back: only those already
    // installed (system, pyenv, uv-managed) are found.
    // Like every probe, with a clean environment (host_command): only the node's PATH
    // and HOME, where uv finds the interpreters the operator installed.
    let out = host_command(uv)
        .args(["python", "find", "--no-config", "--no-project", configured])
        .env("UV_PYTHON_DOWNLOADS", "never")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", uv.display()))?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || path.is_empty() {
        return Err(format!(
            "no installed Python matches [compute.python] python = {configured:?} (`uv python install {configured}` installs one)"
        ));
    }
    let p = PathBuf::from(path);
    Ok(std::fs::canonicalize(&p).unwrap_or(p))
}

fn probe(python: &Path) -> Result<Interpreter, String> {
    let out = host_command(python)
        .args(["-I", "-c", PROBE])
        .output()
        .map_err(|e| format!("cannot run {}: {e}; {INSTALL_ADVICE}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} does not run: {}; {INSTALL_ADVICE}",
            python.display(),
            hanzo_compute::stdio::last_log_line(&out.stderr).unwrap_or_else(|| out.status.to_string())
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{} is not a Python 3 interpreter ({e})", python.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_requests_are_told_from_paths() {
        for v in ["3.12", "cpython@3.12", ">=3.11", "pypy3.10"] {
            assert!(is_version_request(v), "{v}");
        }
        for p in ["/usr/bin/python3", "python3", "./py"] {
            assert!(!is_version_request(p), "{p}");
        }
    }
}

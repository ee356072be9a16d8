//! Where a stdio server is installed, so that the sandbox shows it exactly that: the
//! system directories (always), and read-only its installation prefix. A server from
//! PyPI lives in a venv whose interpreter lives elsewhere; one from npm lives in a
//! `node_modules` tree and runs on a `node` found on PATH. Nothing else of the host is
//! visible to it: not the node's data, not the home directory the venv sits in.
//!
//! The rules, applied to the program and to the file it resolves to:
//! - a program in `<venv>/bin` with `<venv>/pyvenv.cfg` shows `<venv>`, and the prefix
//!   of the interpreter named by the file's `home` key;
//! - a program inside a `node_modules` tree shows the outermost `node_modules`;
//! - a `#!` script shows the prefix of its interpreter (`#!/usr/bin/env NAME`: NAME on
//!   PATH), where that is not a system directory;
//! - any other program shows just its own file.
//!
//! A prefix is the directory above the interpreter's `bin` (a pyenv version, an nvm
//! node), or its own directory.
//!
//! The rules read files (a `pyvenv.cfg`, a `#!` line) that decide what becomes visible,
//! so those files must be the operator's, not a tool's: every path the rules pick is
//! canonical (symlinks resolved: a `bin -> /usr/bin` planted in a venv proves nothing),
//! never is, holds or sits in a protected path (the node's data directory), and, for a
//! serving node, lies under `[compute.mcp] install_roots` ([`Exposure`]). Programs are
//! looked for on the node's own `PATH`, never on one a job sets.

use hanzo_compute::ComputeError;
use hanzo_sandbox::SYSTEM_RO_PATHS;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A stdio server's program as the sandbox runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Installed {
    /// The program's real path (symlinks resolved): what runs.
    pub program: PathBuf,
    /// Host paths shown read-only at the same place, besides the system ones.
    pub ro_paths: Vec<PathBuf>,
    /// Directories to put before the tool's `PATH` (a non-system interpreter's `bin`).
    pub path_dirs: Vec<PathBuf>,
    /// sha256 (hex) of the program's bytes.
    pub digest: String,
}

/// Where the rules may look, and what they may show.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exposure {
    /// Directories every shown path must lie under (beyond the system ones); `None`:
    /// anywhere (the operator's own `hanzo-node run`).
    pub install_roots: Option<Vec<PathBuf>>,
    /// Paths never shown, nor anything that holds them (the data directory).
    pub protected: Vec<PathBuf>,
}

impl Exposure {
    fn check(&self, p: &Path) -> Result<(), ComputeError> {
        if let Some(q) = self
            .protected
            .iter()
            .find(|q| p.starts_with(q) || q.starts_with(p))
        {
            return Err(ComputeError::invalid(format!(
                "the MCP server would see {}, which holds or is part of {} (the node's own files)",
                p.display(),
                q.display()
            )));
        }
        if let Some(roots) = &self.install_roots
            && !is_system(p)
            && !roots.iter().any(|r| p.starts_with(r))
        {
            return Err(ComputeError::invalid(format!(
                "the MCP server's installation {} is not under [compute.mcp] install_roots{}",
                p.display(),
                if roots.is_empty() {
                    " (none are set: a serving node starts only the stdio MCP servers the operator installed there)"
                        .to_string()
                } else {
                    String::new()
                }
            )));
        }
        Ok(())
    }
}

/// The largest program hashed for the receipt; a bigger one is refused.
const MAX_PROGRAM_BYTES: u64 = 1 << 30;

/// Finds `program` (an absolute path, or a bare name on `search_path`) and what the
/// sandbox must show for it to run, within `exposure`. Blocking: it reads the file.
pub(crate) fn locate(
    program: &str,
    search_path: &str,
    exposure: &Exposure,
) -> Result<Installed, ComputeError> {
    let given = if program.starts_with('/') {
        PathBuf::from(program)
    } else if program.contains('/') {
        return Err(ComputeError::invalid(format!(
            "the MCP server '{program}' is a relative path; give its absolute path or a name on PATH"
        )));
    } else {
        find_on_path(program, search_path).ok_or_else(|| {
            ComputeError::invalid(format!(
                "the MCP server '{program}' was not found on PATH ({search_path})"
            ))
        })?
    };
    let real = std::fs::canonicalize(&given)
        .map_err(|e| ComputeError::invalid(format!("the MCP server {}: {e}", given.display())))?;
    let meta = std::fs::metadata(&real)
        .map_err(|e| ComputeError::invalid(format!("the MCP server {}: {e}", real.display())))?;
    use std::os::unix::fs::PermissionsExt;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(ComputeError::invalid(format!(
            "the MCP server {} is not an executable file",
            real.display()
        )));
    }
    if meta.len() > MAX_PROGRAM_BYTES {
        return Err(ComputeError::invalid(format!(
            "the MCP server {} is over {} bytes",
            real.display(),
            MAX_PROGRAM_BYTES
        )));
    }
    let mut ro = Vec::new();
    let mut path_dirs = Vec::new();
    let mut contained = false;
    // The real path only: what a symlink on the way claims is not what runs.
    if let Some(venv) = venv_of(&real) {
        if let Some(home) = venv_home(&venv) {
            push_prefix(&mut ro, &home);
        }
        push(&mut ro, venv);
        contained = true;
    }
    if let Some(nm) = outermost_node_modules(&real) {
        push(&mut ro, nm);
        contained = true;
    }
    let (digest, head) = digest_and_head(&real)?;
    if let Some(interpreter) = shebang_interpreter(&head, search_path)
        && let Ok(i) = std::fs::canonicalize(&interpreter)
    {
        if !is_system(&i) {
            push_prefix(&mut ro, &i);
            if let Some(dir) = interpreter.parent() {
                path_dirs.push(dir.to_path_buf());
            }
        }
        // A venv's `python` is a symlink into the interpreter it was made from.
        if let Some(venv) = interpreter
            .parent()
            .and_then(|b| std::fs::canonicalize(b).ok())
            .and_then(|b| venv_of(&b.join("x")))
        {
            if let Some(home) = venv_home(&venv) {
                push_prefix(&mut ro, &home);
            }
            push(&mut ro, venv);
        }
    }
    if !contained && !is_system(&real) {
        push(&mut ro, real.clone());
    }
    exposure.check(&real)?;
    for p in &ro {
        exposure.check(p)?;
    }
    Ok(Installed {
        program: real,
        ro_paths: ro,
        path_dirs,
        digest,
    })
}

fn find_on_path(name: &str, search_path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    search_path
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn is_system(p: &Path) -> bool {
    SYSTEM_RO_PATHS.iter().any(|s| p.starts_with(s))
}

fn push(ro: &mut Vec<PathBuf>, p: PathBuf) {
    if !is_system(&p) && !ro.iter().any(|r| p.starts_with(r)) {
        ro.retain(|r| !r.starts_with(&p));
        ro.push(p);
    }
}

/// Shows the installation prefix of the file or directory `p`: the directory above a
/// `bin`, else its directory.
fn push_prefix(ro: &mut Vec<PathBuf>, p: &Path) {
    let dir = if p.is_dir() { p } else { p.parent().unwrap_or(p) };
    let prefix = if dir.file_name().is_some_and(|n| n == "bin") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    // Never a whole tree like `/` or `/root`: a prefix is at least two levels deep.
    if prefix.components().count() >= 3 {
        push(ro, prefix.to_path_buf());
    }
}

/// `<venv>` when `p` is `<venv>/bin/<x>` and `<venv>/pyvenv.cfg` exists.
fn venv_of(p: &Path) -> Option<PathBuf> {
    let bin = p.parent()?;
    if bin.file_name()? != "bin" {
        return None;
    }
    let venv = bin.parent()?;
    venv.join("pyvenv.cfg").is_file().then(|| venv.to_path_buf())
}

/// The interpreter directory a venv was made from (its `pyvenv.cfg`'s `home`).
fn venv_home(venv: &Path) -> Option<PathBuf> {
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    cfg.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "home").then(|| std::fs::canonicalize(v.trim()).ok())?
    })
}

fn outermost_node_modules(p: &Path) -> Option<PathBuf> {
    p.ancestors()
        .filter(|a| a.file_name().is_some_and(|n| n == "node_modules"))
        .last()
        .map(Path::to_path_buf)
}

/// The file's sha256 and its first bytes (for a `#!` line).
fn digest_and_head(path: &Path) -> Result<(String, Vec<u8>), ComputeError> {
    let read_err =
        |e: std::io::Error| ComputeError::invalid(format!("the MCP server {}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        if head.len() < 512 {
            head.extend_from_slice(&buf[..n.min(512 - head.len())]);
        }
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), head))
}

/// The interpreter of a `#!` script, resolving `/usr/bin/env NAME` on `search_path`.
fn shebang_interpreter(head: &[u8], search_path: &str) -> Option<PathBuf> {
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|b| *b == b'\n')?];
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let interp = words.next()?;
    if Path::new(interp).file_name().is_some_and(|n| n == "env") {
        let name = words.find(|w| !w.starts_with('-'))?;
        return if name.starts_with('/') {
            Some(PathBuf::from(name))
        } else {
            find_on_path(name, search_path)
        };
    }
    Some(PathBuf::from(interp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn exe(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_venv_server_shows_its_venv_and_the_interpreter_it_was_made_from() {
        let d = tempfile::tempdir().unwrap();
        let d = std::fs::canonicalize(d.path()).unwrap();
        let python = d.join("pythons/3.11/bin/python3.11");
        exe(&python, "\x7fELF");
        let venv = d.join("venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(
            venv.join("pyvenv.cfg"),
            format!(
                "home = {}\nversion_info = 3.11\n",
                python.parent().unwrap().display()
            ),
        )
        .unwrap();
        std::os::unix::fs::symlink(&python, venv.join("bin/python")).unwrap();
        let server = venv.join("bin/mcp-server-time");
        exe(
            &server,
            &format!("#!{}\nimport sys\n", venv.join("bin/python").display()),
        );
        let i = locate(server.to_str().unwrap(), "/usr/bin", &Exposure::default()).unwrap();
        assert_eq!(i.program, server);
        assert_eq!(i.ro_paths, vec![d.join("pythons/3.11"), venv.clone()]);
        assert_eq!(i.digest.len(), 64);
        // Found by name on PATH the same way.
        let by_name = locate(
            "mcp-server-time",
            &format!("/nonexistent:{}", venv.join("bin").display()),
            &Exposure::default(),
        )
        .unwrap();
        assert_eq!(by_name, i);
    }

    #[test]
    fn an_npm_server_shows_its_node_modules_and_a_node_off_the_system_paths() {
        let d = tempfile::tempdir().unwrap();
        let d = std::fs::canonicalize(d.path()).unwrap();
        let node = d.join("nvm/v20/bin/node");
        exe(&node, "\x7fELF");
        let nm = d.join("app/node_modules");
        let real = nm.join("@x/server/dist/index.js");
        exe(&real, "#!/usr/bin/env node\nconsole.log(1)\n");
        std::fs::create_dir_all(nm.join(".bin")).unwrap();
        std::os::unix::fs::symlink("../@x/server/dist/index.js", nm.join(".bin/server")).unwrap();
        let i = locate(
            nm.join(".bin/server").to_str().unwrap(),
            node.parent().unwrap().to_str().unwrap(),
            &Exposure::default(),
        )
        .unwrap();
        assert_eq!(i.program, real);
        assert_eq!(i.ro_paths, vec![nm.clone(), d.join("nvm/v20")]);
        assert_eq!(i.path_dirs, vec![d.join("nvm/v20/bin")]);
    }

    #[test]
    fn a_planted_venv_shows_nothing_and_what_is_shown_stays_in_bounds() {
        let d = tempfile::tempdir().unwrap();
        let d = std::fs::canonicalize(d.path()).unwrap();
        // A tool's writable mount with a `pyvenv.cfg` naming a secret, and `bin` a
        // symlink to the system's: the program is /usr/bin/env, nothing more is shown.
        std::fs::create_dir_all(d.join("secret")).unwrap();
        std::fs::create_dir_all(d.join("v")).unwrap();
        std::fs::write(
            d.join("v/pyvenv.cfg"),
            format!("home = {}\n", d.join("secret").display()),
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr/bin", d.join("v/bin")).unwrap();
        let i = locate(d.join("v/bin/env").to_str().unwrap(), "", &Exposure::default()).unwrap();
        assert_eq!(i.program, PathBuf::from("/usr/bin/env"));
        assert!(i.ro_paths.is_empty(), "{:?}", i.ro_paths);

        // A real venv, its interpreter elsewhere.
        let python = d.join("py/bin/python3");
        exe(&python, "\x7fELF");
        let venv = d.join("inst/venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(
            venv.join("pyvenv.cfg"),
            format!("home = {}\n", d.join("py/bin").display()),
        )
        .unwrap();
        let server = venv.join("bin/server");
        exe(&server, &format!("#!{}\n", python.display()));
        let s = server.to_str().unwrap();
        let within = |roots: Option<Vec<PathBuf>>, protected: Vec<PathBuf>| {
            locate(
                s,
                "",
                &Exposure {
                    install_roots: roots,
                    protected,
                },
            )
        };
        assert!(within(Some(vec![d.join("inst"), d.join("py")]), vec![]).is_ok());
        let e = within(Some(vec![d.join("inst")]), vec![]).unwrap_err();
        assert!(e.to_string().contains("install_roots"), "{e}");
        let e = within(Some(vec![]), vec![]).unwrap_err();
        assert!(e.to_string().contains("none are set"), "{e}");
        // The data directory: never, whether it holds the installation or sits in it.
        for protected in [d.join("inst/venv/lib"), d.join("inst"), d.clone()] {
            let e = within(None, vec![protected.clone()]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{protected:?}: {e}");
        }
    }

    #[test]
    fn a_lone_program_shows_only_itself_and_bad_programs_are_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let d = std::fs::canonicalize(d.path()).unwrap();
        let p = d.join("tools/server");
        exe(&p, "\x7fELF....");
        let i = locate(p.to_str().unwrap(), "", &Exposure::default()).unwrap();
        assert_eq!(i.ro_paths, vec![p.clone()]);
        // A system program needs nothing more.
        assert!(
            locate("/bin/sh", "", &Exposure::default())
                .unwrap()
                .ro_paths
                .is_empty()
        );
        std::fs::write(d.join("plain"), "x").unwrap();
        for bad in [
            "relative/server".to_string(),
            "no-such-server-anywhere".into(),
            d.join("plain").display().to_string(),
            d.display().to_string(),
        ] {
            let e = locate(&bad, "/usr/bin:/bin", &Exposure::default()).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
    }
}

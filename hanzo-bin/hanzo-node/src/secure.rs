//! The data directory is the node's own: mode 0700, tightened at every start, and the
//! API token the node creates there when `[node] api_token` is not set.
//!
//! Why: the directory holds the node key, the job store (with every job's spec, secret
//! `env` values included) and this token. An unsandboxed tool, or another user on the
//! machine, must not read any of it.

use hanzo_compute::ComputeError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file under the data directory holding the API token the node created.
pub const TOKEN_FILE: &str = "api-token";

/// Creates `dir` (mode 0700) or tightens it to 0700.
///
/// A shared directory (the sticky bit, as `/tmp` has) or `/` is refused rather than
/// made private: changing its mode would break every other user of it.
pub fn data_dir(dir: &Path) -> Result<(), ComputeError> {
    let err = |what: &str, e: std::io::Error| {
        ComputeError::internal(format!("data directory {}: cannot {what}: {e}", dir.display()))
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err("create it", e))?;
        let meta = std::fs::metadata(dir).map_err(|e| err("read it", e))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o1000 != 0 || dir.canonicalize().is_ok_and(|d| d == Path::new("/")) {
            return Err(ComputeError::invalid(format!(
                "node.data_dir: {} is a shared directory (mode {mode:o}); give the node a directory of its own",
                dir.display()
            )));
        }
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| err("make it private (mode 0700)", e))?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(|e| err("create it", e))?;
    Ok(())
}

/// The token the node created in `<data_dir>/api-token`, when there is one.
pub fn read_token(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(TOKEN_FILE)).ok()?;
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// The token in `<data_dir>/api-token` (mode 0600, tightened if it was looser), made
/// on first use: 32 random bytes, hex.
pub fn ensure_token(data_dir: &Path) -> Result<(String, PathBuf), ComputeError> {
    let path = data_dir.join(TOKEN_FILE);
    let err = |what: &str, e: std::io::Error| {
        ComputeError::internal(format!("api token {}: cannot {what}: {e}", path.display()))
    };
    if let Some(token) = read_token(data_dir) {
        private_file(&path).map_err(|e| err("make it private (mode 0600)", e))?;
        return Ok((token, path));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ComputeError::internal(format!("no OS randomness: {e}")))?;
    let token = hex::encode(bytes);
    // An empty or blank file left behind is replaced; the store's lock, held by now,
    // keeps a second node on this directory from racing this one.
    let mut f = create_private(&path).map_err(|e| err("create it", e))?;
    writeln!(f, "{token}")
        .and_then(|()| f.sync_all())
        .map_err(|e| err("write it", e))?;
    Ok((token, path))
}

/// Creates `path` anew with mode 0600, replacing what a crash left there: created
/// private (never made private after the fact), and never through a symlink planted in
/// its place (`create_new` refuses to follow one).
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let _ = std::fs::remove_file(path);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// Sets a file's mode to 0600 when it grants anything to group or others.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The file in the data directory where a serving node writes the URL it really
/// listens on (`serve --listen` and port 0 may differ from `node.api_listen`), for the
/// CLI's client commands run against the same data directory.
pub const ENDPOINT_FILE: &str = "api-url";

/// Writes `url` to the endpoint file (mode 0600, replaced whole).
pub fn write_endpoint(data_dir: &Path, url: &str) -> std::io::Result<()> {
    let tmp = data_dir.join(format!(".{ENDPOINT_FILE}.tmp"));
    let mut f = create_private(&tmp)?;
    writeln!(f, "{url}")?;
    std::fs::rename(&tmp, data_dir.join(ENDPOINT_FILE))
}

/// The URL a node serving from `data_dir` wrote, if any (it may be stale after a crash;
/// the next `serve` replaces it).
pub fn read_endpoint(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(ENDPOINT_FILE)).ok()?;
    let url = text.trim();
    (url.starts_with("http://") && url.len() < 256).then(|| url.to_string())
}

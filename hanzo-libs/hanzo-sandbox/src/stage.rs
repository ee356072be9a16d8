//! The staging directory of a root node (see `child::Stage`): where, in a child's
//! private mount namespace, the detached copies of what a sandbox shows are attached
//! for bubblewrap to bind from.

use crate::sys;
use std::ffi::CString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Makes (or finds) the staging directory and checks, in a forked
/// child, that this kernel can stage a path there (`open_tree`, `move_mount`).
///
/// The directory itself stays empty on the host: the `tmpfs` and the copies exist only
/// in each child's own mount namespace.
pub(crate) fn prepare() -> Result<PathBuf, String> {
    // Under /run (root's, not world-writable) where there is one, else /tmp: either
    // way a path every user may traverse, as bubblewrap (the tool's user) must.
    let run = Path::new("/run");
    let parent = match std::fs::symlink_metadata(run) {
        Ok(m) if m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0 && m.mode() & 0o005 == 0o005 => run,
        _ => Path::new("/tmp"),
    };
    let dir = directory(parent).map_err(|e| format!("staging directory under {}: {e}", parent.display()))?;
    let fd = hanzo_compute::mounts::open_no_symlinks(Path::new("/usr"))
        .map_err(|e| format!("cannot open /usr: {e}"))?;
    let tree = sys::clone_tree(&fd, false).map_err(|e| format!("open_tree: {e}"))?;
    let stage = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let at = CString::new(dir.join("0").as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&tree);
    let ok = sys::fork_probe(|| {
        sys::child::private_stage(&stage).is_ok() && sys::child::attach(raw, &at, true).is_ok()
    });
    if ok {
        Ok(dir)
    } else {
        Err("this kernel cannot attach a detached mount (open_tree/move_mount, Linux 5.2+)".into())
    }
}

/// `<parent>/hanzo-sandbox-stage`, a directory root owns; another user's file or
/// link at that name (in the shared /tmp) is never used: a fresh directory of our own
/// is made instead.
fn directory(parent: &Path) -> io::Result<PathBuf> {
    let dir = parent.join("hanzo-sandbox-stage");
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if meta.is_dir() && meta.uid() == 0 {
        return Ok(dir);
    }
    Ok(tempfile::Builder::new()
        .prefix("hanzo-sandbox-stage-")
        .tempdir_in(parent)?
        .keep())
}

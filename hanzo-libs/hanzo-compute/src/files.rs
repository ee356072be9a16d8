//! Reading a file that a job or an API client named, with a size the node chose.
//!
//! A SOURCE path is the caller's choice, and so is what it points at: a 3 GiB file
//! read whole took the node's memory to 3 GiB, a FIFO blocks the reader forever, and
//! `/dev/zero` never ends. [`read_capped`] opens once, checks the opened file (not the
//! path, which can be swapped meanwhile), refuses anything but a regular file and any
//! file over the cap before reading a byte, and then reads at most one byte more than
//! the cap, so a file that grows after the check is refused too.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why [`read_capped`] gave no bytes.
#[derive(Debug, thiserror::Error)]
pub enum CappedReadError {
    /// The file could not be opened or read (missing, permission denied, ...).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A directory, device, FIFO or socket: reading it could block or never end.
    #[error("not a regular file")]
    NotRegular,
    /// Larger than the cap (`size` as found: the file's length, or more than the cap
    /// when it grew while being read).
    #[error("{size} bytes is more than the {limit} bytes the node reads")]
    TooLarge {
        /// The size found.
        size: u64,
        /// The cap.
        limit: u64,
    },
}

/// Reads the regular file at `path` if it holds at most `limit` bytes; blocking.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, CappedReadError> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer (regular files ignore it).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(CappedReadError::NotRegular);
    }
    if meta.len() > limit {
        return Err(CappedReadError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(CappedReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_file_over_the_cap_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        // 3 GiB that take no disk: refused from its length alone.
        std::fs::File::create(&p).unwrap().set_len(3 << 30).unwrap();
        match read_capped(&p, 1 << 20) {
            Err(CappedReadError::TooLarge { size, limit }) => {
                assert_eq!((size, limit), (3 << 30, 1 << 20));
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_capped(&p, 5).unwrap(), b"12345");
        assert!(matches!(
            read_capped(&p, 4),
            Err(CappedReadError::TooLarge { size: 5, .. })
        ));
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for p in [fifo.as_path(), Path::new("/dev/zero"), dir.path()] {
            assert!(
                matches!(read_capped(p, 1 << 20), Err(CappedReadError::NotRegular)),
                "{p:?}"
            );
        }
        assert!(matches!(
            read_capped(&dir.path().join("missing"), 1),
            Err(CappedReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound
        ));
    }
}

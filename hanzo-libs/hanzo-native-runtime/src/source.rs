//! SOURCE of a native job: `builtin:<name>`, or a file read once into memory and
//! classified by its bytes (never by its name), so that what runs is exactly what was
//! hashed.

use crate::builtins;
use crate::elf::{self, ElfError, ElfKind};
use sha2::Digest;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The prefix of a built-in tool's SOURCE.
pub const BUILTIN_PREFIX: &str = "builtin:";

/// The largest tool the node reads, in MiB, whatever the job's `disk_mb`.
pub(crate) const MAX_SOURCE_MB: u64 = 512;

/// What a SOURCE names.
#[derive(Debug)]
pub(crate) enum Source {
    /// An executable (ELF program or `#!` script) under the stdio contract.
    Program {
        /// Its bytes, as read.
        bytes: Vec<u8>,
        /// sha256 of `bytes`, hex.
        hash: String,
    },
    /// An ELF shared library exporting `execute_tool`.
    Library {
        /// Its bytes, as read.
        bytes: Vec<u8>,
        /// sha256 of `bytes`, hex.
        hash: String,
    },
    /// A built-in tool.
    Builtin(String),
}

/// Why a SOURCE cannot run; each is the job's fault (exit code 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// Nothing at the path.
    #[error("{0}: no such file")]
    Missing(String),
    /// A directory where a file was expected.
    #[error("{0} is a directory, not an executable or a shared library")]
    Directory(String),
    /// A device, FIFO or socket: reading it could block or never end.
    #[error("{0} is not a regular file")]
    NotRegular(String),
    /// The file exists but cannot be read.
    #[error("cannot read {0}: {1}")]
    Unreadable(String, std::io::Error),
    /// Larger than the job's work directory (disk_mb) could hold, or than the node
    /// reads at all (512 MiB).
    #[error("{0} is larger than {1} MiB (the job's disk_mb, at most 512)")]
    TooLarge(String, u64),
    /// An ELF program or script without an execute permission bit.
    #[error("{0} is not executable (chmod +x it)")]
    NotExecutable(String),
    /// Neither ELF nor `#!`.
    #[error("{0} is neither an executable (ELF or #! script) nor an ELF shared library")]
    UnknownFormat(String),
    /// An ELF file that is malformed, of the wrong type, or for another CPU.
    #[error("{0}: {1}")]
    Elf(String, ElfError),
    /// `builtin:<name>` with an unknown name.
    #[error("unknown built-in tool '{0}' (built-ins: {1})")]
    UnknownBuiltin(String, String),
    /// `sha256:<digest>`: the content store holds WASM modules only.
    #[error("the native runtime runs files and built-ins, not stored modules ({0})")]
    Digest(String),
}

/// Hex sha256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Resolves SOURCE; blocking (reads the file).
pub(crate) fn resolve(source: &str, disk_mb: u64) -> Result<Source, SourceError> {
    if let Some(name) = source.strip_prefix(BUILTIN_PREFIX) {
        return if builtins::exists(name) {
            Ok(Source::Builtin(name.to_string()))
        } else {
            Err(SourceError::UnknownBuiltin(name.to_string(), builtins::names()))
        };
    }
    if source.starts_with("sha256:") {
        return Err(SourceError::Digest(source.to_string()));
    }
    let shown = source.to_string();
    let path = Path::new(source);
    // O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SourceError::Missing(shown)),
        Err(e) => return Err(SourceError::Unreadable(shown, e)),
    };
    // fstat the opened file, not the path: the checks hold for what is read.
    let meta = file
        .metadata()
        .map_err(|e| SourceError::Unreadable(shown.clone(), e))?;
    if meta.is_dir() {
        return Err(SourceError::Directory(shown));
    }
    if !meta.is_file() {
        return Err(SourceError::NotRegular(shown));
    }
    // The node holds the tool in memory to hash it: a node-wide bound, whatever the
    // job's disk_mb says (a sparse file of many GiB must not take the node down).
    let disk_mb = disk_mb.min(MAX_SOURCE_MB);
    let limit = disk_mb.saturating_mul(1024 * 1024);
    if meta.len() > limit {
        return Err(SourceError::TooLarge(shown, disk_mb));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| SourceError::Unreadable(shown.clone(), e))?;
    if bytes.len() as u64 > limit {
        return Err(SourceError::TooLarge(shown, disk_mb));
    }
    let executable = meta.permissions().mode() & 0o111 != 0;
    let kind = if elf::is_elf(&bytes) {
        elf::classify(&bytes).map_err(|e| SourceError::Elf(shown.clone(), e))?
    } else if bytes.starts_with(b"#!") {
        ElfKind::Program
    } else {
        return Err(SourceError::UnknownFormat(shown));
    };
    let hash = sha256_hex(&bytes);
    match kind {
        // A library is mapped, not executed: it needs no execute bit.
        ElfKind::SharedLibrary => Ok(Source::Library { bytes, hash }),
        ElfKind::Program if !executable => Err(SourceError::NotExecutable(shown)),
        ElfKind::Program => Ok(Source::Program { bytes, hash }),
    }
}

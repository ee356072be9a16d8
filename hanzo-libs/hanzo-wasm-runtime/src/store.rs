//! The content-addressed module store on disk.
//!
//! `<dir>/<sha256>.wasm` holds a module's bytes and `<dir>/<sha256>.<engine>.cwasm` the
//! machine code wasmtime compiled from it for one engine configuration, so that a
//! restarted node maps the code back in instead of compiling again. Every file is
//! written to a temporary name and renamed into place, so a crash never leaves a
//! half-written module under its final name.

use hanzo_compute::ComputeError;
use hanzo_compute::receipt::sha256_hex;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The first eight bytes of a core WebAssembly module (magic and version 1).
const CORE_MODULE_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/// Modules by sha256, with their compiled artifacts.
#[derive(Debug, Clone)]
pub struct ModuleStore {
    dir: PathBuf,
}

impl ModuleStore {
    /// Opens (creating if needed) a store in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ComputeError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| {
            ComputeError::internal(format!("cannot create module store {}: {e}", dir.display()))
        })?;
        Ok(ModuleStore { dir })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds a module (binary, or WAT text) and returns its sha256. The digest is that
    /// of the binary module, whichever form was given.
    pub fn put(&self, bytes: &[u8]) -> Result<String, ComputeError> {
        let binary = to_binary(bytes, "the module")?;
        let sha = sha256_hex(&binary);
        self.put_binary(&sha, &binary)?;
        Ok(sha)
    }

    /// Adds a binary module whose sha256 the caller has already computed.
    pub(crate) fn put_binary(&self, sha: &str, binary: &[u8]) -> Result<(), ComputeError> {
        let path = self.wasm_path(sha);
        if !path.exists() {
            write_atomic(&path, binary)?;
        }
        Ok(())
    }

    /// Whether the store holds the module.
    pub fn contains(&self, sha: &str) -> bool {
        self.wasm_path(sha).is_file()
    }

    /// A module's bytes, or `None` when the store does not hold it.
    pub fn read(&self, sha: &str) -> Result<Option<Vec<u8>>, ComputeError> {
        match std::fs::read(self.wasm_path(sha)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ComputeError::internal(format!("cannot read module {sha}: {e}"))),
        }
    }

    /// Every module in the store: sha256 and size in bytes.
    pub fn list(&self) -> Result<Vec<(String, u64)>, ComputeError> {
        let entries = std::fs::read_dir(&self.dir).map_err(ComputeError::internal)?;
        let mut out: Vec<(String, u64)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let sha = name.strip_suffix(".wasm")?;
                (sha.len() == 64).then(|| (sha.to_string(), e.metadata().map(|m| m.len()).unwrap_or(0)))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    pub(crate) fn wasm_path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.wasm"))
    }

    pub(crate) fn artifact_path(&self, sha: &str, engine: &str) -> PathBuf {
        self.dir.join(format!("{sha}.{engine}.cwasm"))
    }

    pub(crate) fn write_artifact(&self, sha: &str, engine: &str, bytes: &[u8]) -> Result<(), ComputeError> {
        write_atomic(&self.artifact_path(sha, engine), bytes)
    }
}

/// Checks that `bytes` are a core module (or WAT text, which is converted) and
/// returns the binary. `what` names the input in errors.
pub(crate) fn to_binary(bytes: &[u8], what: &str) -> Result<Vec<u8>, ComputeError> {
    if bytes.starts_with(b"\0asm") {
        if bytes.len() >= 8 && bytes[..8] != CORE_MODULE_HEADER {
            return Err(ComputeError::invalid(format!(
                "{what} is a WebAssembly component or an unknown binary version; only core modules are supported"
            )));
        }
        return Ok(bytes.to_vec());
    }
    // Text that parses as WAT is accepted; anything else is not a module.
    let looks_textual = std::str::from_utf8(bytes)
        .map(|s| s.trim_start().starts_with('(') || s.trim_start().starts_with(";;"))
        .unwrap_or(false);
    if looks_textual {
        return wat::parse_bytes(bytes)
            .map(|b| b.into_owned())
            .map_err(|e| ComputeError::invalid(format!("{what} is not valid WAT: {e}")));
    }
    Err(ComputeError::invalid(format!(
        "{what} is not a WebAssembly module (no \\0asm header)"
    )))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ComputeError> {
    let tmp = path.with_extension(format!("tmp.{}", hanzo_compute::new_job_id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| ComputeError::internal(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_stored_by_the_digest_of_their_binary() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path()).unwrap();
        let sha_text = store.put(b"(module)").unwrap();
        let binary = wat::parse_str("(module)").unwrap();
        assert_eq!(sha_text, sha256_hex(&binary));
        assert_eq!(store.put(&binary).unwrap(), sha_text);
        assert!(store.contains(&sha_text));
        assert_eq!(store.read(&sha_text).unwrap().unwrap(), binary);
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn non_modules_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path()).unwrap();
        let e = store.put(b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(e.to_string().contains("not a WebAssembly module"), "{e}");
        let e = store.put(b"(module (func").unwrap_err();
        assert!(e.to_string().contains("not valid WAT"), "{e}");
        let e = store.put(&[0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]).unwrap_err();
        assert!(e.to_string().contains("component"), "{e}");
    }
}

//! The tool's source: checked, read once, hashed, and named for the work directory.

use hanzo_compute::{ComputeError, parse_digest_source};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Extensions Deno runs as ES modules.
pub const EXTENSIONS: [&str; 5] = ["ts", "js", "mts", "mjs", "tsx"];

/// Larger sources are refused: a tool is a script, not a data set (which is mounted).
pub const MAX_SOURCE_BYTES: u64 = 64 * 1024 * 1024;

/// A tool, read once: the bytes that run are the bytes that were hashed.
#[derive(Debug, Clone)]
pub struct ToolSource {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// sha256 (hex) of `bytes`: the receipt's `code_hash`.
    pub hash: String,
    /// Where the tool goes, relative to the work directory: `src/<hash>/<name>`.
    ///
    /// Deno keys its caches (transpiled output, module analysis) on the module's URL and
    /// a 64-bit, non-cryptographic hash of its text. Putting the sha256 in the path means
    /// two different tools never share a URL, so a tool crafted to collide with another
    /// one's 64-bit hash cannot have its transpiled code served for the other one.
    pub work_path: String,
    /// Whether the source names anything that may need fetching (`npm:`, `jsr:`,
    /// `http:`/`https:` specifiers), so that preparing it needs the network.
    pub mentions_remote: bool,
}

impl ToolSource {
    /// Reads `source`: a `.ts`, `.js`, `.mts`, `.mjs` or `.tsx` file. A missing file, a
    /// directory, another extension or a `sha256:` digest is bad input.
    pub fn read(source: &str) -> Result<ToolSource, ComputeError> {
        if parse_digest_source(source)?.is_some() {
            return Err(ComputeError::invalid(format!(
                "the deno runtime runs a script file, not a stored module ({source})"
            )));
        }
        let path = Path::new(source);
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .filter(|e| EXTENSIONS.contains(e))
            .ok_or_else(|| {
                ComputeError::invalid(format!(
                    "{source}: not a Deno script (expected a .{} file)",
                    EXTENSIONS.join(", .")
                ))
            })?;
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ComputeError::invalid(format!("{source}: no such file")),
            _ => ComputeError::invalid(format!("{source}: {e}")),
        })?;
        if !meta.is_file() {
            return Err(ComputeError::invalid(format!(
                "{source}: not a file (the deno runtime runs one script file)"
            )));
        }
        if meta.len() > MAX_SOURCE_BYTES {
            return Err(ComputeError::invalid(format!(
                "{source}: {} bytes is more than the {MAX_SOURCE_BYTES} a script may have",
                meta.len()
            )));
        }
        // Checked again on the opened file: the path may have been swapped meanwhile.
        let bytes = hanzo_compute::files::read_capped(path, MAX_SOURCE_BYTES).map_err(|e| match e {
            hanzo_compute::files::CappedReadError::Io(e) => ComputeError::invalid(format!("{source}: {e}")),
            e => ComputeError::invalid(format!("{source}: {e}")),
        })?;
        let hash = hex::encode(Sha256::digest(&bytes));
        // Keep the author's file name (it shows in stack traces) when it is plain.
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| {
                !n.starts_with('.')
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            })
            .map(str::to_string)
            .unwrap_or_else(|| format!("tool.{ext}"));
        let mentions_remote = ["npm:", "jsr:", "http:", "https:"]
            .iter()
            .any(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes()));
        Ok(ToolSource {
            work_path: format!("src/{hash}/{name}"),
            bytes,
            hash,
            mentions_remote,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hashes_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("my tool.ts");
        std::fs::write(&p, "export const run = () => 1;\n").unwrap();
        let s = ToolSource::read(p.to_str().unwrap()).unwrap();
        assert_eq!(
            s.hash,
            hex::encode(Sha256::digest(b"export const run = () => 1;\n"))
        );
        assert_eq!(s.work_path, format!("src/{}/tool.ts", s.hash));
        assert!(!s.mentions_remote);
        let p = dir.path().join("csv-stats.mjs");
        std::fs::write(&p, "import x from \"npm:left-pad@1\";").unwrap();
        let s = ToolSource::read(p.to_str().unwrap()).unwrap();
        assert!(s.work_path.ends_with("/csv-stats.mjs"));
        assert!(s.mentions_remote);
    }

    #[test]
    fn bad_sources_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let py = dir.path().join("t.py");
        std::fs::write(&py, "").unwrap();
        for (src, says) in [
            (
                dir.path().join("missing.ts").display().to_string(),
                "no such file",
            ),
            (py.display().to_string(), "not a Deno script"),
            (dir.path().display().to_string(), "not a Deno script"),
            (format!("sha256:{}", "a".repeat(64)), "not a stored module"),
        ] {
            let e = ToolSource::read(&src).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{src}");
            assert!(e.to_string().contains(says), "{e}");
        }
        let d = dir.path().join("dir.ts");
        std::fs::create_dir(&d).unwrap();
        assert!(
            ToolSource::read(d.to_str().unwrap())
                .unwrap_err()
                .to_string()
                .contains("not a file")
        );
    }
}

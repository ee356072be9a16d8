//! A Go package as a SOURCE: where it is, what it depends on locally, and one digest
//! over all of it, which keys the build cache.

use crate::sdk;
use hanzo_compute::ComputeError;
use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};

/// The most files and bytes of one package (its module and local `replace` targets):
/// a SOURCE pointing at a huge tree is refused rather than read for minutes. Node-wide
/// bounds, not job limits: the node holds a build's sources in memory.
const MAX_FILES: usize = 20_000;
const MAX_BYTES: u64 = 128 * 1024 * 1024;

/// A Go package ready to build.
#[derive(Debug, Clone)]
pub(crate) struct Package {
    /// The package directory (canonical).
    pub(crate) dir: PathBuf,
    /// Every file hashed: `(root, path relative to it)`, sorted.
    files: Vec<(PathBuf, PathBuf)>,
    /// sha256 over every file of the module and of its local `replace` targets.
    pub(crate) digest: String,
    /// Whether the package has files for the `hanzo_exports` build tag (the Go SDK's
    /// exports-ABI build).
    pub(crate) has_exports: bool,
    /// Where the node places its own copy of the SDK (the host path the module's
    /// `replace` of the SDK names, outside the module; never read on the host).
    sdk_at: Option<PathBuf>,
    /// Whether the module vendors its dependencies (`vendor/modules.txt`): built with
    /// `-mod=vendor`, as there is no module proxy.
    pub(crate) vendored: bool,
}

/// The digest of a package whose build also gets the node's SDK at `at`.
fn with_sdk(digest: &str, at: &Path) -> String {
    let mut h = Sha256::new();
    for part in [
        digest.as_bytes(),
        at.as_os_str().as_encoded_bytes(),
        sdk::digest().as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// `p` with `.` and `..` resolved by the names alone (`..` above `/` stays at `/`).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

impl Package {
    /// Reads the package at `source`: a directory with Go files, inside a module.
    /// Nothing of it may lie in `forbidden` (the node's data directory: its key, other
    /// jobs' builds).
    pub(crate) fn load(source: &str, forbidden: &Path) -> Result<Package, ComputeError> {
        let bad = |m: String| ComputeError::invalid(m);
        let path = Path::new(source);
        let meta =
            std::fs::metadata(path).map_err(|e| bad(format!("cannot read Go package {source}: {e}")))?;
        if !meta.is_dir() {
            return Err(bad(format!(
                "{source} is not a directory: the go runtime's SOURCE is a Go package directory"
            )));
        }
        let dir =
            std::fs::canonicalize(path).map_err(|e| bad(format!("cannot read Go package {source}: {e}")))?;
        let mut go_files = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(|e| bad(format!("cannot read Go package {source}: {e}")))? {
            let e = e.map_err(|e| bad(format!("cannot read Go package {source}: {e}")))?;
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with(".go") && !name.ends_with("_test.go") && e.path().is_file() {
                go_files.push(e.path());
            }
        }
        if go_files.is_empty() {
            return Err(bad(format!("{source} has no Go files")));
        }
        let module = dir
            .ancestors()
            .find(|d| d.join("go.mod").is_file())
            .ok_or_else(|| {
                bad(format!(
                    "{source} is not inside a Go module (no go.mod): run `go mod init`"
                ))
            })?
            .to_path_buf();
        let go_mod = hanzo_compute::files::read_capped(&module.join("go.mod"), MAX_BYTES)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| bad(format!("cannot read {}: {e}", module.join("go.mod").display())))?;
        // The module's own tree is all a build sees ("the tool's directory"): a local
        // `replace` may point inside it, never outside, or a go.mod could show the build
        // (and, through `//go:embed`, the tool) any directory of the host. Only the SDK
        // is supplied from outside, by the node itself (sdk.rs).
        let mut sdk_at = None;
        for (path, target) in local_replacements(&go_mod) {
            let outside = |why: &str| {
                bad(format!(
                    "go.mod replaces {path} with {target}, {why} the module's directory {}: a build sees \
                     only the module's own tree; vendor the dependency (`go mod vendor`) or move it inside",
                    module.display()
                ))
            };
            if target.starts_with('/') {
                return Err(outside("an absolute path outside"));
            }
            let at = lexical(&module.join(&target));
            if path == sdk::MODULE && !at.starts_with(&module) {
                if module.starts_with(&at) {
                    return Err(outside("a directory that holds"));
                }
                sdk_at = Some(at);
                continue;
            }
            let p = std::fs::canonicalize(module.join(&target)).map_err(|e| {
                bad(format!(
                    "go.mod replaces {path} with {target}, which cannot be read: {e}"
                ))
            })?;
            if !p.starts_with(&module) {
                return Err(outside("which is outside"));
            }
        }
        let vendored = module.join("vendor").join("modules.txt").is_file();
        let forbidden = std::fs::canonicalize(forbidden).unwrap_or_else(|_| forbidden.to_path_buf());
        if module.starts_with(&forbidden) || forbidden.starts_with(&module) {
            return Err(bad(format!(
                "{} overlaps the node's data directory; build from elsewhere",
                module.display()
            )));
        }
        let mut files = Vec::new();
        walk(&module, &module, &mut files)?;
        files.sort();
        files.dedup();
        let mut digest = hash_files(&files, |_, _| Ok(()))?;
        if let Some(at) = &sdk_at {
            digest = with_sdk(&digest, at);
        }
        let has_exports = go_files.iter().any(|f| {
            std::fs::read_to_string(f).is_ok_and(|text| {
                text.lines()
                    .take_while(|l| !l.starts_with("package "))
                    .any(|l| l.starts_with("//go:build") && l.contains("hanzo_exports"))
            })
        });
        Ok(Package {
            dir,
            files,
            digest,
            has_exports,
            sdk_at,
            vendored,
        })
    }
}

/// `(module path, local path)` of each `replace ... => PATH` directive (single and
/// block form); a local path starts with `./`, `../` or `/` (go.mod's own rule).
fn local_replacements(go_mod: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in go_mod.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        let body = if in_block {
            if line == ")" {
                in_block = false;
                continue;
            }
            line
        } else if let Some(rest) = line.strip_prefix("replace") {
            let rest = rest.trim();
            if rest == "(" {
                in_block = true;
                continue;
            }
            rest
        } else {
            continue;
        };
        if let Some((from, target)) = body.split_once("=>") {
            let from = from.split_whitespace().next().unwrap_or("").trim_matches('"');
            let target = target.split_whitespace().next().unwrap_or("").trim_matches('"');
            if target.starts_with("./") || target.starts_with("../") || target.starts_with('/') {
                out.push((from.to_string(), target.to_string()));
            }
        }
    }
    out
}

/// sha256 over the sorted (root, relative path, contents) of `files`, calling `keep`
/// with each file's bytes. Sizes are checked before anything is read.
fn hash_files(
    files: &[(PathBuf, PathBuf)],
    mut keep: impl FnMut(&Path, Vec<u8>) -> Result<(), ComputeError>,
) -> Result<String, ComputeError> {
    let mut h = Sha256::new();
    let mut total = 0u64;
    for (root, rel) in files {
        let path = root.join(rel);
        let unreadable =
            |e: std::io::Error| ComputeError::invalid(format!("cannot read {}: {e}", path.display()));
        // Not following links: a link could show the build any file of the host.
        let meta = std::fs::symlink_metadata(&path).map_err(unreadable)?;
        if !meta.is_file() {
            return Err(ComputeError::invalid(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        total += meta.len();
        if total > MAX_BYTES {
            return Err(ComputeError::invalid(format!(
                "the Go package and its local dependencies exceed {} MiB",
                MAX_BYTES >> 20
            )));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        std::fs::File::open(&path)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, meta.len()), &mut bytes))
            .map_err(unreadable)?;
        for part in [
            root.as_os_str().as_encoded_bytes(),
            rel.as_os_str().as_encoded_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
        keep(&path, bytes)?;
    }
    Ok(hex::encode(h.finalize()))
}

impl Package {
    /// Every file of the package, read again, as `(host path, bytes)`, checked to be
    /// exactly what [`digest`](Package::digest) names: a build made from these bytes is
    /// the build of that digest, however the host tree changes meanwhile.
    pub(crate) fn read_verified(&self) -> Result<Vec<(PathBuf, Vec<u8>)>, ComputeError> {
        let mut out = Vec::with_capacity(self.files.len());
        let digest = hash_files(&self.files, |p, b| {
            out.push((p.to_path_buf(), b));
            Ok(())
        })?;
        let digest = match &self.sdk_at {
            Some(at) => with_sdk(&digest, at),
            None => digest,
        };
        if digest != self.digest {
            return Err(ComputeError::invalid(
                "the Go package changed while it was being built; run the job again",
            ));
        }
        if let Some(at) = &self.sdk_at {
            for (name, text) in sdk::FILES {
                out.push((at.join(name), text.as_bytes().to_vec()));
            }
        }
        Ok(out)
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> Result<(), ComputeError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ComputeError::invalid(format!("cannot read {}: {e}", dir.display())))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Ok(ft) = e.file_type() else { continue };
        let path = e.path();
        if ft.is_dir() {
            if name.starts_with('.') || name.starts_with('_') || name == "testdata" {
                continue;
            }
            walk(root, &path, out)?;
        } else if ft.is_symlink() {
            return Err(ComputeError::invalid(format!(
                "{} is a symbolic link: the go runtime builds regular files only",
                path.display()
            )));
        } else if ft.is_file() {
            if out.len() >= MAX_FILES {
                return Err(ComputeError::invalid(format!(
                    "the Go package and its local dependencies have more than {MAX_FILES} files"
                )));
            }
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.push((root.to_path_buf(), rel));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_replacements_in_both_forms() {
        let m = "module x\n\nreplace a => ../a // the SDK\nreplace b v1.0.0 => example.com/b v1.1.0\nreplace (\n\tc => ./c\n\td => /abs/d\n)\n";
        let found = local_replacements(m);
        let pairs: Vec<(&str, &str)> = found.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(pairs, [("a", "../a"), ("c", "./c"), ("d", "/abs/d")]);
    }

    #[test]
    fn the_digest_follows_every_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("go.mod"), "module x\n\ngo 1.24\n").unwrap();
        std::fs::write(d.path().join("main.go"), "package main\nfunc main() {}\n").unwrap();
        let p1 = Package::load(d.path().to_str().unwrap(), Path::new("/nonexistent-data")).unwrap();
        assert!(!p1.has_exports);
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/x.txt"), "embedded").unwrap();
        let p2 = Package::load(d.path().to_str().unwrap(), Path::new("/nonexistent-data")).unwrap();
        assert_ne!(p1.digest, p2.digest);
        std::fs::create_dir(d.path().join(".git")).unwrap();
        std::fs::write(d.path().join(".git/HEAD"), "ignored").unwrap();
        assert_eq!(
            Package::load(d.path().to_str().unwrap(), Path::new("/nonexistent-data"))
                .unwrap()
                .digest,
            p2.digest
        );
        std::fs::write(
            d.path().join("exports.go"),
            "//go:build wasip1 && hanzo_exports\n\npackage main\n",
        )
        .unwrap();
        assert!(
            Package::load(d.path().to_str().unwrap(), Path::new("/nonexistent-data"))
                .unwrap()
                .has_exports
        );
    }

    #[test]
    fn bad_sources_are_named() {
        let e = Package::load("/nonexistent/pkg", Path::new("/nonexistent-data")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let d = tempfile::tempdir().unwrap();
        let e = Package::load(d.path().to_str().unwrap(), Path::new("/nonexistent-data")).unwrap_err();
        assert!(e.to_string().contains("has no Go files"), "{e}");
        std::fs::write(d.path().join("main.go"), "package main\n").unwrap();
        let e = Package::load(
            d.path().join("main.go").to_str().unwrap(),
            Path::new("/nonexistent-data"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
    }
}

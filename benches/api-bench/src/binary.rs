//! The `hanzo-node` release binary the benches start: built first unless told not to.
//! Shared by api-bench and network-bench.

use anyhow::{Context, Result, ensure};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The release binary, built first unless `no_build`.
pub fn node_binary(bench: &str, no_build: bool) -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_relative() { root.join(t) } else { t })
        .unwrap_or_else(|| root.join("target"));
    let args = ["build", "--release", "-p", "hanzo-node"];
    if !no_build {
        eprintln!("{bench}: building the hanzo-node release binary ...");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(args)
            .current_dir(&root)
            .stdin(Stdio::null())
            .status()
            .context("cannot run cargo")?;
        ensure!(
            status.success(),
            "`cargo {}` failed in {}",
            args.join(" "),
            root.display()
        );
    }
    let bin = target.join("release/hanzo-node");
    ensure!(
        bin.is_file(),
        "{} is missing; build it with `cargo {}`",
        bin.display(),
        args.join(" ")
    );
    Ok(bin)
}

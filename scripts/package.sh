#!/usr/bin/env bash
# Builds the Debian package of hanzo-node from this checkout: the release binary (stripped,
# see [profile.release]), a systemd service running `hanzo-node serve` as the `hanzo`
# user, /etc/hanzo-node/hanzo-node.toml. Installs cargo-deb when it is missing. Prints
# the .deb's path last. Extra arguments go to `cargo deb` (e.g. `-o DIR`).
#
#   bash scripts/package.sh
#   sudo apt-get install ./target/debian/hanzo-node_*.deb
#
# What the package does: docs/packaging.md. Its test: scripts/package-test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
source scripts/deb.sh
ensure_wasm_target
ensure_cargo_deb
out="$(target_dir)/debian"
mkdir -p "$out"
# cargo-deb runs `cargo build --release -p hanzo-node`, then packages what
# hanzo-bin/hanzo-node/Cargo.toml's [package.metadata.deb] lists, and prints the path.
cargo deb -p hanzo-node --locked -o "$out" "$@"

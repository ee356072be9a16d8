#!/usr/bin/env bash
# Every test: installs what is missing (the wasm32-wasip1 target, cargo-nextest, the
# Docker engine and what its tests use, Go, deno, uv, bubblewrap, the MCP reference
# servers and clients) and starts dockerd,
# builds the example tools once and the node with fail points (for the verification
# tests), then runs the workspace's tests, checks that no tool container is left, and
# tests the Debian package (installing cargo-deb and debootstrap when they are missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
source scripts/docker.sh
source scripts/go.sh
source scripts/sandbox.sh
source scripts/toolchains.sh
source scripts/mcp.sh
ensure_wasm_target
ensure_nextest
ensure_docker
ensure_go
ensure_deno
ensure_uv
ensure_sandbox_tools
ensure_mcp
build_examples
build_failpoints_node
cargo fmt --all -- --check
# The benchmark crate has no tests and pulls in extism: it is built by the bench only.
exclude=()
if grep -q '"benches/wasm-bench"' Cargo.toml; then exclude=(--exclude wasm-bench); fi
status=0
# The Go SDK's own tests (standard library only, no module proxy).
go_sdk_tests || status=$?
cargo nextest run "${CARGO_FLAGS[@]}" --workspace "${exclude[@]}" --no-fail-fast "$@" || status=$?
# Every tool container the suite created must be gone, whatever happened.
check_no_hanzo_containers || status=1
# The Debian package, built from the binary the run above built, installed and started
# by systemd in a clean Debian 12 container (docs/packaging.md).
bash scripts/package-test.sh --no-build || status=1
exit "$status"

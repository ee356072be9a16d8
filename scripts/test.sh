#!/usr/bin/env bash
# Every test: installs what is missing (the wasm32-wasip1 target, cargo-nextest),
# builds the example tools once, then runs the workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
ensure_wasm_target
ensure_nextest
build_examples
cargo fmt --all -- --check
# The benchmark crate has no tests and pulls in extism: it is built by the bench only.
exclude=()
if grep -q '"benches/wasm-bench"' Cargo.toml; then exclude=(--exclude wasm-bench); fi
cargo nextest run "${CARGO_FLAGS[@]}" --workspace "${exclude[@]}" --no-fail-fast "$@"

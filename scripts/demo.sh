#!/usr/bin/env bash
# The main job on the embedded defaults: builds the example tools and the node, then
# runs the tools through the WASM runtime, printing outputs and receipts.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
ensure_wasm_target
build_examples
cargo run "${CARGO_FLAGS[@]}" --release --quiet -p hanzo-node -- demo --examples "$HANZO_EXAMPLES_DIR" "$@"

#!/usr/bin/env bash
# The main job on the embedded defaults: installs what is missing (the wasm32-wasip1 target,
# bubblewrap, Go, deno, uv), builds the example tools and the node, then runs the tools on
# the WASM runtime, on Deno, Python and Go in the process sandbox, a built-in tool and a
# reference MCP server from PyPI (sandboxed, then warm), and an agent answering with two
# example tools (each call a receipted job), printing outputs and receipts; then three nodes on 127.0.0.1 place a job on each other
# and survive the death of the peer running one; then four nodes verify jobs by running
# them redundantly, one of them a lying build (the `failpoints` feature) that is caught.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
source scripts/go.sh
source scripts/sandbox.sh
source scripts/toolchains.sh
source scripts/mcp.sh
ensure_wasm_target
ensure_sandbox_tools
ensure_go
ensure_deno
ensure_uv
# The MCP reference servers (PyPI, npm) into ~/.cache/hanzo-node/mcp: the demo calls
# mcp-server-time as a sandboxed MCP server.
ensure_mcp
build_examples
# With a Docker daemon at hand, the demo also runs the text tools in a hardened container:
# the same Rust source built as a static Linux executable, in a `FROM scratch` image.
docker_args=()
if docker info >/dev/null 2>&1; then
    RUSTFLAGS="-C target-feature=+crt-static" cargo build "${CARGO_FLAGS[@]}" --release \
        --target x86_64-unknown-linux-gnu -p text-tools --bin text-tools-cmd
    ctx="$(mktemp -d)"
    cp "$(target_dir)/x86_64-unknown-linux-gnu/release/text-tools-cmd" "$ctx/tool"
    printf 'FROM scratch\nCOPY tool /tool\nENTRYPOINT ["/tool"]\n' >"$ctx/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -q -t hanzo-demo/text-tools:latest "$ctx" >/dev/null 2>&1
    rm -rf "$ctx"
    docker_args=(--docker-image hanzo-demo/text-tools:latest)
else
    echo "no Docker daemon: the demo runs every step but the container one (start dockerd to add it)" >&2
fi
# The lying node of the verified jobs: the node built with its fail points, kept beside
# the real binary under another name (never packaged: it can lie on purpose).
cargo build "${CARGO_FLAGS[@]}" --release --quiet -p hanzo-node --features failpoints
liar="$(target_dir)/release/hanzo-node-failpoints"
cp "$(target_dir)/release/hanzo-node" "$liar"
# The agent step's model: HANZO_DEMO_AGENT_ENDPOINT (and HANZO_DEMO_AGENT_MODEL) name a
# real OpenAI-compatible endpoint, Ollama's say; without one, a stand-in answers through
# the same API with a fixed plan (no model can run here; examples/agent/README.md).
agent_args=()
if [ -n "${HANZO_DEMO_AGENT_ENDPOINT:-}" ]; then
    agent_args=(--agent-endpoint "$HANZO_DEMO_AGENT_ENDPOINT" --agent-model "${HANZO_DEMO_AGENT_MODEL:-llama3.2}")
else
    port_file="$(mktemp -u)"
    python3 examples/agent/stand_in_model.py "$port_file" &
    stand_in=$!
    trap 'kill "$stand_in" 2>/dev/null || true; rm -f "$port_file"' EXIT
    for _ in $(seq 200); do [ -s "$port_file" ] && break; sleep 0.05; done
    agent_args=(--agent-endpoint "http://127.0.0.1:$(cat "$port_file")/v1")
fi
cargo run "${CARGO_FLAGS[@]}" --release --quiet -p hanzo-node -- demo --examples "$HANZO_EXAMPLES_DIR" --sources examples --network --liar "$liar" \
    --mcp-server "$HANZO_MCP_VENV/bin/mcp-server-time" "${agent_args[@]}" "${docker_args[@]}" "$@"

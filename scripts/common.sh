# Shared set-up for scripts/demo.sh and scripts/test.sh: installs what is missing.
# Sourced, not run.

# wasmtime 49 (the version extism 1.41 builds on) declares rust-version 1.96 but
# compiles with 1.95, this machine's stable toolchain; every cargo call passes this.
CARGO_FLAGS=(--ignore-rust-version)

ensure_wasm_target() {
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
        echo "installing the wasm32-wasip1 Rust target" >&2
        rustup target add wasm32-wasip1
    fi
}

ensure_nextest() {
    if ! cargo nextest --version >/dev/null 2>&1; then
        echo "installing cargo-nextest" >&2
        cargo install cargo-nextest --locked
    fi
}

target_dir() {
    local t="${CARGO_TARGET_DIR:-target}"
    case "$t" in /*) ;; *) t="$PWD/$t" ;; esac
    echo "$t"
}

# The example tools, built from source for wasm32-wasip1.
build_examples() {
    cargo build "${CARGO_FLAGS[@]}" --release --target wasm32-wasip1 -p echo -p text-tools -p sentiment
    export HANZO_EXAMPLES_DIR
    HANZO_EXAMPLES_DIR="$(target_dir)/wasm32-wasip1/release"
}

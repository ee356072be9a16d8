# Shared set-up for the scripts (demo.sh, test.sh, docker.sh, sandbox.sh, go.sh): installs
# what is missing. Sourced, not run; sourcing it twice is harmless.

# Extra flags for every cargo call the scripts make (none today: rust-toolchain.toml pins
# the toolchain wasmtime 49 needs).
CARGO_FLAGS=()

# The toolchain rust-toolchain.toml pins, with the wasm32-wasip1 target, when missing.
ensure_wasm_target() {
    local channel
    channel="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)"
    if ! rustup toolchain list 2>/dev/null | grep -q "^$channel"; then
        echo "installing the Rust $channel toolchain" >&2
        rustup toolchain install "$channel" --profile minimal -c rustfmt -c clippy
    fi
    if ! rustup target list --installed --toolchain "$channel" 2>/dev/null | grep -qx wasm32-wasip1; then
        echo "installing the wasm32-wasip1 Rust target" >&2
        rustup target add wasm32-wasip1 --toolchain "$channel"
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

# The hanzo-node built with its `failpoints` feature (CONTRACTS §8), which the
# verification tests run as lying, silent and stalling nodes: built in the same target
# directory (only the workspace's own crates build again, about a minute), copied beside
# the plain binary as hanzo-node-failpoints, where the tests look for it. The plain
# binary is built again by the next cargo call that needs it (nextest's).
build_failpoints_node() {
    local dir
    dir="$(target_dir)/debug"
    cargo build "${CARGO_FLAGS[@]}" -p hanzo-node --features failpoints
    cp "$dir/hanzo-node" "$dir/hanzo-node-failpoints"
    export HANZO_FAILPOINTS_BIN="$dir/hanzo-node-failpoints"
}

# Root helpers for installing Debian packages.
_hanzo_apt_updated=""

_hanzo_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: '$*' needs root, and sudo is not installed" >&2
        return 1
    fi
}

# Installs the given Debian packages; runs `apt-get update` once per shell.
_hanzo_apt_install() {
    [ "$#" -gt 0 ] || return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: apt-get not found; install these yourself: $*" >&2
        return 1
    fi
    echo "installing $*" >&2
    if [ -z "$_hanzo_apt_updated" ]; then
        _hanzo_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
        _hanzo_apt_updated=1
    fi
    _hanzo_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null || return 1
}

# Installs a PyPI package that ships a program (`_hanzo_pip_program deno deno`), unless CHECK
# (a command, default `command -v PROGRAM`) already succeeds, and makes sure CHECK succeeds
# afterwards: pyenv shims are rehashed, a scripts directory off PATH is added. Returns non-zero,
# having said why, on failure.
_hanzo_pip_program() {
    local program="$1" package="$2"
    local check="${3:-command -v $program}"
    $check >/dev/null 2>&1 && return 0
    local py
    py="$(command -v python3 || command -v python)" || {
        echo "error: $program is missing and there is no python3 to pip install $package with" >&2
        return 1
    }
    echo "installing $program (pip install $package)" >&2
    local log
    log="$(PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$py" -m pip install -q "$package" 2>&1)" ||
        # A Debian-managed python refuses plain installs (PEP 668).
        log="$(PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
            "$py" -m pip install -q --break-system-packages "$package" 2>&1)" || {
        echo "$log" >&2
        echo "error: pip install $package failed" >&2
        return 1
    }
    hash -r
    if ! $check >/dev/null 2>&1 && command -v pyenv >/dev/null 2>&1; then
        pyenv rehash >/dev/null 2>&1
        hash -r
    fi
    if ! $check >/dev/null 2>&1; then
        # The program lands in the interpreter's (or the user's) scripts directory.
        local dir
        for dir in "$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)" \
            "$("$py" -m site --user-base 2>/dev/null)/bin"; do
            if [ -x "$dir/$program" ]; then
                export PATH="$dir:$PATH"
                break
            fi
        done
        hash -r
    fi
    $check >/dev/null 2>&1 || {
        echo "error: $package is installed but no usable $program is on PATH" >&2
        return 1
    }
}

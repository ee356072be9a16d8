# The script runtimes' toolchains (hanzo-libs/hanzo-deno-runtime, hanzo-python-runtime).
# Sourced (by scripts/test.sh and scripts/demo.sh), not run.
#
#   ensure_deno   installs deno from PyPI (`pip install deno`) when it is not on PATH
#   ensure_uv     installs uv from PyPI (`pip install uv`) when it is not on PATH
#
# Both are idempotent and print nothing when there is nothing to do. The runtimes resolve
# pyenv shims to the real binaries themselves (a shim costs ~60 ms a call).

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_deno() {
    _hanzo_pip_program deno deno
}

ensure_uv() {
    _hanzo_pip_program uv uv
}

# The MCP reference servers and clients the MCP tests run against (issue 15), installed
# once into a directory of their own outside the checkout:
#   ensure_mcp   a Python venv with mcp-server-time, mcp-server-git and the official
#                SDK (`mcp` 2.x, whose client drives the node's MCP server), made with
#                uv from an installed Python 3.10+ (never a downloaded one); an npm
#                prefix with @modelcontextprotocol/server-everything and
#                @modelcontextprotocol/inspector-cli; Node.js from Debian when missing.
# Exports HANZO_MCP_VENV and HANZO_MCP_NPM (the tests read them). Idempotent; set
# HANZO_MCP_DIR to install elsewhere (default ~/.cache/hanzo-node/mcp).

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/toolchains.sh"

# A Python interpreter of 3.10 or later that is really installed (pyenv shims resolved),
# for uv to make the venv from.
_hanzo_mcp_python() {
    local c real
    for c in python3 python3.13 python3.12 python3.11 python3.10 /usr/bin/python3; do
        real="$($c -c 'import sys; assert sys.version_info >= (3, 10); print(sys.executable)' 2>/dev/null)" || continue
        [ -x "$real" ] && { echo "$real"; return 0; }
    done
    return 1
}

ensure_mcp() {
    local dir="${HANZO_MCP_DIR:-$HOME/.cache/hanzo-node/mcp}"
    mkdir -p "$dir"
    ensure_uv
    if ! "$dir/venv/bin/python" -c 'import mcp.client.streamable_http' >/dev/null 2>&1 ||
        [ ! -x "$dir/venv/bin/mcp-server-time" ] || [ ! -x "$dir/venv/bin/mcp-server-git" ]; then
        local py
        py="$(_hanzo_mcp_python)" || {
            echo "error: the MCP tests need Python 3.10 or later (apt-get install python3)" >&2
            return 1
        }
        echo "installing the Python MCP SDK and reference servers into $dir/venv" >&2
        rm -rf "$dir/venv"
        uv venv -q --python "$py" "$dir/venv"
        uv pip install -q --python "$dir/venv/bin/python" 'mcp>=2,<3' mcp-server-time mcp-server-git
    fi
    if ! command -v npm >/dev/null 2>&1; then
        _hanzo_apt_install nodejs npm
    fi
    if [ ! -e "$dir/npm/node_modules/.bin/mcp-server-everything" ] ||
        [ ! -e "$dir/npm/node_modules/@modelcontextprotocol/inspector-cli/build/index.js" ]; then
        echo "installing the MCP reference server (everything) and inspector-cli into $dir/npm" >&2
        npm install -q --prefix "$dir/npm" --no-audit --no-fund \
            @modelcontextprotocol/server-everything @modelcontextprotocol/inspector-cli >/dev/null
    fi
    export HANZO_MCP_VENV="$dir/venv" HANZO_MCP_NPM="$dir/npm"
}

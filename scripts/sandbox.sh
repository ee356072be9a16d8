# The process sandbox's tools (hanzo-libs/hanzo-sandbox): installs what is missing.
# Sourced (by scripts/test.sh), not run.
#
#   ensure_sandbox_tools   on a fresh Debian 12, as root (or with sudo): installs
#                          bubblewrap, which the sandbox runs tools in; slirp4netns and
#                          passt (pasta), the user-mode NATs that connect a tool granted
#                          `network: full` from a network namespace of its own (the
#                          tests use both); iproute2 (`ip netns`, the tests' test
#                          hosts); iptables (the network tests' NAT: a LAN namespace
#                          masqueraded by a gateway namespace); and Debian's python3
#                          (/usr/bin/python3), which its tests run as hostile tools. Idempotent; prints nothing when
#                          there is nothing to do; runs `apt-get update` at most once
#                          per shell.

# _hanzo_apt_install lives in common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_sandbox_tools() {
    local missing=()
    command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
    local PATH="$PATH:/usr/sbin:/sbin"
    command -v slirp4netns >/dev/null 2>&1 || missing+=(slirp4netns)
    command -v pasta >/dev/null 2>&1 || missing+=(passt)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v iptables >/dev/null 2>&1 || missing+=(iptables)
    [ -x /usr/bin/python3 ] || missing+=(python3)
    [ "${#missing[@]}" -eq 0 ] && return 0
    _hanzo_apt_install "${missing[@]}" || {
        echo "error: could not install ${missing[*]}" >&2
        return 1
    }
}

# Docker for the Docker runtime's tests (hanzo-libs/hanzo-docker-runtime/tests): installs
# what is missing and starts the daemon. Sourced (by scripts/test.sh), not run.
#
#   ensure_docker               on a fresh Debian 12, as root (or with sudo): installs docker.io,
#                               busybox-static, docker-registry, apache2-utils (htpasswd) and
#                               file, then starts dockerd unless `docker info` already works
#                               (its log: $HANZO_DOCKERD_LOG, default /var/log/dockerd.log)
#   check_no_hanzo_containers   fails, listing them, if any hanzo tool container is left
#
# Both are idempotent and print nothing when there is nothing to do.

# _hanzo_as_root and _hanzo_apt_install live in common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

_hanzo_pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

ensure_docker() {
    local missing=()
    # The daemon and its CLI (docker.io brings containerd, runc and tini, the init the
    # runtime asks for).
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        missing+=(docker.io)
    fi
    # The fixture image's shell must be the static busybox: it runs in an empty image.
    _hanzo_pkg_installed busybox-static || missing+=(busybox-static)
    # A local registry for the pull-policy and credential tests, and htpasswd (bcrypt) for
    # its users.
    command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
    command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
    # file(1) checks that the tools built for `FROM scratch` images are static.
    command -v file >/dev/null 2>&1 || missing+=(file)
    command -v tar >/dev/null 2>&1 || missing+=(tar)
    if [ "${#missing[@]}" -gt 0 ]; then
        _hanzo_apt_install "${missing[@]}" || {
            echo "error: could not install ${missing[*]}" >&2
            return 1
        }
    fi

    docker info >/dev/null 2>&1 && return 0
    local log="${HANZO_DOCKERD_LOG:-/var/log/dockerd.log}"
    echo "starting dockerd (log: $log)" >&2
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        _hanzo_as_root systemctl start docker >/dev/null 2>&1 || true
    fi
    if ! docker info >/dev/null 2>&1 && ! pgrep -x dockerd >/dev/null 2>&1; then
        # No systemd (a container, a minimal VM): run it in its own session.
        _hanzo_as_root sh -c "setsid dockerd >'$log' 2>&1 </dev/null &"
    fi
    local waited=0
    until docker info >/dev/null 2>&1; do
        if [ "$waited" -ge 60 ]; then
            echo "error: dockerd did not answer within 60 s; the end of $log:" >&2
            tail -n 20 "$log" >&2 2>/dev/null || true
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

check_no_hanzo_containers() {
    local left
    if ! left="$(docker ps -aq --filter label=hanzo.kind=tool 2>&1)"; then
        echo "error: cannot list containers: $left" >&2
        return 1
    fi
    if [ -n "$left" ]; then
        echo "error: hanzo tool containers were left behind:" >&2
        docker ps -a --filter label=hanzo.kind=tool \
            --format '  {{.ID}} {{.Image}} {{.Status}} node={{.Label "hanzo.node"}} job={{.Label "hanzo.job"}}' >&2
        return 1
    fi
}

#!/usr/bin/env bash
# The Debian package, installed for real in a clean Debian 12 and run by systemd.
#
#   bash scripts/package-test.sh              builds the dev-profile binary first
#   bash scripts/package-test.sh --no-build   packages the binary already in the target
#                                             dir (scripts/test.sh, after its nextest run)
#   bash scripts/package-test.sh --deb FILE   tests that .deb (scripts/package.sh's)
#
# It packages the dev-profile hanzo-node (what the test suite has just built; a release
# build would add ~15 minutes) with cargo-deb and the same metadata, unit and maintainer
# scripts as scripts/package.sh, then, in a container of a local debootstrap image
# (scripts/deb.sh; no image is pulled) with systemd as PID 1 and no network:
#   apt-get install ./hanzo-node.deb (dependencies from the image's apt cache), checks the
#   hanzo user, the data directory (0700), the token (0600), the config (0640), the unit
#   (systemd-analyze verify), the service process's user, /healthz, a WASM job and a
#   sandboxed native job over the authenticated API, a restart (same token, the job
#   kept), `dpkg -r` (stopped, data kept) and `dpkg -P` (data gone).
# All traffic stays inside the container. Exits non-zero when any check fails.
set -uo pipefail
caller_dir="$PWD"
cd "$(dirname "$0")/.." || exit 1
source scripts/common.sh
source scripts/docker.sh
source scripts/deb.sh

build=1
given_deb=""
case "${1:-}" in
--no-build) build=0 ;;
--deb)
    given_deb="${2:-}"
    case "$given_deb" in /* | "") ;; *) given_deb="$caller_dir/$given_deb" ;; esac
    [ -f "$given_deb" ] || {
        echo "error: --deb needs a .deb file (got '${given_deb}')" >&2
        exit 2
    }
    ;;
"") ;;
*)
    echo "error: unknown argument '$1' (usage: scripts/package-test.sh [--no-build | --deb FILE])" >&2
    exit 2
    ;;
esac

started=$SECONDS
passed=0
failed=0
failures=()

# A step the checks cannot go on without failed: it counts as one failed check.
fatal() {
    echo "package-test: error: $*" >&2
    echo "package-test: stopped after $((SECONDS - started)) s"
    echo "package-test: $passed passed, $((failed + 1)) failed"
    exit 1
}

ensure_docker || fatal "no Docker daemon"
ensure_cargo_deb || fatal "no cargo-deb"
if ! command -v python3 >/dev/null 2>&1; then
    _hanzo_apt_install python3 || fatal "no python3"
fi

work="$(mktemp -d "${TMPDIR:-/var/tmp}/hanzo-pkgtest.XXXXXX")" || fatal "no temporary directory"
ctr="hanzo-pkgtest-$$"
cleanup() {
    docker rm -f "$ctr" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

# Runs a check: NAME, then a command that succeeds when the check holds (in this shell:
# a check may set variables for later ones). Its output is shown only when it fails.
check() {
    local name="$1"
    shift
    if "$@" >"$work/check.out" 2>&1; then
        passed=$((passed + 1))
        echo "package-test: ok: $name"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "package-test: FAILED: $name"
        tail -n 30 "$work/check.out" | sed 's/^/    /'
    fi
}

# Succeeds when a command's output (trimmed) is exactly WANT; says what it was if not.
expect() {
    local want="$1" got
    shift
    got="$("$@" 2>&1)"
    got="${got%$'\n'}"
    if [ "$got" != "$want" ]; then
        echo "expected: $want"
        echo "got:      $got"
        return 1
    fi
}

inside() {
    docker exec "$ctr" "$@"
}

# --- the package ------------------------------------------------------------------------

deb="$work/hanzo-node.deb"
if [ -n "$given_deb" ]; then
    cp "$given_deb" "$deb" || fatal "cannot copy $given_deb"
else
    bin="$(target_dir)/debug/hanzo-node"
    if [ "$build" = 1 ]; then
        cargo build "${CARGO_FLAGS[@]}" -p hanzo-node || fatal "cargo build -p hanzo-node failed"
    fi
    [ -x "$bin" ] || fatal "no $bin (build it with cargo build -p hanzo-node)"
    # A build with fail points can lie on purpose (CONTRACTS §8): never packaged.
    if "$bin" --version | grep -q failpoints; then
        fatal "$bin was built with the failpoints feature; build it without (cargo build -p hanzo-node)"
    fi
    # cargo-deb packages only profiles it builds for itself (not dev), so the binary goes
    # where `--no-build` looks for a release one: a private target dir, never the real
    # one (cargo-deb strips the copy it packages).
    mkdir -p "$work/target/release" || fatal "cannot create $work/target/release"
    cp "$bin" "$work/target/release/hanzo-node" || fatal "cannot copy $bin"
    if ! CARGO_TARGET_DIR="$work/target" cargo deb -p hanzo-node --no-build --strip --fast \
        -o "$deb" >"$work/cargo-deb.log" 2>&1; then
        cat "$work/cargo-deb.log" >&2
        fatal "cargo deb failed"
    fi
fi
echo "package-test: testing $(dpkg-deb -f "$deb" Package Version Architecture | tr '\n' ' ')($(du -h "$deb" | cut -f1))"

# --- a clean Debian 12 with systemd -----------------------------------------------------

image="$(ensure_pkgtest_image "$deb")" || fatal "no package test image"
# systemd as PID 1: it mounts, and the unit's sandboxing makes namespaces, so the
# container gets CAP_SYS_ADMIN, no seccomp filter, and the cgroup tree writable. Docker's
# masks over /proc paths go too (systempaths=unconfined), as a host has none: with them
# the kernel refuses the fresh /proc that bubblewrap mounts in a user namespace. No
# network: the .deb's dependencies are in the image's apt cache.
docker run -d --name "$ctr" --label hanzo.kind=pkgtest --network none \
    --cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --security-opt systempaths=unconfined \
    --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw --cgroupns host \
    "$image" /sbin/init >/dev/null || fatal "cannot start a container of $image"
state=""
for _ in $(seq 1 60); do
    state="$(inside systemctl is-system-running 2>/dev/null)"
    case "$state" in running | degraded) break ;; esac
    sleep 1
done
case "$state" in
running | degraded) ;;
*) fatal "systemd in the container did not come up (state: ${state:-none}): $(docker logs --tail 20 "$ctr" 2>&1)" ;;
esac

docker cp "$deb" "$ctr:/root/hanzo-node.deb" >/dev/null || fatal "docker cp failed"
if ! inside env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    /root/hanzo-node.deb >"$work/install.log" 2>&1; then
    cat "$work/install.log" >&2
    fatal "apt-get install ./hanzo-node.deb failed"
fi
echo "package-test: installed with apt-get (and its dependencies: $(grep -o '^Setting up [^ ]*' "$work/install.log" | cut -d' ' -f3 | tr '\n' ' '))"

# Lines a maintainer script's shell printed about itself (`hanzo-node.postinst: 12: ...:
# not found`): a broken script, even when dpkg went on.
script_errors() {
    if grep -E 'hanzo-node\.(preinst|postinst|prerm|postrm)' "$@"; then return 1; fi
}
check "the maintainer scripts ran without shell errors on install" script_errors "$work/install.log"

# --- installed and running --------------------------------------------------------------

healthy() {
    local code=""
    for _ in $(seq 1 60); do
        code="$(inside curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:3690/healthz)"
        [ "$code" = 200 ] && return 0
        sleep 0.5
    done
    echo "GET /healthz: ${code:-no answer}"
    inside systemctl status --no-pager hanzo-node
    inside journalctl -u hanzo-node --no-pager -n 30
    return 1
}
check "GET /healthz answers 200 (the service started on install)" healthy

check "the dependencies are installed (bubblewrap, adduser)" \
    inside sh -c 'command -v bwrap && command -v adduser'
check "hanzo is a system user with no login, home /var/lib/hanzo-node" \
    expect "hanzo:/var/lib/hanzo-node:/usr/sbin/nologin:system" \
    inside sh -c 'getent passwd hanzo | awk -F: "{ print \$1 \":\" \$6 \":\" \$7 \":\" (\$3 < 1000 ? \"system\" : \"uid \" \$3) }"'
check "the service is enabled" expect enabled inside systemctl is-enabled hanzo-node
check "the service's process runs as hanzo" \
    expect hanzo inside sh -c 'ps -o user= -p "$(systemctl show -p MainPID --value hanzo-node)"'
check "the data directory is 0700 hanzo:hanzo" \
    expect "700 hanzo:hanzo" inside stat -c '%a %U:%G' /var/lib/hanzo-node
check "the node created its API token, 0600 hanzo:hanzo" \
    expect "600 hanzo:hanzo" inside stat -c '%a %U:%G' /var/lib/hanzo-node/api-token
conffile() {
    expect "640 root:hanzo" inside stat -c '%a %U:%G' /etc/hanzo-node/hanzo-node.toml || return 1
    inside dpkg-query -W -f='${Conffiles}\n' hanzo-node | grep ' /etc/hanzo-node/hanzo-node.toml '
}
check "the config is a conffile, 0640 root:hanzo" conffile
verify_unit() {
    local out
    out="$(inside systemd-analyze verify /usr/lib/systemd/system/hanzo-node.service 2>&1)" || {
        echo "$out"
        return 1
    }
    # Warnings about other units of the image are not this package's.
    if grep -i 'hanzo' <<<"$out"; then return 1; fi
}
check "systemd-analyze verify finds nothing wrong with the unit" verify_unit

token="$(inside cat /var/lib/hanzo-node/api-token 2>/dev/null)"

# An API call inside the container: METHOD PATH [BODY [CONTENT-TYPE]] (the body on stdin).
api() {
    printf '%s' "${3:-}" | docker exec -i "$ctr" curl -sS -X "$1" \
        -H "Authorization: Bearer $token" -H "Content-Type: ${4:-application/json}" \
        --data-binary @- "http://127.0.0.1:3690$2"
}

# A Python expression over the JSON on stdin (as `v`); prints its value.
jq_py() {
    python3 -c 'import json, sys
v = json.load(sys.stdin)
r = eval(sys.argv[1])
print(r if isinstance(r, str) else json.dumps(r, sort_keys=True))' "$1"
}

check "the API refuses a request without the token (401)" \
    expect 401 inside curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:3690/v1/jobs

# A WASI command that copies stdin (the params) to stdout (the output), the one the
# node's API tests use.
cat_wat="$(cat hanzo-libs/hanzo-testkit/fixtures/cat.wat)"
wasm_job=""
run_wasm_job() {
    local module source result
    module="$(api POST /v1/modules "$cat_wat" application/wasm)" || return 1
    source="$(jq_py 'v["source"]' <<<"$module")" || {
        echo "POST /v1/modules: $module"
        return 1
    }
    result="$(api POST /v1/jobs/execute \
        "{\"runtime\": \"wasm\", \"source\": \"$source\", \"params\": {\"from\": \"the deb\"}}")" || return 1
    expect 'succeeded {"from": "the deb"} True' \
        jq_py '" ".join([v["status"], json.dumps(v["output"]), str(bool(v.get("receipt")))])' <<<"$result" || {
        echo "$result"
        return 1
    }
    wasm_job="$(jq_py 'v["id"]' <<<"$result")"
}
check "POST /v1/jobs/execute runs a WASM job (with a receipt)" run_wasm_job

isolation=""
native_job() {
    local runtimes result
    # The unit's hardening must leave bubblewrap working for a node that is not root.
    runtimes="$(api GET /v1/runtimes)" || return 1
    isolation="$(jq_py '[r for r in v["runtimes"] if r["runtime"] == "native"][0]["capabilities"]["isolation"]' \
        <<<"$runtimes")" || {
        echo "$runtimes"
        return 1
    }
    case "$isolation" in
    bubblewrap*) ;;
    *)
        echo "the native runtime's isolation: $isolation"
        return 1
        ;;
    esac
    result="$(api POST /v1/jobs/execute \
        '{"runtime": "native", "source": "builtin:hash", "params": {"text": "abc"}}')" || return 1
    expect "succeeded ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" \
        jq_py '" ".join([v["status"], (v.get("output") or {}).get("digest", "")])' <<<"$result" || {
        echo "$result"
        return 1
    }
}
check "a native tool runs in the bubblewrap sandbox under the unit" native_job
echo "package-test: the service's process sandbox: $isolation"

restart() {
    inside systemctl restart hanzo-node || return 1
    healthy || return 1
    expect "$token" inside cat /var/lib/hanzo-node/api-token || return 1
    [ -n "$wasm_job" ] || {
        echo "no job from before the restart"
        return 1
    }
    expect succeeded jq_py 'v["status"]' <<<"$(api GET "/v1/jobs/$wasm_job")"
}
check "a restart keeps the token and the job store" restart

# --- remove and purge -------------------------------------------------------------------

# `dpkg FLAG hanzo-node` in the container, its output kept in $work/NAME.log (shown when
# it fails), and its maintainer scripts checked for shell errors.
dpkg_step() {
    inside dpkg "$1" hanzo-node >"$work/$2.log" 2>&1 || {
        cat "$work/$2.log"
        return 1
    }
    script_errors "$work/$2.log"
}
removed() {
    dpkg_step -r remove || return 1
    if inside pgrep -u hanzo -a .; then
        echo "processes of hanzo are left"
        return 1
    fi
    if inside curl -s -o /dev/null http://127.0.0.1:3690/healthz; then
        echo "the API still answers"
        return 1
    fi
    expect inactive inside systemctl is-active hanzo-node
}
check "dpkg -r stops the service" removed
kept() {
    inside sh -c 'for f in /var/lib/hanzo-node/api-token /var/lib/hanzo-node/jobs.db /etc/hanzo-node/hanzo-node.toml; do
            [ -s "$f" ] || { echo "$f is gone"; exit 1; }
        done
        getent passwd hanzo >/dev/null || { echo "the hanzo user is gone"; exit 1; }' || return 1
    expect "700 hanzo:hanzo" inside stat -c '%a %U:%G' /var/lib/hanzo-node
}
check "dpkg -r keeps the data (token, key, job store), the config and the user" kept
purged() {
    dpkg_step -P purge || return 1
    inside sh -c 'for p in /var/lib/hanzo-node /etc/hanzo-node; do
        if [ -e "$p" ]; then echo "$p is left:"; ls -la "$p"; exit 1; fi; done'
}
check "dpkg -P deletes the data directory and the config" purged

echo "package-test: took $((SECONDS - started)) s"
if [ "$failed" -gt 0 ]; then
    echo "package-test: these checks failed:"
    printf '  %s\n' "${failures[@]}"
fi
# The plain closing line (`N passed, N failed`) a CI log reader counts.
echo "package-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

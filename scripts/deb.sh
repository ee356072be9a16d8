# The Debian package's tools (scripts/package.sh, scripts/package-test.sh): installs what
# is missing. Sourced, not run.
#
#   ensure_cargo_deb        installs cargo-deb from crates.io (`cargo install cargo-deb
#                           --locked`) when `cargo deb` is missing
#   ensure_debootstrap      installs debootstrap (apt) when it is missing
#   debian_mirror           prints the Debian archive this machine's apt uses (read from
#                           /etc/apt/sources.list and sources.list.d at run time)
#   ensure_pkgtest_image D  prints the tag of a local Docker image for installing the .deb
#                           D in a clean Debian 12: a minbase debootstrap with systemd,
#                           curl and procps, plus the packages D depends on (and
#                           recommends) downloaded into apt's cache but not installed. Built
#                           once and reused while D asks for the same packages.
#
# All are idempotent and print nothing on stderr when there is nothing to do.

# _hanzo_as_root and _hanzo_apt_install live in common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_cargo_deb() {
    cargo deb --version >/dev/null 2>&1 && return 0
    echo "installing cargo-deb" >&2
    cargo install cargo-deb --locked
}

ensure_debootstrap() {
    local PATH="$PATH:/usr/sbin:/sbin"
    command -v debootstrap >/dev/null 2>&1 && return 0
    _hanzo_apt_install debootstrap || {
        echo "error: could not install debootstrap" >&2
        return 1
    }
}

# The first Debian archive (not the security one) in apt's sources: one-line
# `deb URI SUITE ...` entries and deb822 `URIs:` stanzas alike. Never written down: the
# mirror is the machine's own.
debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        case "$f" in
        *.sources)
            # Each stanza's `URIs:`, from stanzas whose Types include `deb`.
            uri="$(awk '
                BEGIN { RS = ""; FS = "\n" }
                {
                    deb = 0; u = ""
                    for (i = 1; i <= NF; i++) {
                        if ($i ~ /^Types:/ && $i ~ /[ \t]deb([ \t]|$)/) deb = 1
                        if ($i ~ /^URIs:/) { split($i, w, /[ \t]+/); u = w[2] }
                    }
                    if (deb && u != "" && u !~ /security/) { print u; exit }
                }' "$f")"
            ;;
        *)
            uri="$(awk '$1 == "deb" {
                    for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { if ($i !~ /security/) print $i; break }
                }' "$f" | head -n 1)"
            ;;
        esac
        if [ -n "$uri" ]; then
            echo "$uri"
            return 0
        fi
    done
    echo "error: no Debian archive in /etc/apt/sources.list or /etc/apt/sources.list.d" >&2
    return 1
}

# Packages the test container runs the service with (they are not the package's own
# dependencies, which come from the .deb itself).
_HANZO_PKGTEST_BASE="systemd,systemd-sysv,curl,procps"
_HANZO_PKGTEST_REPO="hanzo-pkgtest"

ensure_pkgtest_image() {
    local deb="$1"
    local deps key tag
    # What the .deb asks apt for decides what the image holds ready.
    deps="$(dpkg-deb -f "$deb" Depends Recommends)" || return 1
    key="$(printf 'bookworm\n%s\n%s\n' "$_HANZO_PKGTEST_BASE" "$deps" | sha256sum | cut -c1-16)"
    tag="$_HANZO_PKGTEST_REPO:bookworm-$key"
    if docker image inspect "$tag" >/dev/null 2>&1; then
        echo "$tag"
        return 0
    fi
    ensure_debootstrap || return 1
    local mirror root
    mirror="$(debian_mirror)" || return 1
    root="$(mktemp -d "${TMPDIR:-/var/tmp}/hanzo-pkgtest-root.XXXXXX")" || return 1
    echo "building the package test image $tag (debootstrap --variant=minbase bookworm)" >&2
    # Every step checked by hand: callers run this in `$(...) ||`, where `set -e` is off.
    (
        local PATH="$PATH:/usr/sbin:/sbin" log="$root.log"
        fail() {
            tail -n 20 "$log" >&2
            exit 1
        }
        _hanzo_as_root debootstrap --variant=minbase --include="$_HANZO_PKGTEST_BASE" \
            bookworm "$root" "$mirror" >"$log" 2>&1 || fail
        # The .deb's dependencies, resolved by apt as `apt-get install ./hanzo-node.deb`
        # will resolve them, downloaded into the image's apt cache and not installed: the
        # test then installs with no network at all (and finds out if Depends is wrong).
        cp "$deb" "$root/tmp/pkg.deb" || exit 1
        _hanzo_as_root chroot "$root" apt-get update -qq >>"$log" 2>&1 || fail
        _hanzo_as_root chroot "$root" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --download-only /tmp/pkg.deb >>"$log" 2>&1 || fail
        rm -f "$root/tmp/pkg.deb" "$root/var/cache/apt/archives/partial/"*
        # Older builds of this image are of no more use.
        docker image ls --format '{{.Repository}}:{{.Tag}}' "$_HANZO_PKGTEST_REPO" |
            xargs -r docker image rm >/dev/null 2>&1
        tar -C "$root" -c . | docker import - "$tag" >/dev/null || exit 1
    )
    local status=$?
    _hanzo_as_root rm -rf "$root" "$root.log"
    [ "$status" -eq 0 ] || {
        echo "error: could not build the package test image" >&2
        return 1
    }
    echo "$tag"
}

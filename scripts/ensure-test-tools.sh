#!/usr/bin/env bash
# Make sure the tools the tests use are present: what builds local base images, `hey`, and
# systemd-analyze; Pebble (a local ACME CA); Chromium (the dashboard's browser tests).
#
# No container registry can be reached from these machines, so the tests make their own base
# images: a static busybox (`FROM scratch` + /bin/busybox, a 2 MB image with an HTTP server) and
# a debootstrap'ed Debian with Python. On Debian as root the missing packages are installed;
# elsewhere the script names what is missing and exits 1. Quiet when everything is present.
set -euo pipefail

log() { printf 'ensure-test-tools: %s\n' "$*" >&2; }

is_debian() { [ -r /etc/debian_version ] && command -v dpkg-query >/dev/null 2>&1; }

# A busybox that runs in an empty (FROM scratch) image must be statically linked.
have_static_busybox() {
    if is_debian; then
        dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'
        return
    fi
    local bb
    bb="$(command -v busybox 2>/dev/null || true)"
    [ -n "$bb" ] || return 1
    if command -v ldd >/dev/null 2>&1 && ldd "$bb" >/dev/null 2>&1; then
        return 1  # dynamically linked
    fi
    return 0
}

have_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ]
}

missing=()
have_static_busybox || missing+=(busybox-static)
have_debootstrap || missing+=(debootstrap)
# The load generator of the replica tests (rollouts, autoscaling): Debian's `hey`.
command -v hey >/dev/null 2>&1 || missing+=(hey)
# `systemd-analyze verify` checks the units `slipway service install` writes (Debian's systemd
# package; no systemd needs to run).
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# The ACME CA of the HTTPS tests (tests/e2e/test_https.py): Let's Encrypt's Pebble, with its
# DNS server pebble-challtestsrv (one Debian package).
{ command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1; } \
    || missing+=(pebble)
# The browser the dashboard's tests drive headless through Playwright (executable_path):
# Debian's own, since Playwright's browser downloads need the internet.
{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } \
    || missing+=(chromium)

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! is_debian || ! command -v apt-get >/dev/null 2>&1; then
    log "missing: ${missing[*]}"
    log "install them (Debian/Ubuntu: apt-get install -y ${missing[*]}; elsewhere a statically"
    log "linked busybox on PATH and debootstrap), or run this script as root on Debian."
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log "installing ${missing[*]} ..."
if ! apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update >/dev/null 2>&1 || true
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
        log "could not install ${missing[*]} with apt-get."
        exit 1
    fi
fi

#!/usr/bin/env bash
# Make sure python3 (3.11 or newer) can create virtual environments.
#
# Debian splits venv support into python3-venv; on Debian as root it is installed when missing.
# Elsewhere the script says what to install. Quiet when all is well.
set -euo pipefail

log() { printf 'ensure-python: %s\n' "$*" >&2; }
PYTHON="${PYTHON:-python3}"

is_debian_root() {
    [ "$(id -u)" -eq 0 ] && [ -r /etc/debian_version ] && command -v apt-get >/dev/null 2>&1
}

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 \
        || { apt-get update >/dev/null 2>&1 || true; apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    if is_debian_root; then
        log "installing python3 ..."
        apt_install python3 python3-venv
    else
        log "python3 is missing: install Python 3.11 or newer."
        exit 1
    fi
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    log "$("$PYTHON" --version 2>&1) is too old: Slipway needs Python 3.11 or newer."
    exit 1
fi

probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
if ! "$PYTHON" -m venv "$probe/venv" >/dev/null 2>&1; then
    if is_debian_root; then
        log "installing python3-venv ..."
        apt_install python3-venv
    else
        log "'$PYTHON -m venv' does not work: install your distribution's python3-venv package."
        exit 1
    fi
fi

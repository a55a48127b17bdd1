#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine.
#
# Quiet and exit 0 when `docker info` already answers. Otherwise, on Debian as root, install
# Debian's docker.io when dockerd is missing and start dockerd by hand (these machines have no
# systemd), then wait up to 30 s for it to answer. Anywhere else, say what to install and exit 1.
#
# Debian's client (/usr/bin/docker, 20.10) is tried first: a newer client without the buildx
# plugin may come first on PATH, and Slipway drives the engine's BuildKit through Debian's client.
set -euo pipefail

DEADLINE_SECONDS=30
DOCKERD_LOG=/var/log/dockerd.log

log() { printf 'ensure-docker: %s\n' "$*" >&2; }

# Prints the client that answers (first of /usr/bin/docker, docker on PATH); fails if none does.
answering_client() {
    local client
    for client in /usr/bin/docker docker; do
        if command -v "$client" >/dev/null 2>&1 \
            && timeout 10 "$client" info >/dev/null 2>&1; then
            printf '%s\n' "$client"
            return 0
        fi
    done
    return 1
}

if answering_client >/dev/null; then
    exit 0
fi

is_debian() { [ -r /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; }

if [ "$(id -u)" -ne 0 ] || ! is_debian; then
    log "no Docker engine answers (tried '/usr/bin/docker info' and 'docker info')."
    if is_debian; then
        log "as root, run this script again (it installs docker.io and starts dockerd), or:"
        log "  apt-get install -y docker.io && dockerd >/var/log/dockerd.log 2>&1 &"
    fi
    log "install Docker Engine (https://docs.docker.com/engine/install/) and start it,"
    log "then make sure 'docker info' works for this user."
    exit 1
fi

dockerd_path() {
    command -v dockerd 2>/dev/null || { [ -x /usr/sbin/dockerd ] && echo /usr/sbin/dockerd; } \
        || { [ -x /usr/bin/dockerd ] && echo /usr/bin/dockerd; } || true
}

if [ -z "$(dockerd_path)" ]; then
    log "dockerd is missing: installing Debian's docker.io ..."
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends docker.io >/dev/null 2>&1; then
        # The package lists may be missing or stale on a fresh machine.
        apt-get update >/dev/null 2>&1 || true
        if ! apt-get install -y --no-install-recommends docker.io >/dev/null; then
            log "could not install docker.io with apt-get."
            log "install Docker Engine (https://docs.docker.com/engine/install/) and start it."
            exit 1
        fi
    fi
fi

DOCKERD="$(dockerd_path)"
if [ -z "$DOCKERD" ]; then
    log "docker.io is installed but no dockerd binary was found."
    exit 1
fi

# A dockerd that is still starting up (or was started by someone else) is waited for, not
# doubled: a second daemon on the same socket and data root would fail anyway.
if [ -S /var/run/docker.sock ] && [ -r /var/run/docker.pid ] \
    && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    log "dockerd (pid $(cat /var/run/docker.pid)) is running but not answering yet; waiting ..."
else
    log "starting dockerd (log: $DOCKERD_LOG) ..."
    setsid "$DOCKERD" --host unix:///var/run/docker.sock >>"$DOCKERD_LOG" 2>&1 < /dev/null &
fi

deadline=$(( $(date +%s) + DEADLINE_SECONDS ))
while [ "$(date +%s)" -lt "$deadline" ]; do
    if client="$(answering_client)"; then
        log "Docker engine answers ($client)."
        exit 0
    fi
    sleep 0.5
done

log "dockerd did not answer 'docker info' within ${DEADLINE_SECONDS} s. Last lines of $DOCKERD_LOG:"
tail -n 20 "$DOCKERD_LOG" >&2 || true
exit 1

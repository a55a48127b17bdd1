"""Provisioning one Postgres database and role per deployment on the admin cluster.

The role owns its database and nothing else; CONNECT is revoked from PUBLIC so no other
deployment's role can open it (the embedded cluster's pg_hba also allows a role only the
database of its own name), and limits keep one app from exhausting the cluster: a CONNECTION
LIMIT by deployment type (the embedded cluster's max_connections leaves the platform its own
reserved slots whatever the roles hold: app/server/embedded/_postgres.py), a `temp_file_limit` no
role can lift (a superuser-only setting), and a default `statement_timeout` that ends a
runaway query (a role may still SET its own for a session: a default, not a bound).
Statements are composed with psycopg.sql, never by formatting. The password never reaches the
server: Slipway computes the SCRAM-SHA-256 verifier itself, so not even a failed, logged
`CREATE ROLE` statement holds it.

psycopg (with its bundled libpq, ~6 MiB) is imported at the first statement, not with the
platform: a host whose deployments have no database never loads it (issue 22).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from sqlmodel import col, select

from app.kernel.db import SessionFactory
from app.kernel.errors import DatabaseError
from app.kernel.models import Database, Deployment
from app.kernel.ports import DatabaseLogin, DatabaseProvisioner
from manifests.containers import DeploymentType

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT_SECONDS = 10


def connect_as(
    login: DatabaseLogin,
    host: str,
    port: int,
    *,
    application_name: str,
    connect_timeout: int,
    options: str | None = None,
) -> psycopg.Connection[tuple[object, ...]]:
    """A session of a deployment's own role on its own database, in autocommit: what Slipway
    does inside a tenant's database (count its runs, watch its restore) it does with that
    tenant's rights, never the cluster admin's. Raises psycopg.Error."""
    import psycopg

    return psycopg.connect(
        host=host,
        port=port,
        user=login.role,
        password=login.password,
        dbname=login.name,
        connect_timeout=connect_timeout,
        application_name=application_name,
        autocommit=True,
        options=options,  # None: left out of the connection string
    )


@dataclass(frozen=True)
class RoleLimits:
    """Per-role settings applied with ALTER ROLE ... SET on every provisioning (and to every
    existing role at worker start), so changing a setting reaches existing deployments."""

    statement_timeout_ms: int = 5 * 60 * 1000
    temp_file_limit_kb: int = 1024 * 1024


SCRAM_ITERATIONS = 4096
"""Postgres's own default (scram_iterations)."""


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for `password` (RFC 5802, RFC 7677).

    Slipway's passwords are URL-safe ASCII, which SASLprep leaves as they are.
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


class PostgresProvisioner:
    def __init__(
        self, admin_url: str, container_host: str, limits: RoleLimits | None = None
    ) -> None:
        self._admin_url = admin_url
        self._container_host = container_host
        self._limits = limits or RoleLimits()
        parts = urlsplit(admin_url)
        self._port = parts.port or 5432

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        import psycopg

        try:
            return psycopg.connect(
                self._admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
            )
        except psycopg.Error as exc:
            host = urlsplit(self._admin_url).hostname
            first_line = str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
            raise DatabaseError(
                f"cannot reach the Postgres cluster for deployment databases at "
                f"{host}:{self._port}: {first_line}"
            ) from None

    def ensure(self, name: str, role: str, password: str, *, connection_limit: int) -> None:
        """Create role and database when missing; reset the password to the stored one."""
        import psycopg
        from psycopg import sql

        try:
            with self._connect() as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)
                ).fetchone()
                verb = "ALTER" if exists else "CREATE"
                conn.execute(
                    sql.SQL(
                        verb + " ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                        "NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {} PASSWORD {}"
                    ).format(
                        sql.Identifier(role),
                        sql.Literal(connection_limit),
                        sql.Literal(scram_verifier(password)),
                    )
                )
                self._apply_limits(conn, role, connection_limit)
                if not conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                ).fetchone():
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(name), sql.Identifier(role)
                        )
                    )
                conn.execute(
                    sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name))
                )
                conn.execute(
                    sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                        sql.Identifier(name), sql.Identifier(role)
                    )
                )
        except psycopg.Error as exc:
            raise DatabaseError(
                f"could not create database {name}: {type(exc).__name__}"
                f" {getattr(exc.diag, 'message_primary', '') or ''}".rstrip()
            ) from None

    def limit(self, roles: Iterable[tuple[str, int]]) -> int:
        """Apply today's limits to existing roles, (role, connection limit) each, over one
        connection; a role that is gone is skipped. Returns how many were changed."""
        import psycopg

        done = 0
        try:
            with self._connect() as conn:
                for role, connection_limit in roles:
                    if conn.execute(
                        "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)
                    ).fetchone():
                        self._apply_limits(conn, role, connection_limit)
                        done += 1
        except psycopg.Error as exc:
            raise DatabaseError(
                f"could not apply the role limits: {type(exc).__name__}"
                f" {getattr(exc.diag, 'message_primary', '') or ''}".rstrip()
            ) from None
        return done

    def _apply_limits(
        self, conn: psycopg.Connection[tuple[object, ...]], role: str, connection_limit: int
    ) -> None:
        """Idempotent: the same ALTERs on every run."""
        from psycopg import sql

        identifier = sql.Identifier(role)
        conn.execute(
            sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(
                identifier, sql.Literal(connection_limit)
            )
        )
        conn.execute(
            sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(
                identifier, sql.Literal(self._limits.statement_timeout_ms)
            )
        )
        conn.execute(
            sql.SQL("ALTER ROLE {} SET temp_file_limit = {}").format(
                identifier, sql.Literal(self._limits.temp_file_limit_kb)
            )
        )

    def drop(self, name: str, role: str) -> None:
        import psycopg
        from psycopg import sql

        try:
            with self._connect() as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        except psycopg.Error as exc:
            raise DatabaseError(f"could not drop database {name}: {type(exc).__name__}") from None

    def container_uri(self, name: str, role: str, password: str) -> str:
        """The URI a deployment's containers use: the cluster as the bridge reaches it."""
        return (
            f"postgresql://{quote(role, safe='')}:{quote(password, safe='')}"
            f"@{self._container_host}:{self._port}/{quote(name, safe='')}"
        )


def reapply_role_limits(
    sessions: SessionFactory,
    provisioner: DatabaseProvisioner,
    connection_limits: Mapping[DeploymentType, int],
) -> int:
    """Give every provisioned role today's limits (run at worker start): roles made before
    a limit changed, or before limits existed, get them without waiting for a new database."""
    with sessions() as session:
        rows = session.exec(
            select(Database.role, Deployment.type)
            .join(Deployment, col(Deployment.id) == col(Database.deployment_id))
            .where(col(Database.provisioned_at).is_not(None))
        ).all()
    if not rows:
        return 0
    return provisioner.limit((role, connection_limits[DeploymentType(kind)]) for role, kind in rows)

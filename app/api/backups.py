"""The API over a deployment's database: dump it, restore into it, its stored backups.

Thin over app/backups/service.py. A dump holds every row of the deployment's data, so every
handler here wants a token that may change things (a read-only token or a signed link gets
403, even to read). Bodies stream both ways: a dump is sent as pg_dump writes it, an upload is
written to a private file as it arrives, never held in memory.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Stream
from pydantic import BaseModel

from app.access.tokens import Caller
from app.api.schemas import BackupView, Body
from app.backups.service import DatabaseBackups

DUMP_MEDIA_TYPE = "application/octet-stream"
UPLOAD_DISK_RESERVE_BYTES = 1024**3
"""An upload stops (507) rather than leave DATA_DIR's disk with less than this free."""


def full_tokens_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard: the data of a deployment goes only to a token that may change things."""
    caller = connection.user
    if not isinstance(caller, Caller) or caller.read_only:
        raise PermissionDeniedException(
            detail=f"the token {getattr(caller, 'name', '?')!r} is read-only: a deployment's "
            "database (its dump and backups) needs a token that is not"
        )


class RestoreBody(Body):
    confirm: str
    """The deployment's name: what its database holds now is replaced."""


class Restored(BaseModel):
    deployment_id: str
    restored_from: str
    message: str


class DatabaseController(Controller):
    path = "/deployments/{deployment_id:str}"
    guards = [full_tokens_only]

    @get("/database/dump", media_type=DUMP_MEDIA_TYPE)
    async def dump(
        self, deployment_id: FromPath[str], backups: NamedDependency[DatabaseBackups]
    ) -> Stream:
        """The live database in pg_dump's custom format (`pg_restore` reads it). pg_dump
        reads a snapshot: the app's reads and writes go on meanwhile."""
        chunks = await asyncio.to_thread(backups.stream, deployment_id)
        # The first chunk before the answer: a database that cannot be reached is an error
        # with its reason, not an empty 200.
        first = await asyncio.to_thread(next, chunks, b"")
        return Stream(
            itertools.chain([first], chunks),
            media_type=DUMP_MEDIA_TYPE,
            headers={"Content-Disposition": _attachment(f"{deployment_id}-{_stamp()}.dump")},
        )

    @post("/database/restore", request_max_body_size=None, status_code=200)
    async def restore(
        self,
        deployment_id: FromPath[str],
        request: Request[Any, Any, Any],
        backups: NamedDependency[DatabaseBackups],
        confirm: FromQuery[str] = "",
    ) -> Restored:
        """Replace the database with an uploaded custom-format archive (the body), in one
        transaction: a failed restore changes nothing. `confirm` is the deployment's name."""
        path = await asyncio.to_thread(backups.upload_path, deployment_id, confirm)
        try:
            await _spool(request.stream(), path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        await asyncio.to_thread(backups.restore_upload, deployment_id, confirm, path)
        return Restored(
            deployment_id=deployment_id,
            restored_from="upload",
            message="the database now holds what the archive held",
        )

    @get("/backups", sync_to_thread=True)
    def list_backups(
        self, deployment_id: FromPath[str], backups: NamedDependency[DatabaseBackups]
    ) -> list[BackupView]:
        """Newest first, failed ones too (with their error)."""
        return [BackupView.of(b) for b in backups.of(deployment_id)]

    @get("/backups/{backup_id:str}/archive", media_type=DUMP_MEDIA_TYPE)
    async def archive(
        self,
        deployment_id: FromPath[str],
        backup_id: FromPath[str],
        backups: NamedDependency[DatabaseBackups],
    ) -> Stream:
        """A stored backup's file: how a deleted deployment's last backup is taken away."""
        backup = await asyncio.to_thread(backups.get, deployment_id, backup_id)
        handle = await asyncio.to_thread(backups.path_of(backup).open, "rb")
        return Stream(
            _read(handle),
            media_type=DUMP_MEDIA_TYPE,
            headers={"Content-Disposition": _attachment(f"{deployment_id}-{backup.id}.dump")},
        )

    @post("/backups/{backup_id:str}/restore", status_code=200)
    async def restore_backup(
        self,
        deployment_id: FromPath[str],
        backup_id: FromPath[str],
        data: JSONBody[RestoreBody],
        backups: NamedDependency[DatabaseBackups],
    ) -> Restored:
        """Replace the database with a stored backup, in one transaction."""
        await asyncio.to_thread(backups.restore_backup, deployment_id, backup_id, data.confirm)
        return Restored(
            deployment_id=deployment_id,
            restored_from=backup_id,
            message=f"the database now holds what backup {backup_id} held",
        )


async def _spool(chunks: AsyncIterator[bytes], path: Path) -> None:
    """The upload into its private file as it arrives (the service made its folder 0700)."""
    with await asyncio.to_thread(_private, path) as out:
        async for chunk in chunks:
            await asyncio.to_thread(out.write, chunk)
            if shutil.disk_usage(path.parent).free < UPLOAD_DISK_RESERVE_BYTES:
                raise HTTPException(
                    status_code=507,
                    detail="the upload stopped: DATA_DIR's disk is nearly full",
                )


def _private(path: Path) -> IO[bytes]:
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _read(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(64 * 1024):
            yield chunk


def _stamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def _attachment(name: str) -> str:
    return f'attachment; filename="{name}"'

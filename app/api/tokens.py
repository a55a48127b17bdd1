"""/api/tokens: make, list and revoke API tokens (a token is shown once, when made);
/api/whoami: which token a request came with."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from app.access import tokens
from app.api.auth import caller_of
from app.api.schemas import CallerView, NewToken, NewTokenBody, TokenView
from app.kernel.db import SessionFactory
from app.kernel.ports import Clock


class TokenController(Controller):
    path = "/tokens"

    @get("/", sync_to_thread=True)
    def list_tokens(self, sessions: NamedDependency[SessionFactory]) -> list[TokenView]:
        with sessions() as session:
            return [TokenView.of(t) for t in tokens.list_tokens(session)]

    @post("/", status_code=HTTP_201_CREATED)
    async def create_token(
        self,
        data: JSONBody[NewTokenBody],
        sessions: NamedDependency[SessionFactory],
        clock: NamedDependency[Clock],
    ) -> NewToken:
        def create() -> NewToken:
            with sessions() as session:
                row, token = tokens.create_token(
                    session, data.name, clock(), read_only=data.read_only
                )
                return NewToken(**TokenView.of(row).model_dump(), token=token)

        return await asyncio.to_thread(create)

    @delete("/{name:str}", status_code=HTTP_200_OK)
    async def revoke_token(
        self,
        name: FromPath[str],
        sessions: NamedDependency[SessionFactory],
        clock: NamedDependency[Clock],
    ) -> TokenView:
        def revoke() -> TokenView:
            with sessions() as session:
                return TokenView.of(tokens.revoke_token(session, name, clock()))

        return await asyncio.to_thread(revoke)


@get("/whoami", sync_to_thread=False)
def whoami(request: Request[Any, Any, Any]) -> CallerView:
    """The caller's token, by name: what `slipway auth status` shows (a 401 before this says
    the token is not accepted at all)."""
    caller = caller_of(request)
    return CallerView(name=caller.name, read_only=caller.read_only)

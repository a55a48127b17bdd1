"""Calls that arrive while one is under way go together into the next: a group commit.

Under a burst of webhook deliveries, what each costs on its own (a thread hop and a commit for
the control plane, a round trip for Redis) is several times the work itself, and the two cores
are shared with the worker. The receiver's requests each await their own answer; a Batcher
hands them out once the batch holding theirs has finished, or that batch's error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 64
"""Items in one batch at most: a burst's worth, and still one short write."""


class Batcher(Generic[Item, Result]):
    """Runs `run` on the items submitted meanwhile, one batch at a time, in order; `run`
    returns one result per item, in the items' order. Lives on one event loop."""

    def __init__(
        self,
        run: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((item, answer))
        if self._runner is None:
            self._runner = loop.create_task(self._run_while_waiting())
        return await answer

    async def _run_while_waiting(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                try:
                    results = await self._run([item for item, _ in batch])
                except asyncio.CancelledError:  # the server is stopping
                    for _, answer in batch:
                        answer.cancel()
                    raise
                except Exception as exc:
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                for (_, answer), result in zip(batch, results, strict=True):
                    if not answer.done():  # its caller may have gone; the work is done
                        answer.set_result(result)
        finally:
            self._runner = None

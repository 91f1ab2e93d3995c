"""Micro-batching: concurrent callers' items collected into one batch call, run in one worker thread."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Pending(Generic[T, R]):
    items: list[T]
    future: asyncio.Future[list[R]] = field(repr=False)


class MicroBatcher(Generic[T, R]):
    """Collects items from concurrent callers into batches for one batch function, run in one worker thread.

    The first waiting request waits at most ``max_wait_ms`` for others; a batch closes early at ``max_batch``
    items (a request is never split, and one bigger than ``max_batch`` runs alone). Items are sorted by ``key``
    (e.g. length, so a batch pads little) before ``run_batch`` sees them; each caller gets its own results back.
    ``enabled=False`` runs one request at a time: the baseline that batching is measured against.

    Example:
        >>> batcher = MicroBatcher(lambda xs: [x.upper() for x in xs], max_batch=8, max_wait_ms=2, key=len)
        >>> asyncio.run(batcher.submit(["ab", "c"]))
        ['AB', 'C']
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        key: Callable[[T], int] | None = None,
        enabled: bool = True,
    ):
        self.run_batch, self.max_batch, self.max_wait = run_batch, max_batch, max_wait_ms / 1000
        self.key, self.enabled = key, enabled
        self.batches = self.items = 0  # run_batch calls and the items they carried: counters, so nothing grows
        self._queue: deque[_Pending[T, R]] = deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqtune-model")

    async def submit(self, items: list[T]) -> list[R]:
        """Queue ``items`` for the next batch and wait for their results (in the same order)."""
        if self._worker is None or self._worker.done():
            self._arrived = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._work())
        pending = _Pending(list(items), asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        assert self._arrived is not None  # set just above with the worker
        self._arrived.set()
        return await pending.future

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _next_batch(self) -> list[_Pending[T, R]]:
        assert self._arrived is not None
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        batch = [self._queue.popleft()]
        size = len(batch[0].items)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while self.enabled and size < self.max_batch:
            if self._queue:
                if size + len(self._queue[0].items) > self.max_batch:
                    break  # the next request waits for the next batch rather than overfill this one
                batch.append(self._queue.popleft())
                size += len(batch[-1].items)
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [p for p in await self._next_batch() if not p.future.done()]  # done: the caller went away
            items = [item for p in batch for item in p.items]
            if not items:
                continue
            order = sorted(range(len(items)), key=lambda i: self.key(items[i])) if self.key else range(len(items))
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [items[i] for i in order])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting caller, the worker lives on
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self.batches, self.items = self.batches + 1, self.items + len(items)
            unsorted: list[Any] = [None] * len(items)
            for pos, i in enumerate(order):
                unsorted[i] = results[pos]
            start = 0
            for p in batch:
                if not p.future.done():
                    p.future.set_result(unsorted[start : start + len(p.items)])
                start += len(p.items)

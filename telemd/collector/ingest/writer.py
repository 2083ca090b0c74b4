"""The one writer: a thread that owns every write to the store.

Requests hand their batches over and await a future; the thread takes
whatever has queued up while its previous transaction ran and commits it all
at once (group commit), so eight concurrent senders cost one commit, not
eight. The event loop never blocks on the database. Maintenance jobs (the
retention purge) run on the same thread, between groups.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from telemd.collector.ingest.records import Row
from telemd.collector.problems.rollups import Signed
from telemd.collector.store.base import Store

log = logging.getLogger("telemd.collector")
T = TypeVar("T")
# A group stops growing past this many rows, to bound one transaction's time.
MAX_GROUP_ROWS = 20_000


class _Job:
    __slots__ = ("future", "loop", "rows", "signed", "task")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        rows: Sequence[Row] | None,
        task: Callable[[], Any] | None,
        signed: Signed | None = None,
    ) -> None:
        self.loop = loop
        self.future = future
        self.rows = rows
        self.task = task
        self.signed = signed

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        def apply() -> None:
            if self.future.done():  # the request was cancelled meanwhile
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        self.loop.call_soon_threadsafe(apply)


class Writer:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="collector-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the queued jobs, then end the thread."""
        self._jobs.put(None)
        self._thread.join()

    async def insert(
        self, rows: Sequence[Row], signed: Signed | None = None
    ) -> tuple[dict[str, int], float]:
        """Store rows (record ids unique among them), with what `Store.sign` read of them.

        Return {record_id: id} of those that were new, and their received_at.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[dict[str, int], float]] = loop.create_future()
        self._jobs.put(_Job(loop, future, rows, None, signed))
        return await future

    async def call(self, task: Callable[[], T]) -> T:
        """Run `task` on the writer thread, between groups."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(loop, future, None, task))
        return await future

    def _run(self) -> None:
        pending: _Job | None = None
        while True:
            job = pending if pending is not None else self._jobs.get()
            pending = None
            if job is None:
                return
            if job.task is not None:
                self._run_task(job)
                continue
            group = [job]
            size = len(job.rows or ())
            while size < MAX_GROUP_ROWS:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None or more.task is not None:
                    pending = more
                    break
                group.append(more)
                size += len(more.rows or ())
            self._commit(group)

    def _run_task(self, job: _Job) -> None:
        assert job.task is not None
        try:
            job.settle(job.task())
        except Exception as exc:
            job.settle(error=exc)

    def _commit(self, group: list[_Job]) -> None:
        received_at = self.clock()
        try:
            stored = self.store.write(
                [job.rows or () for job in group], received_at, [job.signed for job in group]
            )
        except Exception as exc:
            if len(group) == 1:
                group[0].settle(error=exc)
                return
            # One bad batch must not fail its neighbours: retry them one by one.
            log.warning("group commit of %d batches failed (%s); retrying singly", len(group), exc)
            for job in group:
                self._commit([job])
            return
        for job, ids in zip(group, stored, strict=True):
            job.settle((ids, received_at))

"""Dynamic batching: a bounded queue, a batcher task and one model thread.

Requests wait in a queue of at most `max_queue` payloads. The batcher takes the oldest one and
gathers more until the batch holds `max_batch_size` payloads or the oldest has waited
`max_wait_ms`, then runs the batch in a single worker thread, so the event loop keeps serving
HTTP while the model computes. Results travel back with `call_soon_threadsafe`.

A batch the model fails on runs again one payload at a time (those that delivered nothing yet), so only the
payload at fault fails. A full queue first drops payloads nobody waits for any more before it answers 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from workloads.common.logs import log_event
from workloads.serve.backends import Backend
from workloads.serve.metrics import ServeMetrics


class QueueFullError(Exception):
    """The queue has no room; the client should retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the request queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


class ShuttingDownError(Exception):
    """The server is draining and takes no new work."""


class DeadlineExceededError(Exception):
    """The request's deadline passed before its batch started."""


@dataclass(eq=False)
class WorkItem:
    """One queued payload and the channels its result comes back on."""

    payload: object
    """What the backend runs."""
    enqueued_at: float
    """`time.monotonic()` at submission."""
    deadline: float
    """`time.monotonic()` after which nobody waits for the result."""
    future: asyncio.Future[object]
    """Resolves to the final result (or the backend's exception)."""
    events: asyncio.Queue[tuple[int, object, bool]] | None = None
    """For streaming: (event_index, partial or final value or exception, done) as each arrives."""
    event_index: int = 0
    """This payload's position in its request, tagging its events on the request's shared queue."""
    cancelled: bool = field(default=False)
    """Set by the waiter when it gives up; the backend drops the payload at its next step."""


class _Sink:
    """The `BatchSink` of one running batch: marshals worker-thread callbacks onto the loop."""

    def __init__(self, engine: BatchEngine, items: Sequence[WorkItem], loop: asyncio.AbstractEventLoop) -> None:
        self._engine, self._items, self._loop = engine, items, loop
        self.touched: set[int] = set()
        """Indexes of the payloads that delivered anything (so a rerun would repeat it to their waiter)."""

    def emit(self, index: int, value: object, *, done: bool) -> None:
        item = self._items[index]
        if not done and item.events is None:
            # Nobody streams this payload: skip the cross-thread wake-up a partial value would cost
            # (one per row per decode step, which on a busy event loop caps batched throughput).
            return
        self.touched.add(index)
        self._loop.call_soon_threadsafe(self._engine.deliver, item, value, done)

    def cancelled(self, index: int) -> bool:
        item = self._items[index]
        return item.cancelled or time.monotonic() > item.deadline

    def count_tokens(self, n: int) -> None:
        self._engine.metrics.generated_tokens.inc(n)


class BatchEngine:
    """Queues payloads for one backend and runs them in batches."""

    def __init__(self, backend: Backend, metrics: ServeMetrics, *, max_batch_size: int, max_wait_ms: float,
                 max_queue: int) -> None:
        self.backend = backend
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._pending: deque[WorkItem] = deque()
        self._arrived = asyncio.Event()
        self._running: Sequence[WorkItem] = ()
        self._accepting = True
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._batch_seconds = 0.05
        """Moving average of batch run time, for Retry-After estimates."""

    async def start(self) -> None:
        """Warm the model up in the worker thread, then start batching."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.backend.warm_up)
        self._task = asyncio.create_task(self._loop(), name="batcher")

    @property
    def queue_depth(self) -> int:
        """Payloads waiting for a batch."""
        return len(self._pending)

    def submit(self, payloads: Sequence[object], *, timeout_s: float,
               events: asyncio.Queue[tuple[int, object, bool]] | None = None) -> list[WorkItem]:
        """Queue all `payloads` or none: raises `QueueFullError` or `ShuttingDownError`.

        With `events`, partial values, final values and failures of every payload are also put
        on that queue, tagged with the payload's position in `payloads` (for streaming).
        """
        if not self._accepting:
            raise ShuttingDownError("the server is shutting down")
        if len(self._pending) + len(payloads) > self.max_queue:
            self._drop_abandoned()
        if len(self._pending) + len(payloads) > self.max_queue:
            raise QueueFullError(self.retry_after())
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        items = [
            WorkItem(payload, now, now + timeout_s, loop.create_future(), events, index)
            for index, payload in enumerate(payloads)
        ]
        self._pending.extend(items)
        self.metrics.queue_depth.set(len(self._pending))
        self._arrived.set()
        return items

    def _drop_abandoned(self) -> None:
        """Fail and remove queued payloads nobody waits for (client gone, deadline passed): they hold no slot."""
        now = time.monotonic()
        live: deque[WorkItem] = deque()
        for item in self._pending:
            if item.cancelled or item.future.done() or now > item.deadline:
                self._fail(item, DeadlineExceededError("the request's deadline passed while it was queued"))
            else:
                live.append(item)
        self._pending = live
        self.metrics.queue_depth.set(len(self._pending))

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained by one batch's worth, at least 1."""
        batches_ahead = len(self._pending) / self.max_batch_size
        return max(1, math.ceil(batches_ahead * self._batch_seconds))

    def deliver(self, item: WorkItem, value: object, done: bool) -> None:
        """Hand a value from the worker thread to the item's waiter (runs on the loop)."""
        if done and not item.future.done():
            item.future.set_result(value)
        if item.events is not None:
            item.events.put_nowait((item.event_index, value, done))

    async def drain(self, timeout_s: float) -> None:
        """Stop taking work, let queued and running batches finish for up to `timeout_s`, then stop."""
        self._accepting = False
        deadline = time.monotonic() + timeout_s
        while (self._pending or self._running) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for item in [*self._pending, *self._running]:
            item.cancelled = True
            self._fail(item, ShuttingDownError("the server shut down before this request ran"))
        self._pending.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _loop(self) -> None:
        while True:
            try:
                batch = await self._collect()
                if batch:
                    await self._execute(batch)
            except Exception as exc:  # the batcher must outlive any single bad batch
                log_event("batcher_error", error=repr(exc))

    async def _wait_for_arrival(self, timeout: float | None) -> bool:
        self._arrived.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._arrived.wait()
        except TimeoutError:
            return False
        return True

    async def _collect(self) -> list[WorkItem]:
        while not self._pending:
            await self._wait_for_arrival(None)
        batch: list[WorkItem] = []
        flush_at = self._pending[0].enqueued_at + self.max_wait_s
        while len(batch) < self.max_batch_size:
            if not self._pending:
                remaining = flush_at - time.monotonic()
                if remaining <= 0 or not await self._wait_for_arrival(remaining):
                    break
                continue
            item = self._pending[0]
            if item.cancelled or item.future.done() or time.monotonic() > item.deadline:
                self._pending.popleft()
                self._fail(item, DeadlineExceededError("the request's deadline passed while it was queued"))
                continue
            if not self.backend.can_join([i.payload for i in batch], item.payload):
                break
            batch.append(self._pending.popleft())
        self.metrics.queue_depth.set(len(self._pending))
        return batch

    async def _execute(self, batch: list[WorkItem]) -> None:
        self._running = batch
        try:
            failure = await self._run(batch)
            if failure is not None:
                exc, touched = failure
                # One bad payload must not fail its batch mates: each one that has reported nothing yet (a rerun
                # would repeat it) runs again alone, so only the payload at fault fails.
                alone = [item for i, item in enumerate(batch) if i not in touched] if len(batch) > 1 else []
                for item in batch:
                    if item not in alone:
                        self._fail(item, exc)
                for item in alone:
                    if not item.future.done() and not item.cancelled:
                        again = await self._run([item])
                        if again is not None:
                            self._fail(item, again[0])
        finally:
            self._running = ()
        for item in batch:
            self._fail(item, RuntimeError("the backend finished the batch without a result for this request"))

    async def _run(self, items: list[WorkItem]) -> tuple[Exception, set[int]] | None:
        """Run `items` as one batch; on a model failure, the exception and which items had reported anything."""
        loop = asyncio.get_running_loop()
        self.metrics.batch_size.observe(len(items))
        sink = _Sink(self, items, loop)
        started = time.monotonic()
        try:
            await loop.run_in_executor(self._executor, self.backend.run_batch, [i.payload for i in items], sink)
        except Exception as exc:  # a model failure fails its payloads, never the batcher
            log_event("batch_failed", size=len(items), error=repr(exc))
            return exc, sink.touched
        finally:
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * (time.monotonic() - started)
        return None

    @staticmethod
    def _fail(item: WorkItem, exc: BaseException) -> None:
        if item.future.done():
            return
        item.future.set_exception(exc)
        # The waiter may have left already; reading the exception keeps asyncio from logging it as lost.
        item.future.exception()
        if item.events is not None:
            item.events.put_nowait((item.event_index, exc, True))

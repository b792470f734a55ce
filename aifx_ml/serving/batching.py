"""Dynamic batching: many callers, one worker, one call for everything that is waiting.

When requests arrive one at a time each is handled at once, alone; under load the ones that
arrive while the worker is busy are handled together on its next round. Model calls and
commits both cost nearly the same for one item as for ten, so throughput grows with load
instead of latency. A caller gets its own result (or the exception of its round).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Runs `work(items) -> results` (same length, same order) on a background thread."""

    def __init__(
        self,
        work: Callable[[Sequence[Item]], Sequence[Result]],
        name: str,
        max_batch: int = 64,
        linger: float = 0.0,
    ) -> None:
        # `linger`: seconds the worker waits for more items before a round that is not full
        # (for work whose cost is mostly per round, like a commit, and not waited on).
        self._work, self._max, self._linger = work, max_batch, linger
        self._queue: list[tuple[Item, Future[Result]]] = []
        self._ready = threading.Condition()
        self._closed = False
        self._busy = False  # a round (the worker's or a caller's own) is running
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> Result:
        """Hand `item` to the worker and wait for its result."""
        return self.submit_many([item])[0]

    def submit_many(self, items: Sequence[Item]) -> list[Result]:
        """Several items, all in the same or following rounds; results in order.

        With nothing running and nothing waiting, the caller does the work itself: a lone
        request pays no hand-over to the worker thread.
        """
        futures = self.enqueue(items, inline_if_idle=True)
        if futures is None:
            return list(self._run_inline(items))
        return [f.result() for f in futures]

    def enqueue(
        self, items: Sequence[Item], inline_if_idle: bool = False
    ) -> list[Future[Result]] | None:
        """Queue items for the worker and return their futures without waiting (None: the
        caller may run them itself — idle batcher and `inline_if_idle`, or a closed one)."""
        futures: list[Future[Result]] = [Future() for _ in items]
        with self._ready:
            if self._closed or (inline_if_idle and not self._queue and not self._busy):
                if not self._closed:
                    self._busy = True
                return None
            self._queue.extend(zip(items, futures, strict=True))
            self._ready.notify()
        return futures

    def flush(self) -> None:
        """Wait until everything queued so far has been handled."""
        with self._ready:
            pending = [f for _, f in self._queue]
        for future in pending:
            future.exception()
        with self._ready:
            while self._busy:
                self._ready.wait(0.01)

    def _run_inline(self, items: Sequence[Item]) -> Sequence[Result]:
        try:
            return self._work(items)
        finally:
            with self._ready:
                if not self._closed:
                    self._busy = False
                self._ready.notify_all()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._ready:
                while (not self._queue or self._busy) and not self._closed:
                    self._ready.wait()
                if self._closed and not self._queue:
                    return
                deadline = time.monotonic() + self._linger
                while not self._closed and len(self._queue) < self._max:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._ready.wait(left)
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                self._busy = True
            try:
                results = self._work([item for item, _ in batch])
            except BaseException as exc:  # noqa: BLE001  (handed to every caller of the round)
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    future.set_result(result)
            finally:
                with self._ready:
                    self._busy = False
                    self._ready.notify_all()

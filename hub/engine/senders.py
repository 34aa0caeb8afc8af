"""The sender threads: an executor that runs the most urgent queued page first.

A hub worker sends pages on ``HAVEN_API_CONNECTIONS`` threads, each on its own
keep-alive connection (hub.edges.twilio_transport). A standard ThreadPoolExecutor runs
its queue first in, first out: with hundreds of alarms live and the provider slow, an
emergency's round queued behind an assist's waited for it. :class:`PrioritySenders` runs
queued work by rank (hub.core.urgency: emergency 0 ... test 4), first in, first out
within a rank; nothing waits while a thread is free.

Wiring: made by hub.app.runner (``senders``) and given to the AlarmService; the pager
and the escalator queue pages with :func:`submit_ranked` (a plain ``Executor``, as tests
give, runs them in its own order); everything else calls ``submit`` (rank
:data:`hub.core.urgency.OTHER_RANK`). ``shutdown(wait=True)`` lets queued work finish,
as the runner expects on SIGTERM; ``submit`` after it raises ``RuntimeError``.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
from concurrent.futures import Executor, Future
from typing import Any, Callable

from hub.core.urgency import OTHER_RANK


class PrioritySenders(Executor):
    """``max_workers`` threads (started as work arrives, as ThreadPoolExecutor does: a
    new one only when none is idle) taking queued work lowest rank first."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "sender"):
        if max_workers < 1:
            raise ValueError("the sender pool needs at least one thread")
        self.max_workers, self._prefix = max_workers, thread_name_prefix
        #: (rank, sequence, future, fn, args, kwargs); the sequence keeps FIFO within a
        #: rank and makes every entry unique (futures are never compared).
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._shut = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` at rank :data:`~hub.core.urgency.OTHER_RANK`."""
        return self.submit_ranked(OTHER_RANK, fn, *args, **kwargs)

    def submit_ranked(self, rank: int, fn: Callable[..., Any], /, *args: Any,
                      **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` once no queued work of a lower rank waits (and,
        within ``rank``, after what was queued before it)."""
        future: Future = Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot queue a send after the sender pool shut down")
            self._queue.put((rank, next(self._seq), future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self.max_workers:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self._prefix}_{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            _, _, future, fn, args, kwargs = self._queue.get()
            if future is None:  # shutdown's marker, queued after all work
                return
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - the future carries it
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs  # drop references while idle
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new work; queued work still runs (unless ``cancel_futures``), then the
        threads end; with ``wait``, returns once they have."""
        with self._lock:
            self._shut = True
            if cancel_futures:
                while True:
                    try:
                        entry = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if entry[2] is not None:
                        entry[2].cancel()
            for _ in self._threads:  # sorts after any rank: every queued send runs first
                self._queue.put((math.inf, next(self._seq), None, None, None, None))
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()


def submit_ranked(senders: Executor, rank: int, fn: Callable[..., Any], /, *args: Any,
                  **kwargs: Any) -> Future:
    """Queue ``fn`` on ``senders`` at ``rank`` if it orders by rank (:class:`PrioritySenders`),
    else with its own ``submit``."""
    if isinstance(senders, PrioritySenders):
        return senders.submit_ranked(rank, fn, *args, **kwargs)
    return senders.submit(fn, *args, **kwargs)

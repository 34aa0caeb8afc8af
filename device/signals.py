"""Signals turned into plain values for the main thread to wait on.

A Python signal handler runs on the main thread between two bytecodes, possibly while
that thread holds a lock inside paho, ``threading.Event`` or ``logging``. Calling back
into such code from the handler can deadlock: a hub once hung on SIGTERM because its
handler called ``client.disconnect()`` while the main thread, inside paho's network
loop, held the lock that call needed. So the handler here only writes the signal's
number to a pipe (a syscall, no Python locks) and the main thread, which does nothing
else, reads it and acts outside any handler.

Wiring: create :class:`SignalPipe` on the main thread before starting workers, run the
real work on other threads, and loop on :meth:`SignalPipe.wait` in the main thread.
"""

from __future__ import annotations

import os
import select
import signal


class SignalPipe:
    """Catches ``signums`` (default SIGTERM and SIGINT) and hands them to :meth:`wait`."""

    def __init__(self, *signums: int) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)  # a burst of signals must never block the handler
        self._previous = {}
        for signum in signums or (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._caught)

    def _caught(self, signum: int, frame) -> None:
        try:
            os.write(self._write, bytes([signum]))
        except BlockingIOError:
            pass  # the pipe already holds unread signals; one more adds nothing

    def raise_signal(self, signum: int) -> None:
        """Queue ``signum`` as if it had been delivered (for threads that decide to stop)."""
        self._caught(signum, None)

    def wait(self, timeout_s: float | None = None) -> int | None:
        """The next signal's number, or None after ``timeout_s`` seconds without one."""
        ready, _, _ = select.select([self._read], [], [], timeout_s)
        if not ready:
            return None
        return os.read(self._read, 1)[0]

    def close(self) -> None:
        """Restore the previous handlers and close the pipe."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        os.close(self._read)
        os.close(self._write)

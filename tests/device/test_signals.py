"""device/signals.py: a signal becomes a value the main thread reads, outside the handler."""

from __future__ import annotations

import os
import signal
import threading
import time

from device.signals import SignalPipe


def test_a_delivered_signal_is_returned_by_wait_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGUSR1)
    pipe = SignalPipe(signal.SIGUSR1)
    try:
        assert pipe.wait(0.01) is None
        os.kill(os.getpid(), signal.SIGUSR1)
        assert pipe.wait(2) == signal.SIGUSR1
        assert pipe.wait(0.01) is None
    finally:
        pipe.close()
    assert signal.getsignal(signal.SIGUSR1) is before


def test_a_thread_can_queue_a_stop_and_signals_keep_their_order():
    pipe = SignalPipe(signal.SIGUSR1, signal.SIGUSR2)
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        threading.Timer(0.05, pipe.raise_signal, args=(signal.SIGUSR1,)).start()
        assert pipe.wait(2) == signal.SIGUSR2
        started = time.monotonic()
        assert pipe.wait(2) == signal.SIGUSR1
        assert time.monotonic() - started < 1.5
    finally:
        pipe.close()


def test_a_storm_of_signals_never_blocks_the_handler():
    pipe = SignalPipe(signal.SIGUSR1)
    try:
        for _ in range(100_000 // 64):
            for _ in range(64):
                pipe.raise_signal(signal.SIGUSR1)  # more than a pipe buffer holds
        assert pipe.wait(1) == signal.SIGUSR1
    finally:
        pipe.close()

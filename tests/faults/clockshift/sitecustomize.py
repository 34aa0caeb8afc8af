"""Shifts a test process's wall clock: ``time.time()`` plus the seconds in a file.

Put this directory first on ``PYTHONPATH`` and name the file in
``HAVEN_TEST_CLOCK_SHIFT_FILE``; Python imports ``sitecustomize`` at start-up, before
the hub binds ``time.time`` as its clock. Writing ``3600`` to the file steps the
process's wall clock an hour ahead within 50 ms, as an NTP step would;
``time.monotonic()`` is untouched, as on a real machine. The hub reads wall time only
through ``time.time()``, so this is its whole clock (no root, no libfaketime).
"""

import os
import time

_FILE = os.environ.get("HAVEN_TEST_CLOCK_SHIFT_FILE")

if _FILE:
    _real_time = time.time
    _state = {"offset": 0.0, "next_read": 0.0}

    def _shifted_time() -> float:
        now = time.monotonic()
        if now >= _state["next_read"]:
            _state["next_read"] = now + 0.05
            try:
                with open(_FILE) as f:
                    _state["offset"] = float(f.read().strip() or 0)
            except (OSError, ValueError):
                pass
        return _real_time() + _state["offset"]

    time.time = _shifted_time

"""systemd notifications (``Type=notify``, ``WatchdogSec=``) without a dependency.

Writes ``READY=1``, ``WATCHDOG=1`` or ``STATUS=...`` to the datagram socket named
by ``$NOTIFY_SOCKET`` (an abstract socket when it starts with ``@``). Outside
systemd the variable is unset and every call is a no-op that returns False.
"""

from __future__ import annotations

import os
import socket


def notify(message: str, socket_path: str | None = None) -> bool:
    path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False


def watchdog_interval_s() -> float | None:
    """Half of systemd's watchdog timeout (``$WATCHDOG_USEC``), the usual ping period."""
    usec = os.environ.get("WATCHDOG_USEC")
    try:
        return int(usec) / 2_000_000 if usec else None
    except ValueError:
        return None

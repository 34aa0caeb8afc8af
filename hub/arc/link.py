"""One DC-09 message to one receiver and the receiver's answer, over stdlib sockets.

No library speaks the transmitter side of DC-09 (pysiaalarm and the like are receivers),
so this is ours: a TCP connection per message (connect, send, read up to the answer's
CR, close) or one UDP datagram and its reply. ``timeout_s`` bounds the whole exchange;
a refused connection, a timeout or bytes that are not an answer all read as ``None``
("no answer"): the sender resends, then tries the backup.
"""

from __future__ import annotations

import socket
import time

from hub.core.arc import Receiver
from hub.arc.dc09 import Answer, read_answer

#: The longest answer read, in bytes (an encrypted ACK is ~100).
MAX_ANSWER = 4096


def exchange(receiver: Receiver, message: bytes, timeout_s: float) -> Answer | None:
    """Send ``message`` to ``receiver`` and return its answer, or ``None`` for none
    within ``timeout_s`` seconds (or one that fails its CRC)."""
    try:
        if receiver.protocol == "udp":
            raw = _udp(receiver, message, timeout_s)
        else:
            raw = _tcp(receiver, message, timeout_s)
    except OSError:
        return None
    return read_answer(raw) if raw else None


def _tcp(receiver: Receiver, message: bytes, timeout_s: float) -> bytes:
    deadline = time.monotonic() + timeout_s
    with socket.create_connection((receiver.host, receiver.port), timeout=timeout_s) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(message)
        got = b""
        while b"\r" not in got and len(got) < MAX_ANSWER:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            chunk = sock.recv(MAX_ANSWER)
            if not chunk:
                break
            got += chunk
        return got


def _udp(receiver: Receiver, message: bytes, timeout_s: float) -> bytes:
    family = socket.getaddrinfo(receiver.host, receiver.port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family[0], socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(family[4])
        sock.send(message)
        return sock.recv(MAX_ANSWER)

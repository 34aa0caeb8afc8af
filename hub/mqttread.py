"""paho's reads made cheap: one ``recv`` for many MQTT packets, property tables built once.

paho reads each packet with a ``recv`` per piece: its first byte, each byte of its
remaining length, then its body; four system calls for an alarm or a heartbeat, plus
the hub's own check whether more is waiting. :class:`BufferedRecv` stands in for paho's
``_sock_recv``: it asks the socket for up to ``CHUNK`` bytes at a time and serves paho's
small reads from them, so a burst read in one call costs one system call, and "is more
waiting?" is answered from the buffer first.

The buffer belongs to one socket: when paho reconnects (a new socket object), bytes
left from the old connection are dropped, never parsed as the new one's. paho's own
``_sock_recv`` still does each real read, so its TLS and "would block" handling stay.

Wiring (hub.mqtt): ``recv = BufferedRecv(client)``; ``client._sock_recv = recv.recv`` on
the instance (paho 2.x calls ``self._sock_recv(n)`` from ``_packet_read``; pinned < 3);
the reader calls :meth:`BufferedRecv.pending` before going back to ``select``, and keeps
reading while it is true: bytes already buffered never wake ``select``.

Each PUBLISH received over MQTT v5 also gets a ``paho.mqtt.properties.Properties``, whose
constructor builds its three constant tables (~40 property names, their types and
packets) anew: ~13 µs per message, a quarter of the MQTT thread's time in a heartbeat
flood. :class:`SharedTableProperties` builds them once and shares them (paho only reads
them); :func:`share_property_tables` makes paho's PUBLISH decoder use it.
"""

from __future__ import annotations

import logging

from paho.mqtt.properties import Properties

log = logging.getLogger("haven.mqtt")

#: The most bytes asked of the socket in one ``recv``.
CHUNK = 65536


class BufferedRecv:
    def __init__(self, client):
        self._client = client
        self._real_recv = client._sock_recv  # paho's, bound to the client
        self._sock = None
        self._data, self._pos = b"", 0

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes, from the buffer or one read of the socket; raises as
        paho's ``_sock_recv`` (BlockingIOError when nothing is waiting); ``b""`` at EOF."""
        sock = self._client._sock
        if sock is not self._sock:  # a new connection: nothing of the old one is kept
            self._sock, self._data, self._pos = sock, b"", 0
        if self._pos >= len(self._data):
            data = self._real_recv(CHUNK)
            if len(data) <= bufsize:
                return data
            self._data, self._pos = data, 0
        end = self._pos + bufsize
        chunk = self._data[self._pos:end]
        self._pos = min(end, len(self._data))
        return chunk

    def pending(self) -> bool:
        """Bytes of the current connection are buffered, not yet read by paho."""
        return self._pos < len(self._data) and self._client._sock is self._sock


class SharedTableProperties(Properties):
    """paho's ``Properties``, with its constant tables shared by every instance."""

    _tables: dict | None = None

    def __init__(self, packetType):
        tables = SharedTableProperties._tables
        if tables is None:
            made = Properties(packetType)
            tables = SharedTableProperties._tables = {
                name: getattr(made, name) for name in _TABLES}
        object.__setattr__(self, "packetType", packetType)
        for name, table in tables.items():
            object.__setattr__(self, name, table)

    def clear(self) -> None:
        """Drop every property set (paho's walks all ~40 names with ``hasattr``)."""
        for name in [n for n in vars(self) if n not in _FIXED]:
            delattr(self, name)


_TABLES = ("types", "names", "properties")
_FIXED = frozenset(("packetType", *_TABLES))


def share_property_tables() -> bool:
    """Make paho's PUBLISH decoder (``paho.mqtt._packet``) build its properties with
    :class:`SharedTableProperties`; ``False`` (and left as it is) if this paho has no
    such decoder."""
    try:
        from paho.mqtt import _packet
    except ImportError:
        return False
    if getattr(_packet, "Properties", None) not in (Properties, SharedTableProperties):
        log.debug("paho.mqtt._packet has no Properties to replace: left as it is")
        return False
    _packet.Properties = SharedTableProperties
    return True

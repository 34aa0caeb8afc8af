"""Socket settings every Haven MQTT client needs (stdlib only; used by device and hub).

Nagle's algorithm holds back a small write while an earlier one is unacknowledged,
and the peer delays its ACK by up to 40 ms. An MQTT client that answers a
message from its callback writes twice (its reply, then paho's PUBACK), so
each confirmation hop can wait ~40 ms. Measured on loopback: a QoS 1 echo
round trip took 88 ms with Nagle and well under 1 ms without. The broker side
needs ``set_tcp_nodelay true`` in mosquitto.conf as well.
"""

from __future__ import annotations

import socket


def tcp_nodelay(client, userdata, sock) -> None:
    """paho ``on_socket_open`` callback: turn Nagle off on the new connection."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not TCP (a unix socket, a websocket wrapper)
        pass

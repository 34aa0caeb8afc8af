"""Socket settings every Haven MQTT client needs (used by device and hub), and the
device's client to its broker (TLS and credentials from its config).

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


def broker_client(broker, client_id: str):
    """A paho MQTT v5 client for ``broker`` (a ``device.config.BrokerConfig``): its TLS
    files and username/password file applied, Nagle off. Raises ``OSError`` if the
    password file cannot be read."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    if broker.tls:
        client.tls_set(ca_certs=broker.ca_file, certfile=broker.cert_file,
                       keyfile=broker.key_file)
    if broker.username:
        password = None
        if broker.password_file:
            with open(broker.password_file, encoding="utf-8") as f:
                password = f.read().strip()
        client.username_pw_set(broker.username, password)
    client.on_socket_open = tcp_nodelay
    return client


def reachable(host: str, port: int, *, timeout: float) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout`` seconds (the
    firmware's probe of its first broker while it uses another: device.brokers)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False

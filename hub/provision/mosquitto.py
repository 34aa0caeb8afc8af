"""mosquitto's Haven drop-in and ACL file, as text (pure functions).

The drop-in goes to ``/etc/mosquitto/conf.d/haven.conf``; Debian's main
``/etc/mosquitto/mosquitto.conf`` already turns persistence on and sets its
location, pid file and log (mosquitto 2.0 refuses a second
``persistence_location``), so the drop-in leaves those to it.

Identities come from client certificates: ``use_identity_as_username`` makes
the certificate's CN the username, and ``use_username_as_clientid`` makes it
the client id too, so one device cannot take over another's session by
connecting with its client id. The ACL has one ``user`` block per identity
(no ``pattern`` lines, which would apply to every user): removing a block and
reloading (SIGHUP) takes a device's topics away at once.

Revocation: mosquitto 2.0 reads ``crlfile`` only at start (SIGHUP reloads the
ACL and the server certificate, not the CA or the CRL), so ``haven provision
revoke`` restarts the broker.
"""

from __future__ import annotations

from hub.provision.files import ProvisionSettings, SiteDir

#: The device topics' last levels each side may use (device/protocol.py). ``heartbeat``
#: came with firmware 0.3: ``haven provision acl`` rewrites an older site's ACL.
DEVICE_WRITES = ("alarm", "status", "heartbeat", "event")
DEVICE_READS = ("cmd",)


def render_conf(site: SiteDir, s: ProvisionSettings, *, broker: str | None = None) -> str:
    """The drop-in of the site's broker, or with ``broker`` of its second broker of a
    pair (its own certificate under ``brokers/<name>/``; ``s`` then carries that broker's
    listen address and port); the ACL, CA and CRL are the site's, shared by both."""
    cert = site.server_cert if broker is None else site.broker_cert(broker)
    key = site.server_key if broker is None else site.broker_key(broker)
    written = ("'haven provision init'" if broker is None
               else f"'haven provision broker {broker}'")
    return f"""\
# Haven broker settings: a drop-in for /etc/mosquitto/conf.d/haven.conf.
# Written by {written}; run it again rather than editing by hand.
# Persistence (on), its location, the pid file and logging stay in Debian's
# /etc/mosquitto/mosquitto.conf.

per_listener_settings false
# No anonymous clients: every client shows a certificate signed by the site CA.
allow_anonymous false
acl_file {site.acl}

# Save the in-memory state (sessions, queued messages, retained statuses) every
# 10 s as well as at shutdown; the default is every 30 min. A crash loses at
# most 10 s of queue, and an unconfirmed alarm is still in the device's outbox,
# which resends it until the hub confirms.
autosave_interval 10

# Queue limits. mosquitto 2.0 applies them to every client alike. 0 = unlimited:
# the default (1000) silently drops QoS 1 messages for a subscriber that falls
# behind, and the hub (all alarms of every branch, shared among its workers)
# must never lose one. Devices' queues are only their own cmd topic, so they
# stay small; a device gone for good stops holding a queue when its session
# expires (the firmware asks for a session expiry) or after 14 days offline.
max_queued_messages 0
persistent_client_expiration 14d
# An alarm is ~130 bytes, a status ~300 (protocol limit 4096 payload bytes):
# refuse anything far larger before it costs memory.
max_packet_size 16384

# No Nagle: a confirmation hop must not wait ~40 ms for a delayed ACK.
set_tcp_nodelay true

# The only listener: TLS with a client certificate required, on the LAN.
listener {s.mqtt_port} {s.listen}
protocol mqtt
cafile {site.ca_cert}
certfile {cert}
keyfile {key}
crlfile {site.crl}
require_certificate true
use_identity_as_username true
use_username_as_clientid true
"""


def render_acl(prefix: str, hubs: list[str], devices: list[str]) -> str:
    """The ACL: each hub reads every device topic and writes every ``cmd``; each device
    writes only its own ``alarm``/``status``/``event`` and reads only its own ``cmd``.

    mosquitto 2.0 checks a ``$share/<group>/<filter>`` subscription against
    ``<filter>``, so the hub's ``topic read`` lines cover its shared subscriptions.
    """
    lines = ["# Haven broker ACL, written by 'haven provision'. One block per identity",
             "# (the CN of its certificate); anything not granted here is refused.", ""]
    for hub in hubs:
        lines.append(f"# hub worker identity {hub}")
        lines.append(f"user {hub}")
        lines += [f"topic read {prefix}/dev/+/{channel}" for channel in DEVICE_WRITES]
        lines += [f"topic write {prefix}/dev/+/{channel}" for channel in DEVICE_READS]
        lines.append("")
    for device in devices:
        lines.append(f"user {device}")
        lines += [f"topic write {prefix}/dev/{device}/{channel}" for channel in DEVICE_WRITES]
        lines += [f"topic read {prefix}/dev/{device}/{channel}" for channel in DEVICE_READS]
        lines.append("")
    return "\n".join(lines)

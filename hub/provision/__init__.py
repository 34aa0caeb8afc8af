"""``haven provision``: a site's trust and configuration, from nothing to a trusted device.

Everything lives under one site directory (``/etc/haven`` in production)::

    site.toml                  the site config (devices are added and removed here)
    provision.toml             what init was told: broker host/port, listen address,
                               topic prefix, Redis port (no secrets)
    pki/ca.crt  ca.key         the site certificate authority (key 0600)
    pki/crl.pem                revoked certificates, read by mosquitto at start
    pki/issued.json            every certificate issued: serial, expiry, revoked or not
    mosquitto/haven.conf       a drop-in for /etc/mosquitto/conf.d/ (TLS listener, ACL, CRL)
    mosquitto/acl              one block per identity: the hub(s) and each device
    mosquitto/server.crt .key  the broker's certificate (key 0640, group mosquitto)
    brokers/<name>/            a pair's second broker: haven.conf, server.crt .key
    redis/haven.conf           included from /etc/redis/redis.conf (password, AOF; 0640 redis)
    hub/hub.crt hub.key        the hub's client certificate (CN haven-hub)
    hub/haven.env              EnvironmentFile of haven-hub and haven-dashboard (0600)
    devices/<id>/              device.toml, ca.crt, device.crt, device.key
    devices/<id>.tar.gz        the bundle to copy to the Pi (0600: it holds the key)

Modules: :mod:`.ca` (certificates), :mod:`.mosquitto` and :mod:`.redisconf`
(server configs, pure text), :mod:`.sitefile` (edit the site file without
touching its comments), :mod:`.bundle` (device.toml and the tar.gz),
:mod:`.files` (the site directory and all-or-nothing writes), :mod:`.commands`
(init, device, revoke, hub, broker, acl) and :mod:`.cli` (argparse wiring).
"""

from __future__ import annotations

from hub.errors import HubError

#: Exit code of a command refused for bad input (unknown branch, missing CA, ...).
EXIT_BAD_INPUT = 2


class ProvisionError(HubError):
    """Bad input or a missing prerequisite; the message names the field and the fix.
    Raised before anything is written."""

"""``haven provision init|device|revoke|hub|push|list``: argparse wiring and the service reloads.

Exit codes: 0 done; 2 refused for bad input (nothing written); 1 written but a
service could not be told (the message says which command to run by hand).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from hub.app.cliopts import add_redis_option
from hub.provision import EXIT_BAD_INPUT, ProvisionError

#: systemctl verbs per action: reload (mosquitto: ACL; hub: site file on SIGHUP), restart
#: (mosquitto: reads the CRL only at start; the dashboard reads the site only at start).
SYSTEMCTL = {("mosquitto", "reload"): ["reload", "mosquitto"],
             ("mosquitto", "restart"): ["restart", "mosquitto"],
             ("haven-hub", "reload"): ["try-reload-or-restart", "haven-hub"],
             ("haven-dashboard", "restart"): ["try-restart", "haven-dashboard"]}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``provision`` group to the ``haven`` parser."""
    p = sub.add_parser("provision", help="site CA, broker/Redis configs, device certificates")
    site = argparse.ArgumentParser(add_help=False)
    site.add_argument("--site", default="/etc/haven",
                      help="the site directory (default /etc/haven)")
    verbs = p.add_subparsers(dest="provision_command", required=True)

    init = verbs.add_parser("init", parents=[site],
                            help="a new site: CA, broker and Redis configs, hub identity")
    init.add_argument("--site-file", type=Path,
                      help="copy this site config in as SITE/site.toml (else it must be there)")
    init.add_argument("--broker-host", required=True,
                      help="the name or address devices dial (goes in the broker's certificate)")
    init.add_argument("--mqtt-port", type=int, default=8883)
    init.add_argument("--listen", default="0.0.0.0",
                      help="address of the TLS listener: the LAN interface's (default all)")
    init.add_argument("--prefix", default="haven/v1", help="MQTT topic prefix")
    init.add_argument("--redis-bind", default="127.0.0.1")
    init.add_argument("--redis-port", type=int, default=6379)
    init.add_argument("--hub-name", default="haven-hub", help="the hub's certificate CN")

    dev = verbs.add_parser("device", parents=[site],
                            help="a new device: certificate, ACL, device.toml, bundle")
    dev.add_argument("--branch", required=True)
    dev.add_argument("--room", required=True)
    dev.add_argument("--kind", required=True, choices=["wearable", "wall", "safe_room"])
    dev.add_argument("--holder", help="who wears it (a wearable)")
    dev.add_argument("--id", dest="device_id", help="the device id (default BRANCH-ROOM-NN)")

    rev = verbs.add_parser("revoke", parents=[site],
                            help="the device can no longer connect; off the board")
    rev.add_argument("device_id")

    hub = verbs.add_parser("hub", parents=[site],
                           help="another hub worker's broker identity (certificate, ACL)")
    hub.add_argument("name", help="its certificate CN, e.g. haven-hub-2")

    broker = verbs.add_parser("broker", parents=[site],
                              help="the second broker of a pair: its certificate and config")
    broker.add_argument("name", help="the host name devices dial for it, e.g. hub-b.local")
    broker.add_argument("--listen", default="0.0.0.0",
                        help="the address it binds (default: all, 0.0.0.0)")
    broker.add_argument("--mqtt-port", type=int, default=None,
                        help="its TLS port (default: the site's, from provision init)")

    push = verbs.add_parser("push", parents=[site],
                            help="Web Push keys (VAPID) for phones and browsers (docs/push.md)")
    push.add_argument("--subject", required=True,
                      help="how push services reach the site's IT: mailto:it@example.org "
                           "or an https:// URL")

    acl = verbs.add_parser("acl", parents=[site],
                           help="write the broker's ACL again from the registry (after an "
                                "upgrade that adds a topic)")

    ha = verbs.add_parser("redis-ha", parents=[site],
                          help="configs of Redis replicas and Sentinels (and the hub's "
                               "HAVEN_REDIS_SENTINELS)")
    ha.add_argument("--primary", required=True, help="the primary's host[:port] at the start")
    ha.add_argument("--replica", action="append", default=[], help="a replica's host[:port] "
                    "(repeat: two recommended)")
    ha.add_argument("--sentinel", action="append", default=[], help="a Sentinel's "
                    "host[:port] (repeat: 3 or another odd number)")

    lst = verbs.add_parser("list", parents=[site],
                            help="every device with its room, certificate and presence")
    add_redis_option(lst, "Redis URL for presence (env HAVEN_REDIS_URL, default "
                          "redis://127.0.0.1:6379/0)")

    for verb in (dev, rev, hub, acl):
        verb.add_argument("--no-reload", action="store_true",
                          help="write the files only; print the systemctl commands to run")
    p.set_defaults(func=cmd_provision)


def cmd_provision(args) -> int:
    from hub.provision import commands
    from hub.provision.files import ProvisionSettings
    root = Path(args.site)
    try:
        if args.provision_command == "init":
            root.mkdir(parents=True, exist_ok=True)
            outcome = commands.init(root, ProvisionSettings(
                broker_host=args.broker_host, mqtt_port=args.mqtt_port, listen=args.listen,
                topic_prefix=args.prefix, redis_bind=args.redis_bind, redis_port=args.redis_port,
                hub_name=args.hub_name), site_file=args.site_file)
        elif args.provision_command == "device":
            outcome = commands.provision_device(root, branch=args.branch, room=args.room,
                                                kind=args.kind, holder=args.holder,
                                                device_id=args.device_id)
        elif args.provision_command == "revoke":
            outcome = commands.revoke(root, args.device_id)
        elif args.provision_command == "hub":
            outcome = commands.add_hub(root, args.name)
        elif args.provision_command == "broker":
            outcome = commands.add_broker(root, args.name, listen=args.listen,
                                          mqtt_port=args.mqtt_port)
        elif args.provision_command == "push":
            from .push import provision_push
            outcome = provision_push(root, args.subject)
        elif args.provision_command == "acl":
            outcome = commands.rewrite_acl(root)
        elif args.provision_command == "redis-ha":
            from .redisha import provision_redis_ha
            outcome = provision_redis_ha(root, primary=args.primary, replicas=args.replica,
                                         sentinels=args.sentinel)
        else:
            from hub.provision.listing import list_devices
            outcome = list_devices(root, live=_presence(args.redis))
    except (ProvisionError, ValueError) as exc:
        print(f"haven provision {args.provision_command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for line in outcome.lines:
        print(line)
    if not outcome.actions:
        return 0
    commands_to_run = [["systemctl", *SYSTEMCTL[a]] for a in outcome.actions]
    if getattr(args, "no_reload", False):
        print("not applied yet; run:\n" + "\n".join("  sudo " + " ".join(c)
                                                    for c in commands_to_run))
        return 0
    return _apply(commands_to_run)


def _apply(commands_to_run: list[list[str]]) -> int:
    if shutil.which("systemctl") is None:
        failed = commands_to_run
    else:
        failed = [c for c in commands_to_run
                  if subprocess.run(c, capture_output=True, timeout=60).returncode != 0]
    if not failed:
        print("applied: " + "; ".join(" ".join(c[1:]) for c in commands_to_run))
        return 0
    print("WRITTEN BUT NOT APPLIED: the broker or hub still runs the old settings until "
          "you run:\n" + "\n".join("  sudo " + " ".join(c) for c in failed), file=sys.stderr)
    return 1


def _presence(redis_url: str | None) -> dict[str, str] | None:
    """Each device's last status (online/offline) from Redis, or None if unreachable."""
    from hub.config.settings import hub_settings
    from hub.store.alarms import Store
    import redis
    try:
        store = Store.from_url(hub_settings(redis_url=redis_url).redis)
        return store.devices.presences()
    except redis.RedisError:
        return None

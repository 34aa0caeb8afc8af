"""Run a provisioned site's generated broker and Redis configs as private children.

For tests and a trial run on a workstation: the generated files are used as
they are, wrapped the way Debian wraps them (mosquitto: a main config that
turns persistence on and includes the drop-in; Redis: the config plus the
command-line overrides a private instance needs: port, data directory).
"""

from __future__ import annotations

import os
from pathlib import Path

from hub.app.localservices import (LocalService, _tcp_open, _wait_ready, find_binary, free_port,
                               spawn)

from hub.provision.files import SiteDir, load_settings


def start_site_mosquitto(root: Path, workdir: Path, *, broker: str | None = None,
                         port: int | None = None) -> LocalService:
    """mosquitto with ``root``'s drop-in, as Debian's main config would include it; with
    ``broker``, the second broker of a pair from its own drop-in (on ``port``, the one
    ``haven provision broker`` was given)."""
    site = SiteDir(root)
    port = load_settings(site).mqtt_port if port is None else port
    workdir.mkdir(parents=True, exist_ok=True)
    main = workdir / "mosquitto.conf"
    lines = ["persistence true", f"persistence_location {workdir}/", "log_dest stderr",
             "log_type error", "log_type warning", "log_type notice"]
    if os.geteuid() == 0:  # Debian's drops to 'mosquitto'; a private temp dir needs root
        lines.append("user root")
    conf_dir = site.mosquitto_conf.parent if broker is None else site.broker_dir(broker)
    lines.append(f"include_dir {conf_dir}")
    main.write_text("\n".join(lines) + "\n")
    log = workdir / "mosquitto.log"
    proc = spawn([find_binary("mosquitto"), "-c", str(main)], log=log)
    service = LocalService("mosquitto", port, workdir, log, proc)
    _wait_ready(service, _tcp_open)
    return service


def start_site_redis(root: Path, workdir: Path) -> LocalService:
    """redis-server with ``root``'s generated config, on a free port with its data in
    ``workdir`` (ready once it accepts connections: it refuses a password-less PING)."""
    site = SiteDir(root)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "redis.log"
    proc = spawn([find_binary("redis-server"), str(site.redis_conf), "--port", str(port),
                  "--dir", str(workdir), "--daemonize", "no", "--logfile", ""], log=log)
    service = LocalService("redis-server", port, workdir, log, proc)
    _wait_ready(service, _tcp_open)
    return service


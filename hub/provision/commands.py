"""The provisioning commands: init a site, add a device, revoke one, list them.

Each command checks all of its input first and raises :class:`ProvisionError`
(naming the option or file and the fix) before anything is written; then it
writes every file in one :class:`~.files.Transaction`. It returns an
:class:`Outcome`: lines to print (never a secret) and the services that must
take the change (:mod:`.cli` reloads them).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from device.protocol import ID_RE, Topics
from hub.errors import ConfigError
from hub.config.floorplans import plan_files
from hub.config.site import DEVICE_TYPES, Site, load_site

from hub.provision import ProvisionError, ca
from hub.provision.bundle import device_toml, make_bundle
from hub.provision.files import (HAVEN_GROUP, MOSQUITTO_GROUP, REDIS_GROUP, ProvisionSettings,
                                 SiteDir, Transaction, load_settings)
from hub.provision.mosquitto import render_acl, render_conf
from hub.provision.redisconf import new_password, render_env, render_redis
from hub.provision.registry import Registry
from hub.provision.sitefile import NewDevice, add_device, remove_device

#: Service actions an outcome may ask for: (unit, "reload" | "restart").
Action = tuple[str, str]


@dataclass
class Outcome:
    lines: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)


def _site(site: SiteDir) -> Site:
    try:
        return load_site(site.site_file)
    except ConfigError as exc:
        raise ProvisionError(f"the site file has problems; fix them first:\n{exc}") from None


def _ca(site: SiteDir) -> tuple[bytes, bytes]:
    for path in (site.ca_cert, site.ca_key):
        if not path.exists():
            raise ProvisionError(f"{path}: missing: the site CA is not here; run 'haven provision "
                                 f"init --site {site.root}' (or restore pki/ from a backup)")
    cert, key = site.ca_cert.read_bytes(), site.ca_key.read_bytes()
    problem = ca.check_ca(cert, key)
    if problem:
        raise ProvisionError(f"{site.ca_cert}: {problem}; restore pki/ from a backup")
    return cert, key


def _acl(s: ProvisionSettings, reg: Registry) -> str:
    return render_acl(s.topic_prefix, reg.active("hub"), reg.active("device"))


def init(root: Path, s: ProvisionSettings, *, site_file: Path | None = None) -> Outcome:
    """A new site: CA, broker certificate and config, ACL, CRL, Redis config, hub identity."""
    site = SiteDir(root)
    if site.ca_key.exists() or site.settings_file.exists():
        raise ProvisionError(f"{root}: already initialised (has {site.ca_key.name} or "
                             f"{site.settings_file.name}); a second CA would lock out every "
                             "provisioned device. Use another --site directory")
    if not ID_RE.match(s.hub_name):
        raise ProvisionError(f"--hub-name: {s.hub_name!r} must be letters, digits, '-' or '_'")
    Topics(s.topic_prefix)  # raises ProtocolError (a ValueError) for a bad prefix
    text = None
    if site_file is not None:
        if site.site_file.exists():
            raise ProvisionError(f"--site-file: {site.site_file} exists already; leave out "
                                 "--site-file to use it, or pick an empty --site directory")
        try:
            text = site_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProvisionError(f"--site-file: cannot read {site_file}: {exc.strerror}") from None
    elif not site.site_file.exists():
        raise ProvisionError(f"{site.site_file}: missing: give --site-file FILE (start from "
                             "deploy/examples/site.toml) or put the site config there")
    try:
        current = load_site(site_file or site.site_file)
    except ConfigError as exc:
        raise ProvisionError(f"the site file has problems; fix them first:\n{exc}") from None
    if s.hub_name in current.devices:
        raise ProvisionError(f"--hub-name: {s.hub_name!r} is also a device id; pick another")

    authority = ca.create_ca(current.name)
    names = list(dict.fromkeys([s.broker_host, "localhost", "127.0.0.1"]))
    if s.listen not in ("0.0.0.0", "::") and s.listen not in names:
        names.append(s.listen)
    server = ca.issue(authority.cert_pem, authority.key_pem, s.broker_host,
                      server_names=tuple(names))
    hub = ca.issue(authority.cert_pem, authority.key_pem, s.hub_name)
    reg = Registry({})
    reg.add(s.broker_host, "server", server.serial, server.not_after)
    reg.add(s.hub_name, "hub", hub.serial, hub.not_after)
    password = new_password()
    with Transaction() as tx:
        if text is not None:
            tx.write(site.site_file, text, 0o644)
            for plan, relative in plan_files(current, site_file):  # the copy must load too
                tx.write(site.site_file.parent / relative, plan.read_bytes(), 0o644)
        tx.write(site.ca_key, authority.key_pem, 0o600)
        tx.write(site.ca_cert, authority.cert_pem, 0o644)
        tx.write(site.crl, ca.crl(authority.cert_pem, authority.key_pem, {}), 0o644)
        tx.write(site.registry, reg.to_json(), 0o644)
        tx.write(site.server_key, server.key_pem, 0o640, MOSQUITTO_GROUP)
        tx.write(site.server_cert, server.cert_pem, 0o644)
        tx.write(site.acl, _acl(s, reg), 0o640, MOSQUITTO_GROUP)
        tx.write(site.mosquitto_conf, render_conf(site, s), 0o644)
        tx.write(site.redis_conf, render_redis(s, password), 0o640, REDIS_GROUP)
        tx.write(site.hub_key(s.hub_name), hub.key_pem, 0o640, HAVEN_GROUP)
        tx.write(site.hub_cert(s.hub_name), hub.cert_pem, 0o644)
        tx.write(site.hub_env, render_env(site, s, password), 0o600)
        tx.write(site.settings_file, s.to_toml(), 0o644)
    out = Outcome([f"site CA for {current.name!r}: {site.ca_cert} (key {site.ca_key}, 0600: "
                   "back it up offline)",
                   f"broker: {site.mosquitto_conf} -> /etc/mosquitto/conf.d/haven.conf "
                   f"(TLS on {s.listen}:{s.mqtt_port}, certificate for {', '.join(names)})",
                   f"redis: {site.redis_conf} (password inside, 0640) -> "
                   f"'include {site.redis_conf}' in /etc/redis/redis.conf",
                   f"hub and dashboard: EnvironmentFile={site.hub_env} (0600), "
                   f"identity {s.hub_name}",
                   *tx.notes])
    return out


def add_hub(root: Path, name: str) -> Outcome:
    """Another hub worker's identity (its own CN: the broker uses the CN as client id, so
    two workers sharing one certificate would take each other's session over)."""
    site = SiteDir(root)
    s = load_settings(site)
    ca_cert, ca_key = _ca(site)
    current = _site(site)
    reg = Registry.load(site.registry)
    if not ID_RE.match(name):
        raise ProvisionError(f"NAME: {name!r} must be letters, digits, '-' or '_'")
    if name in reg.identities or name in current.devices:
        raise ProvisionError(f"NAME: {name!r} is taken (a device or an identity); pick another")
    cert = ca.issue(ca_cert, ca_key, name)
    reg.add(name, "hub", cert.serial, cert.not_after)
    with Transaction() as tx:
        tx.write(site.hub_key(name), cert.key_pem, 0o640, HAVEN_GROUP)
        tx.write(site.hub_cert(name), cert.cert_pem, 0o644)
        tx.write(site.acl, _acl(s, reg), 0o640, MOSQUITTO_GROUP)
        tx.write(site.registry, reg.to_json(), 0o644)
    return Outcome([f"hub identity {name}: give that worker haven.env with",
                    f"  HAVEN_BROKER_CERT={site.hub_cert(name)}",
                    f"  HAVEN_BROKER_KEY={site.hub_key(name)}", *tx.notes],
                   [("mosquitto", "reload")])


#: A broker's name as devices dial it: a host name or an IPv4 address.
BROKER_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                            r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z")


def add_broker(root: Path, name: str, *, listen: str = "0.0.0.0",
               mqtt_port: int | None = None) -> Outcome:
    """The second broker of a pair (no single broker, issue 17): its own server
    certificate (CN and name ``name``, signed by the site CA) and drop-in under
    ``brokers/<name>/``, listening on ``listen``:``mqtt_port`` (default: the site's
    port). Devices and hub workers trust it through the site CA they already have; it
    shares the site's ACL and CRL."""
    site = SiteDir(root)
    s = load_settings(site)
    ca_cert, ca_key = _ca(site)
    reg = Registry.load(site.registry)
    if not BROKER_NAME_RE.match(name):
        raise ProvisionError(f"NAME: {name!r} must be the host name or address devices dial, "
                             "e.g. hub-b.local")
    if name == s.broker_host or name in reg.identities:
        raise ProvisionError(f"NAME: {name!r} already has a certificate (the first broker, a "
                             "hub or a device); pick the second machine's own name")
    port = s.mqtt_port if mqtt_port is None else mqtt_port
    if not 0 < port < 65536:
        raise ProvisionError(f"--mqtt-port: {port} is not a TCP port (1-65535)")
    names = list(dict.fromkeys([name, "localhost", "127.0.0.1"]))
    if listen not in ("0.0.0.0", "::") and listen not in names:
        names.append(listen)
    server = ca.issue(ca_cert, ca_key, name, server_names=tuple(names))
    reg.add(name, "server", server.serial, server.not_after)
    conf = render_conf(site, replace(s, listen=listen, mqtt_port=port), broker=name)
    with Transaction() as tx:
        tx.write(site.broker_key(name), server.key_pem, 0o640, MOSQUITTO_GROUP)
        tx.write(site.broker_cert(name), server.cert_pem, 0o644)
        tx.write(site.broker_conf(name), conf, 0o644)
        tx.write(site.registry, reg.to_json(), 0o644)
    first = f"{s.broker_host}:{s.mqtt_port}"
    return Outcome([f"second broker {name}: {site.broker_dir(name)} (TLS on {listen}:{port}, "
                    f"certificate for {', '.join(names)})",
                    f"on {name}: copy {site.root} to the same path (it needs pki/ca.crt, "
                    f"pki/crl.pem, mosquitto/acl and {site.broker_dir(name).relative_to(root)}/),"
                    f" then link {site.broker_conf(name)} to "
                    "/etc/mosquitto/conf.d/haven.conf and restart mosquitto",
                    f"hub workers: HAVEN_BROKER={first},{name}:{port}",
                    f"devices: [broker] brokers = [\"{first}\", \"{name}:{port}\"] "
                    "(the first is home)",
                    "after 'provision device', 'revoke' or 'acl': copy mosquitto/acl and "
                    f"pki/crl.pem to {name} too and reload (revoke: restart) its mosquitto",
                    *tx.notes])


def rewrite_acl(root: Path) -> Outcome:
    """The broker's ACL written again from the registry, as this version of Haven writes
    it (after an upgrade that added a topic, such as firmware 0.3's ``heartbeat``)."""
    site = SiteDir(root)
    s = load_settings(site)
    reg = Registry.load(site.registry)
    text = _acl(s, reg)
    if site.acl.exists() and site.acl.read_text(encoding="utf-8") == text:
        return Outcome([f"ACL {site.acl}: already up to date"])
    with Transaction() as tx:
        tx.write(site.acl, text, 0o640, MOSQUITTO_GROUP)
    return Outcome([f"ACL {site.acl}: rewritten for {len(reg.active('hub'))} hub(s) and "
                    f"{len(reg.active('device'))} device(s)", *tx.notes],
                   [("mosquitto", "reload")])


def _device_id(site: Site, reg: Registry, branch: str, room: str) -> str:
    stem = f"{branch}-{room}"[:60].rstrip("-_")
    for n in range(1, 100):
        candidate = f"{stem}-{n:02d}"
        if candidate not in site.devices and candidate not in reg.identities:
            return candidate
    raise ProvisionError(f"--id: no free id of the form {stem}-NN; give one with --id")


def provision_device(root: Path, *, branch: str, room: str, kind: str,
                     holder: str | None = None, device_id: str | None = None) -> Outcome:
    """A new device: id, certificate (CN = id), ACL block, device.toml, bundle, site entry."""
    site = SiteDir(root)
    s = load_settings(site)
    ca_cert, ca_key = _ca(site)
    current = _site(site)
    if branch not in current.branches:
        raise ProvisionError(f"--branch: unknown branch {branch!r}; known: "
                             f"{', '.join(current.branches)} (branches are in {site.site_file})")
    rooms = current.branches[branch].rooms
    if not any(r.id == room for r in rooms):
        raise ProvisionError(f"--room: unknown room {room!r} in branch {branch!r}; its rooms: "
                             f"{', '.join(r.id for r in rooms)} (add it to {site.site_file})")
    if kind not in DEVICE_TYPES:
        raise ProvisionError(f"--kind: {kind!r} is not one of {', '.join(DEVICE_TYPES)}")
    reg = Registry.load(site.registry)
    if device_id is None:
        device_id = _device_id(current, reg, branch, room)
    elif not ID_RE.match(device_id):
        raise ProvisionError(f"--id: {device_id!r} must be letters, digits, '-' or '_' "
                             "(at most 64), e.g. main-circ-02")
    known = reg.identities.get(device_id)
    if known is not None and (known.active or known.role != "device"):
        raise ProvisionError(f"--id: {device_id!r} already has a certificate ({known.role}); "
                             f"pick another id, or 'haven provision revoke {device_id}' first")
    new_text, _ = add_device(site.site_file.read_text(encoding="utf-8"),
                             NewDevice(device_id, branch, room, kind, holder), str(site.site_file))

    cert = ca.issue(ca_cert, ca_key, device_id)
    reg.add(device_id, "device", cert.serial, cert.not_after)
    config = device_toml(device_id, kind, s, branch=branch, room=room).encode()
    files = {"device.toml": (config, 0o644), "ca.crt": (ca_cert, 0o644),
             "device.crt": (cert.cert_pem, 0o644), "device.key": (cert.key_pem, 0o600)}
    folder = site.device_dir(device_id)
    with Transaction() as tx:
        for name, (data, mode) in files.items():
            tx.write(folder / name, data, mode)
        tx.write(site.bundle(device_id), make_bundle(files), 0o600)
        tx.write(site.acl, _acl(s, reg), 0o640, MOSQUITTO_GROUP)
        tx.write(site.registry, reg.to_json(), 0o644)
        tx.write(site.site_file, new_text, site.site_file.stat().st_mode & 0o777)
    where = f"{branch}/{room}"
    return Outcome([f"device {device_id}: {kind} in {where}"
                    + (f", worn by {holder}" if holder else ""),
                    f"certificate CN={device_id}, valid until {cert.not_after:%Y-%m-%d}",
                    f"bundle {site.bundle(device_id)} (0600, holds the key): copy it to the Pi "
                    "and run: sudo deploy/pi/install.sh " + site.bundle(device_id).name,
                    *tx.notes],
                   [("mosquitto", "reload"), ("haven-hub", "reload"),
                    ("haven-dashboard", "restart")])


def revoke(root: Path, device_id: str, *, now: dt.datetime | None = None) -> Outcome:
    """The device's certificate goes on the CRL, its ACL block and site entry go away,
    and its files (with the key) are deleted. The broker must restart to read the CRL."""
    site = SiteDir(root)
    s = load_settings(site)
    ca_cert, ca_key = _ca(site)
    current = _site(site)
    reg = Registry.load(site.registry)
    ident = reg.identities.get(device_id)
    if device_id not in current.devices and (ident is None or not ident.active):
        raise ProvisionError(f"no device {device_id!r} to revoke: it is neither in "
                             f"{site.site_file} nor holds a live certificate "
                             "('haven provision list' shows them all)")
    if ident is not None and ident.role != "device":
        raise ProvisionError(f"{device_id!r} is the {ident.role}'s identity, not a device")
    new_text = None
    if device_id in current.devices:
        new_text, _ = remove_device(site.site_file.read_text(encoding="utf-8"), device_id,
                                    str(site.site_file))
    if ident is not None:
        reg.revoke(device_id, now or dt.datetime.now(dt.timezone.utc))
    with Transaction() as tx:
        tx.write(site.crl, ca.crl(ca_cert, ca_key, reg.revoked_serials()), 0o644)
        tx.write(site.acl, _acl(s, reg), 0o640, MOSQUITTO_GROUP)
        tx.write(site.registry, reg.to_json(), 0o644)
        if new_text is not None:
            tx.write(site.site_file, new_text, site.site_file.stat().st_mode & 0o777)
        for path in (site.device_dir(device_id), site.bundle(device_id)):
            if path.exists():
                tx.remove(path)
    return Outcome([f"device {device_id}: "
                    + ("certificate revoked (on the CRL), " if ident else "had no certificate; ")
                    + "ACL entry and site entry removed, its key and bundle deleted", *tx.notes],
                   [("mosquitto", "restart"), ("haven-hub", "reload"),
                    ("haven-dashboard", "restart")])

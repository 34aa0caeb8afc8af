"""The site directory's layout, its settings file, and all-or-nothing writes.

A :class:`Transaction` stages every new file as a temporary file beside its
target (mode set before any byte is written, so a secret is never readable
by others, not even for a moment), then renames them all into place. If
anything fails while staging, the temporaries are removed and no target is
touched: a refused command leaves the site directory as it was.
"""

from __future__ import annotations

import grp
import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from hub.provision import ProvisionError

#: Group that must read the broker's files (Debian's mosquitto drops to this user).
MOSQUITTO_GROUP = "mosquitto"
#: Group that must read the Redis config (it holds the password).
REDIS_GROUP = "redis"
#: Group of the hub and dashboard processes (reads the hub's key).
HAVEN_GROUP = "haven"


@dataclass(frozen=True)
class SiteDir:
    """Paths inside one site directory (``/etc/haven`` in production)."""

    root: Path

    @property
    def site_file(self) -> Path:
        return self.root / "site.toml"

    @property
    def settings_file(self) -> Path:
        return self.root / "provision.toml"

    @property
    def ca_cert(self) -> Path:
        return self.root / "pki" / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "pki" / "ca.key"

    @property
    def crl(self) -> Path:
        return self.root / "pki" / "crl.pem"

    @property
    def registry(self) -> Path:
        return self.root / "pki" / "issued.json"

    @property
    def mosquitto_conf(self) -> Path:
        return self.root / "mosquitto" / "haven.conf"

    @property
    def acl(self) -> Path:
        return self.root / "mosquitto" / "acl"

    @property
    def server_cert(self) -> Path:
        return self.root / "mosquitto" / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "mosquitto" / "server.key"

    def broker_dir(self, name: str) -> Path:
        """The second broker of a pair (haven provision broker): its own drop-in and
        certificate, copied to that machine."""
        return self.root / "brokers" / name

    def broker_conf(self, name: str) -> Path:
        return self.broker_dir(name) / "haven.conf"

    def broker_cert(self, name: str) -> Path:
        return self.broker_dir(name) / "server.crt"

    def broker_key(self, name: str) -> Path:
        return self.broker_dir(name) / "server.key"

    @property
    def redis_conf(self) -> Path:
        return self.root / "redis" / "haven.conf"

    @property
    def hub_env(self) -> Path:
        return self.root / "hub" / "haven.env"

    def hub_cert(self, name: str) -> Path:
        return self.root / "hub" / f"{name}.crt"

    def hub_key(self, name: str) -> Path:
        return self.root / "hub" / f"{name}.key"

    def device_dir(self, device_id: str) -> Path:
        return self.root / "devices" / device_id

    def bundle(self, device_id: str) -> Path:
        return self.root / "devices" / f"{device_id}.tar.gz"


@dataclass(frozen=True)
class ProvisionSettings:
    """What ``provision init`` was told; every later command reads it (no secrets).

    ``broker_host``: the name or address devices and hub dial (in the broker's
    certificate); ``mqtt_port``: the TLS listener's port; ``listen``: the
    address it binds (the LAN interface, or 0.0.0.0); ``redis_port``: Redis on
    ``redis_bind``.
    """

    broker_host: str
    mqtt_port: int = 8883
    listen: str = "0.0.0.0"
    topic_prefix: str = "haven/v1"
    redis_bind: str = "127.0.0.1"
    redis_port: int = 6379
    hub_name: str = "haven-hub"

    def to_toml(self) -> str:
        lines = ["# Written by 'haven provision init'; later provision commands read it.",
                 "# No secrets here.", "[provision]"]
        for key, value in asdict(self).items():
            lines.append(f"{key} = {value!r}" if isinstance(value, int)
                         else f'{key} = "{value}"')
        return "\n".join(lines) + "\n"


def load_settings(site: SiteDir) -> ProvisionSettings:
    path = site.settings_file
    if not path.exists():
        raise ProvisionError(f"{path}: missing: this is not a provisioned site directory; "
                             f"run 'haven provision init --site {site.root}' first")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8")).get("provision", {})
        return ProvisionSettings(**raw)
    except (tomllib.TOMLDecodeError, TypeError) as exc:
        raise ProvisionError(f"{path}: cannot be read ({exc}); run 'haven provision init' "
                             "again in a fresh directory or fix the file") from None


class Transaction:
    """Stage files, then put them all in place with :meth:`commit`; :meth:`abort` undoes."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []
        self._removals: list[Path] = []
        self.notes: list[str] = []

    def write(self, path: Path, data: bytes | str, mode: int = 0o644,
              group: str | None = None) -> None:
        """Stage ``data`` for ``path`` with ``mode``; ``group`` owns it if it exists here
        (otherwise a note says which ``chgrp`` to run once the package is installed)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        payload = data.encode() if isinstance(data, str) else data
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        self._staged.append((tmp, path))
        try:
            os.fchmod(fd, mode)  # umask must not widen or narrow it
            if group is not None:
                try:
                    os.fchown(fd, -1, grp.getgrnam(group).gr_gid)
                except KeyError:
                    self.notes.append(f"group {group!r} does not exist here: after installing "
                                      f"it, run: chgrp {group} {path}")
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, path: Path) -> None:
        """Remove ``path`` (a file or a directory tree) at commit."""
        self._removals.append(path)

    def commit(self) -> None:
        for tmp, path in self._staged:
            os.replace(tmp, path)
        self._staged.clear()
        for path in self._removals:
            if path.is_dir():
                for child in sorted(path.rglob("*"), reverse=True):
                    child.rmdir() if child.is_dir() else child.unlink()
                path.rmdir()
            elif path.exists():
                path.unlink()

    def abort(self) -> None:
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged.clear()

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

"""The MQTT brokers a hub worker serves: ``host:port``, one or several (no single broker).

Validated once (hub.config.settings, at start) into :class:`BrokerAddress` values that the
MQTT edge (hub.edges.mqtt, hub.edges.brokerset) connects to.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.errors import ConfigError, Problem


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "BrokerAddress":
        """``"host:port"`` or ``"host"`` (port 1883)."""
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "1883")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"broker address {text!r} must look like 127.0.0.1:1883")
        return cls(host, int(port))


def parse_brokers(text: str, name: str = "HAVEN_BROKER") -> tuple[BrokerAddress, ...]:
    """``host:port[,host:port...]`` (a host alone: port 1883); a ConfigError naming
    ``name`` and each bad or repeated entry."""
    problems, found = [], []
    for item in (part.strip() for part in text.split(",")):
        try:
            address = BrokerAddress.parse(item)
        except ValueError:
            problems.append(Problem("environment", None, name,
                                    f"{item!r} is not host:port; list every broker of the "
                                    "site comma-separated, e.g. "
                                    "hub-a.local:8883,hub-b.local:8883"))
            continue
        if address in found:
            problems.append(Problem("environment", None, name, f"{item!r} is listed twice"))
            continue
        found.append(address)
    if problems:
        raise ConfigError(problems)
    return tuple(found)

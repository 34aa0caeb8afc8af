"""The ARC link as the site config gives it (``[arc]``, parsed by hub.arc.config): the
alarm receiving centre's receivers and what they are sent. Part of the site model
(hub.core.site ``Site.arc``); hub.arc sends by it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Receiver:
    """One ARC receiver: ``name`` is ``primary`` or ``backup``; ``key_env`` names the
    environment variable holding its AES key (``None``: unencrypted)."""

    name: str
    host: str
    port: int
    protocol: str = "tcp"
    receiver: str = "1"
    line: str = "1"
    key_env: str | None = None
    key_format: str = "hex"

    @property
    def where(self) -> str:
        return f"{self.name} {self.host}:{self.port}/{self.protocol}"


@dataclass(frozen=True)
class ArcSettings:
    """The ARC link. Times in seconds."""

    accounts: dict[str, str]
    kinds: dict[str, str]
    receivers: tuple[Receiver, ...]
    #: (branch, room) -> zone, every room of every sent branch (positions unless given).
    zones: dict[tuple[str, str], int] = field(default_factory=dict)
    format: str = "sia-dcs"
    supervision_s: float = 90.0
    ack_timeout_s: float = 3.0
    attempts: int = 3

    def __hash__(self) -> int:
        return hash(self.receivers)

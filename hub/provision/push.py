"""``haven provision push``: the site's Web Push keys (hub.config.push_keys), in SITE/push."""

from __future__ import annotations

from pathlib import Path

from hub.config.push_keys import DEFAULT_DIR, PRIVATE, SECRET, PushKeyError, make_push_keys

from . import ProvisionError
from .commands import Outcome
from .files import HAVEN_GROUP, Transaction


def provision_push(root: Path, subject: str) -> Outcome:
    """VAPID keys and the action secret in ``root/push`` (private files 0640, group haven).
    The hub and the dashboard read them at start: the outcome says what to restart."""
    directory = root / "push"
    with Transaction() as tx:
        def write(path: Path, data: bytes | str, mode: int) -> None:
            private = path.name in (PRIVATE, SECRET)
            tx.write(path, data, mode, HAVEN_GROUP if private else None)
        try:
            lines = make_push_keys(directory, subject, write)
        except PushKeyError as exc:
            raise ProvisionError(str(exc)) from None
    env = [] if str(directory) == DEFAULT_DIR else [
        f"add HAVEN_PUSH_KEYS={directory} to {root / 'hub.env'} (hub and dashboard)"]
    return Outcome([*lines, *env, *tx.notes,
                    "then: sudo systemctl restart haven-hub haven-dashboard "
                    "(they read the keys at start)"])

"""``haven arc test``: for commissioning with the ARC, a test event to each receiver.

Each branch's account sends a test report (SIA ``RX`` / Contact ID 601: "manual test",
never dispatched) to the primary and to the backup, directly, not through the hub's
queue (no Redis needed), and this prints each receiver's answer: ACK and how long it
took, a NAK and the clock difference it revealed, DUH, or silence.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Mapping

from hub.core.site import Site
from hub.arc.config import resolve_keys
from hub.arc.dc09 import Event, Phase, event_frame
from hub.arc.link import exchange
from hub.arc.sender import Exchange, Tried, send_until_ack


def run_test(site: Site, *, environ: Mapping[str, str] = os.environ,
             clock: Callable[[], float] = time.time, send: Exchange = exchange,
             branch: str | None = None) -> list[tuple[str, Tried, float | None]]:
    """Send the test events; returns (branch, what the receiver answered, clock offset
    learnt from a NAK in seconds or ``None``) for each branch and receiver. Raises
    :class:`hub.errors.ConfigError` when the site has no ``[arc]`` or a key is missing."""
    from hub.errors import ConfigError, Problem
    arc = site.arc
    if arc is None:
        raise ConfigError([Problem(site.source, None, "arc", "missing: add an [arc] table "
                                   "with the ARC's receivers (see docs/arc.md)")])
    if branch is not None and branch not in arc.accounts:
        raise ConfigError([Problem(site.source, None, "arc.accounts", f"branch {branch!r} "
                                   f"has no ARC account; known: {', '.join(arc.accounts)}")])
    addresses = resolve_keys(arc, site.source, environ)
    results = []
    seq = int(clock()) % 9999 + 1
    for branch_id, account in arc.accounts.items():
        if branch is not None and branch_id != branch:
            continue
        name = site.branches[branch_id].name
        event = Event(account, Phase.TEST, "panic", 0, f"Haven commissioning test: {name}")
        for receiver in arc.receivers:
            learnt: list[float] = []
            tried = send_until_ack(receiver, lambda now: event_frame(
                event, arc.format, seq, addresses[receiver.name], now), arc, send=send,
                clock=clock, corrected=learnt.append)
            results.append((branch_id, tried, learnt[-1] if learnt else None))
    return results


def report(results: list[tuple[str, Tried, float | None]]) -> tuple[str, int]:
    """The lines to print and the exit status (0 when every receiver ACKed)."""
    lines = []
    for branch_id, tried, offset in results:
        what = {"ACK": "ACK", "NAK": "NAK (rejected)", "DUH": "DUH (not understood)",
                "RSP": "RSP", "none": "no answer"}.get(tried.answer, tried.answer)
        line = (f"{branch_id}: {tried.receiver.where}: {what} after {tried.sends} send(s), "
                f"{tried.ms:.1f} ms")
        if offset is not None:
            line += f"; its clock differs from ours by {offset:+.0f} s (corrected)"
        lines.append(line)
    ok = all(t.acked for _, t, _ in results)
    return "\n".join(lines), 0 if ok else 1

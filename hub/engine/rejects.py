"""Messages the hub refuses: each logged, kept for the devices page, and counted by reason.

Wiring: one :class:`Rejects` per service, given to the intake and the device events; the
store keeps the last rejected messages (``record_rejected``) so IT sees what a device sent
wrong, and the metric ``haven_messages_total{outcome="rejected"}`` carries the reason.
"""

from __future__ import annotations

import logging
from typing import Callable

from device.protocol import Topics

from hub.core.outcome import MessageOutcome
from hub.edges.metrics import Metrics, channel_of
from hub.store import Store

log = logging.getLogger("haven.hub")


class Rejects:
    """``rejects(topic, reason)`` refuses one message; ``reason`` names the topic, the field
    and the fix. ``clock`` returns Unix seconds."""

    def __init__(self, store: Store, metrics: Metrics, topics: Topics, *,
                 clock: Callable[[], float]):
        self.store, self.metrics, self.topics, self.clock = store, metrics, topics, clock

    def __call__(self, topic: str, reason: str) -> MessageOutcome:
        log.warning("rejected message: %s", reason)
        self.store.devices.record_rejected(topic, reason, int(self.clock() * 1000))
        self.metrics.message(channel_of(topic, self.topics), MessageOutcome.REJECTED, reason,
                             topic=topic)
        return MessageOutcome.REJECTED

"""What the hub did with one MQTT message (for logs, metrics and tests)."""

from enum import StrEnum


class MessageOutcome(StrEnum):
    """What :meth:`AlarmService.handle` did with one message."""

    STORED = "stored"          # a new alarm: stored, pages going out
    DUPLICATE = "duplicate"    # an alarm id seen before: confirmed again, nobody re-paged
    STATUS = "status"          # a device status recorded
    EVENT = "event"            # a device event applied (cancel, check-in, self-test ...)
    REJECTED = "rejected"      # broke the wire contract or names an unknown device
    IGNORED = "ignored"        # a topic the hub does not consume

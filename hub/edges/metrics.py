"""Prometheus metrics for one hub worker: messages, rejects, alarms, pages, lag, devices.

One :class:`Metrics` per worker process. Each owns its own ``CollectorRegistry``
(never prometheus_client's global one), so tests and several instances in one
process never collide. ``haven hub --metrics-port 9410`` serves it at
``http://<host>:9410/metrics``; Prometheus scrapes every worker and sums.

Metrics (times in seconds)::

    haven_messages_total{channel, outcome}       counter    MQTT messages handled
        channel  alarm | status | heartbeat | event | cmd | invalid (the topic did not parse)
        outcome  a hub.engine.service.MessageOutcome: stored | duplicate | status | event |
                 rejected | ignored
    haven_rejected_total{reason}                 counter    rejected messages, by
        reason   a short class from :func:`reason_class`: topic | too_large | json |
                 version | kind | device_mismatch | unknown_device | unknown_alarm |
                 field:<name> | other
    haven_alarms_total{kind}                     counter    new alarms stored (presses
                                                            and hub-raised ones)
    haven_pages_total{channel, outcome}  counter    pages
        channel  sms | call
        outcome  sent | failed_retryable | failed_permanent | skipped_claimed |
                 error (the send raised)
    haven_escalation_lag_seconds                 histogram  how late an escalation
                                                            attempt started after its
                                                            due time; 0.01 .. 10 s
    haven_press_to_stored_seconds                histogram  received_at - pressed_at
                                                            (device clock, so clamped at
                                                            0); 0.001 .. 60 s
    haven_devices{state}                         gauge      site devices online | offline

Label values are bounded: topics, device ids and payload text never become
labels (an unparsable channel is ``invalid``, an unknown reason ``other``).

Wiring::

    metrics = Metrics()
    server = metrics.serve("0.0.0.0", 9410)   # .port, .close()
    service = AlarmService(..., metrics=metrics)
    ...
    server.close()
"""

from __future__ import annotations

import re
import threading
from typing import Protocol

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, generate_latest,
                               start_http_server)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from device.protocol import CHANNELS, ProtocolError, Topics

#: The port ``haven hub --metrics-port`` conventionally uses.
DEFAULT_PORT = 9410

#: ``channel`` label of a message whose topic did not parse.
INVALID_CHANNEL = "invalid"

#: The values of :class:`hub.engine.service.MessageOutcome` (not imported: the service imports us).
MESSAGE_OUTCOMES = ("stored", "duplicate", "status", "event", "rejected", "ignored")

#: ``outcome`` label values of ``haven_pages_total``.
PAGE_OUTCOMES = ("sent", "failed_retryable", "failed_permanent", "skipped_claimed",
                         "reconciled", "superseded", "error")

#: ``result`` label values of ``haven_page_lookups_total``: a worker taking over a dead
#: worker's page asked the provider whether it went out, and found it (``found``: recorded,
#: not sent again), did not (``not_found``: sent), or could not ask (``unavailable``: sent
#: anyway, a possible duplicate, since a duplicate beats a gap).
LOOKUP_RESULTS = ("found", "not_found", "unavailable")

#: Escalation lag buckets, in seconds (the timer ticks every 0.2 s).
LAG_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Press-to-stored buckets, in seconds (an outbox replay after an outage lands at 60+).
PRESS_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)

#: Fields device.protocol names in its errors, kept as ``field:<name>`` reasons; any other
#: name becomes ``field:other`` (a reason must never carry text from the wire).
KNOWN_FIELDS = frozenset({
    "device", "alarm_id", "pressed_at", "state", "at", "firmware", "health", "uptime_s",
    "outbox", "health.wifi_dbm", "health.cpu_temp_c", "health.battery_pct", "event", "ok",
    "detail", "cmd"})

#: Every value :func:`reason_class` can return.
REASONS = ("topic", "too_large", "json", "version", "kind", "device_mismatch",
           "unknown_device", "unknown_alarm", *sorted(f"field:{f}" for f in KNOWN_FIELDS),
           "field:other", "other")

# "<where>: message: <problem>" or "<where>: field '<name>': <problem>" (ProtocolError).
_TARGET = re.compile(r"(?:message|field '(?P<field>[^']*)'): (?P<problem>.*)\Z", re.DOTALL)
_SEARCH = re.compile(r": (?=(?:message|field '[^']*'): )")


def reason_class(message: str, topic: str | None = None) -> str:
    """The short class of a rejection message (a ``ProtocolError`` text, or one of the
    service's own ``_reject`` texts), for the ``reason`` label.

    Pass the message's ``topic`` when known: the message starts ``topic <topic>: ``, and a
    topic is arbitrary text that may itself look like ``field 'v': ``. Without it the
    first ``: message: `` or ``: field '...': `` is taken, which a hostile topic can fool
    (into another class from :data:`REASONS`, never into an unbounded label).

    >>> reason_class("topic t/x: field 'v': missing (schema version; expected 1)")
    'version'
    """
    head = f"topic {topic}: " if topic is not None else None
    if head is not None and message.startswith(head):
        match = _TARGET.match(message, len(head))
    else:
        found = _SEARCH.search(message)
        match = _TARGET.match(message, found.end()) if found else None
    if match is None:
        return "other"
    field, problem = match.group("field"), match.group("problem")
    if field is None:
        if problem.startswith(("payload is not valid UTF-8 JSON", "payload must be a JSON",
                               "payload is nested too deeply")):
            return "json"
        if problem.startswith("payload is ") and "bytes; at most" in problem:
            return "too_large"
        if problem.startswith(("not under ", "expected ", "device id ", "not a ", "not an ")):
            return "topic"
        return "other"
    if field == "v":
        return "version"
    if field == "kind":
        return "kind"
    if field == "device" and "does not match the topic's device" in problem:
        return "device_mismatch"
    if field == "device" and " is not in the site config" in problem:
        return "unknown_device"
    if field == "alarm_id" and " is not an alarm of " in problem:
        return "unknown_alarm"
    return f"field:{field}" if field in KNOWN_FIELDS else "field:other"


def channel_of(topic: str, topics: Topics = Topics()) -> str:
    """The ``channel`` label of a topic: its channel, or ``invalid`` if it does not parse."""
    try:
        return topics.parse(topic)[1]
    except ProtocolError:
        return INVALID_CHANNEL


class _Delivery(Protocol):
    ok: bool
    retryable: bool


def delivery_outcome(delivery: _Delivery) -> str:
    """The ``outcome`` label of a :class:`hub.core.model.Delivery`."""
    if delivery.ok:
        return "sent"
    return "failed_retryable" if delivery.retryable else "failed_permanent"


class MetricsServer:
    """The ``/metrics`` HTTP server of :meth:`Metrics.serve`, on a daemon thread."""

    def __init__(self, server, thread: threading.Thread):
        self.server, self.thread = server, thread
        self.host, self.port = server.server_address[:2]

    def close(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Metrics:
    """The metrics of one hub worker, in its own registry (see the module docstring)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._messages = Counter("haven_messages", "MQTT messages handled, by channel and "
                                 "outcome", ("channel", "outcome"), registry=r)
        self._rejected = Counter("haven_rejected", "Messages rejected, by reason class",
                                 ("reason",), registry=r)
        self._alarms = Counter("haven_alarms", "New alarms stored, by kind", ("kind",),
                               registry=r)
        self._pages = Counter("haven_pages", "Pages, by channel and "
                                      "outcome", ("channel", "outcome"), registry=r)
        self._lookups = Counter("haven_page_lookups", "Pages taken over from a dead worker, "
                                "by what the provider's message list said", ("result",),
                                registry=r)
        self._retries = Counter("haven_page_retries", "Pages tried again after a retryable "
                                "failure, by channel", ("channel",), registry=r)
        self._lag = Histogram("haven_escalation_lag_seconds", "How late escalation attempts "
                              "started after their due time", buckets=LAG_BUCKETS_S,
                              registry=r)
        self._press = Histogram("haven_press_to_stored_seconds", "From the press (device "
                                "clock) to the alarm stored (hub clock), clamped at 0",
                                buckets=PRESS_BUCKETS_S, registry=r)
        self._devices = Gauge("haven_devices", "Site devices, by state", ("state",),
                              registry=r)
        self.set_devices(0, 0)

    def message(self, channel: str | None, outcome: str, reason: str | None = None, *,
                topic: str | None = None) -> None:
        """One MQTT message handled. ``channel`` is the topic's channel (``None`` or
        anything else counts as ``invalid``); ``outcome`` a ``hub.engine.service.MessageOutcome``; for a
        rejection, ``reason`` is its message text and ``topic`` its topic (see
        :func:`reason_class`)."""
        outcome = str(outcome)
        if outcome not in MESSAGE_OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {', '.join(MESSAGE_OUTCOMES)}")
        channel = channel if channel in CHANNELS else INVALID_CHANNEL
        self._messages.labels(channel, outcome).inc()
        if outcome == "rejected":
            self._rejected.labels(reason_class(reason or "", topic)).inc()

    def alarm_stored(self, kind: str, press_to_stored_s: float | None = None) -> None:
        """A new alarm stored; ``press_to_stored_s`` is received_at - pressed_at in seconds
        (``None`` for an alarm the hub raised itself: nobody pressed)."""
        self._alarms.labels(kind).inc()
        if press_to_stored_s is not None:
            self._press.observe(max(0.0, press_to_stored_s))

    def page(self, channel: str, outcome: str) -> None:
        """One page: ``channel`` sms or call, ``outcome`` one of
        :data:`PAGE_OUTCOMES` (see :func:`delivery_outcome`)."""
        if outcome not in PAGE_OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of "
                             f"{', '.join(PAGE_OUTCOMES)}")
        self._pages.labels(str(channel), outcome).inc()

    def page_lookup(self, result: str) -> None:
        """A dead worker's page looked up at the provider: one of :data:`LOOKUP_RESULTS`."""
        if result not in LOOKUP_RESULTS:
            raise ValueError(f"result {result!r} is not one of {', '.join(LOOKUP_RESULTS)}")
        self._lookups.labels(result).inc()

    def page_retried(self, channel: str) -> None:
        """A page tried again after a retryable failure (hub.engine.pager)."""
        self._retries.labels(str(channel)).inc()

    def escalation_started(self, lag_s: float) -> None:
        """An escalation attempt started ``lag_s`` seconds after it was due (>= 0)."""
        self._lag.observe(max(0.0, lag_s))

    def set_devices(self, online: int, offline: int) -> None:
        """How many site devices are online and offline now."""
        self._devices.labels("online").set(online)
        self._devices.labels("offline").set(offline)

    def render(self) -> bytes:
        """The metrics in Prometheus text exposition format (:attr:`content_type`)."""
        return generate_latest(self.registry)

    def serve(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` on a daemon thread (port 0: a free one, see
        ``.port``); ``close()`` the result to stop. Needs prometheus_client >= 0.17."""
        started = start_http_server(port, addr=host, registry=self.registry)
        if not isinstance(started, tuple):  # before 0.17 it returned None: no way to stop
            raise RuntimeError("prometheus_client >= 0.17 is needed to serve metrics")
        return MetricsServer(*started)

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's value (``None`` if absent), e.g. ``sample("haven_alarms_total",
        {"kind": "assist"})``: for tests and the CLI."""
        return self.registry.get_sample_value(name, labels or {})

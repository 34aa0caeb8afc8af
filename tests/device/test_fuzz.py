"""Property-based: whatever arrives on the broker, ``AlarmService.handle`` answers calmly.

Streams of garbage bytes, arbitrary JSON, near-valid alarms with one field changed and
arbitrary topics, with a valid alarm (and maybe its redelivery) somewhere among them, go
to a service on fakeredis with the sample site. Senders and escalation run inline, so an
example is deterministic and needs no pool to shut down. Properties:

- ``handle`` returns an :class:`MessageOutcome` and raises nothing;
- anything invalid is REJECTED (or IGNORED on a ``cmd`` topic), recorded in the rejected
  stream with a reason :func:`hub.edges.metrics.reason_class` knows;
- no alarm is stored but the valid ones; the valid alarm is stored exactly once.

Validity is judged by an oracle written from the wire contract in device.protocol's
docstring, not by calling the decoder.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import Executor, Future

import fakeredis
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from device.protocol import CHANNELS, MAX_PAYLOAD_BYTES, Topics, decode_command
from hub.edges.metrics import reason_class
from hub.core.model import Delivery
from hub.engine.service import AlarmService, MessageOutcome
from hub.config.site import load_site
from hub.store.alarms import Store
from tests.conftest import SAMPLE_SITE

NOW = 1763840000.0
HEAD = "haven/v1/dev/"
SITE = load_site(SAMPLE_SITE)  # a file read, nothing connected
DEVICES = sorted(SITE.devices)
KINDS = sorted(SITE.kinds)
FIELDS = ("v", "alarm_id", "kind", "device", "pressed_at")
#: Device and alarm ids, as the contract words them: 1-64 letters, digits, '-' or '_'.
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class InlineExecutor(Executor):
    """Runs each task at once on the caller's thread; its exception lands in the Future,
    as with a pool, so it cannot pass for one escaping ``handle``."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - the Future carries it, as a pool's would
            future.set_exception(exc)
        return future


class RecordingNotifier:
    name = "recording"

    def __init__(self):
        self.sent: list[tuple[str, str]] = []

    def send_sms(self, to, body, *, status_url=None):
        self.sent.append((to, body))
        return Delivery.sent(f"SM{len(self.sent)}")

    def place_call(self, to, text, *, voice_url=None, status_url=None):
        self.sent.append((to, text))
        return Delivery.sent(f"CA{len(self.sent)}")


def build():
    """A fresh service on its own fake Redis server; returns ``(service, store, published)``."""
    store = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))
    published: list[tuple[str, bytes]] = []
    inline = InlineExecutor()
    service = AlarmService(SITE, store, RecordingNotifier(),
                           lambda t, p: published.append((t, p)), inline, escalators=inline,
                           clock=lambda: NOW)
    return service, store, published


# --- the oracle ----------------------------------------------------------------------------

def topic_parts(topic: str) -> tuple[str, str] | None:
    """``(device id, channel)`` of a well-formed device topic, else ``None``."""
    if not topic.startswith(HEAD):
        return None
    parts = topic[len(HEAD):].split("/")
    if len(parts) != 2 or parts[1] not in CHANNELS or not ID.fullmatch(parts[0]):
        return None
    return parts[0], parts[1]


def valid_alarm_id(topic: str, payload: bytes) -> str | None:
    """The alarm id if ``payload`` on ``topic`` is an alarm the hub must store, else None."""
    parts = topic_parts(topic)
    if parts is None or parts[1] != "alarm" or len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        obj = json.loads(payload)
    except Exception:
        return None
    if not isinstance(obj, dict) or any(f not in obj for f in FIELDS):
        return None
    v, device, kind, alarm_id, pressed_at = (obj[f] for f in
                                             ("v", "device", "kind", "alarm_id", "pressed_at"))
    ok = (type(v) in (int, float) and v == 1
          and isinstance(device, str) and device == parts[0] and device in SITE.devices
          and isinstance(kind, str) and kind in SITE.kinds
          and isinstance(alarm_id, str) and ID.fullmatch(alarm_id) is not None
          and type(pressed_at) is int and pressed_at >= 0)
    return alarm_id if ok else None


# --- strategies ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=16)

device_ids = (st.sampled_from(DEVICES) | st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,12}\Z")
              | st.text(max_size=16))
channels = st.sampled_from(CHANNELS) | st.text(max_size=8)
topics = (st.builds(lambda d, c: f"{HEAD}{d}/{c}", device_ids, channels)
          | st.text(max_size=40))
alarm_topics = st.sampled_from(DEVICES).map(Topics().alarm)
#: What a changed field becomes: anything, with the edges of each check drawn often.
EDGES = (-1, 0, 1, 1.0, 2, True, False, None, "", "1", "assist", 2**63, -(2**63), 1e300,
         float("nan"), float("inf"), [], {})
new_values = st.one_of(json_values, device_ids, st.integers(), st.floats(),
                       st.sampled_from(EDGES))


def alarm_obj(device: str, kind: str, alarm_id: str) -> dict:
    return {"v": 1, "alarm_id": alarm_id, "kind": kind, "device": device,
            "pressed_at": int(NOW * 1000) - 800}


@st.composite
def near_valid_alarms(draw) -> tuple[str, bytes]:
    """A valid alarm on its own topic with one field changed, dropped or added."""
    device = draw(st.sampled_from(DEVICES))
    obj = alarm_obj(device, draw(st.sampled_from(KINDS)), str(draw(st.uuids())))
    field = draw(st.sampled_from(FIELDS) | st.sampled_from(FIELDS) | st.text(max_size=10))
    if draw(st.booleans()) and field in obj:
        del obj[field]
    else:
        obj[field] = draw(new_values)
    return Topics().alarm(device), json.dumps(obj).encode()


@st.composite
def valid_alarms_elsewhere(draw) -> tuple[str, bytes]:
    """A valid alarm payload on an arbitrary topic."""
    device = draw(st.sampled_from(DEVICES))
    obj = alarm_obj(device, draw(st.sampled_from(KINDS)), str(draw(st.uuids())))
    return draw(topics), json.dumps(obj).encode()


@st.composite
def unknown_device_alarms(draw) -> tuple[str, bytes]:
    """A valid alarm from a well-formed device id the site config does not list."""
    device = draw(st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,12}\Z").filter(
        lambda d: d not in SITE.devices))
    obj = alarm_obj(device, draw(st.sampled_from(KINDS)), str(draw(st.uuids())))
    return Topics().alarm(device), json.dumps(obj).encode()


def report_obj(device: str, event: str) -> dict:
    if event == "status":
        return {"v": 1, "device": device, "state": "online", "at": int(NOW * 1000),
                "firmware": "0.1.0", "health": {"uptime_s": 60, "outbox": 0, "wifi_dbm": -55.0,
                                                "cpu_temp_c": 41.5, "battery_pct": 90}}
    obj = {"v": 1, "device": device, "event": event, "at": int(NOW * 1000)}
    if event == "cancel":
        obj["alarm_id"] = "a1"
    if event == "selftest":
        obj.update(ok=False, detail="buzzer: no current")
    return obj


@st.composite
def near_valid_reports(draw) -> tuple[str, bytes]:
    """A valid status or event with one field (or one health reading) changed or dropped.
    Some stay valid, so the oracle only asks for the channel's outcome or REJECTED."""
    device = draw(st.sampled_from(DEVICES))
    event = draw(st.sampled_from(["status", "checkin", "selftest", "cancel",
                                  "safe_room_left"]))
    obj = report_obj(device, event)
    target = obj["health"] if event == "status" and draw(st.booleans()) else obj
    field = draw(st.sampled_from(sorted(target)) | st.text(max_size=10))
    if draw(st.booleans()) and field in target:
        del target[field]
    else:
        target[field] = draw(new_values)
    topic = Topics().status(device) if event == "status" else Topics().event(device)
    return topic, json.dumps(obj).encode()


def judged(strategy, exact: bool = True):
    """Tag each ``(topic, payload)`` with whether the oracle judges its outcome exactly."""
    return strategy.map(lambda message: (*message, exact))


messages = st.one_of(
    judged(st.tuples(topics | alarm_topics, st.binary(max_size=200))),
    judged(st.tuples(topics | alarm_topics, json_values.map(lambda x: json.dumps(x).encode()))),
    judged(near_valid_alarms()),
    judged(valid_alarms_elsewhere()),
    judged(unknown_device_alarms()),
    judged(near_valid_reports(), exact=False),
)


@st.composite
def streams(draw) -> tuple[list[tuple[str, bytes, bool]], tuple[str, bytes, bool], list[int]]:
    """Messages with a valid alarm interleaved once, or twice (a broker redelivery)."""
    stream = draw(st.lists(messages, max_size=8))
    device, kind = draw(st.sampled_from(DEVICES)), draw(st.sampled_from(KINDS))
    anchor = (Topics().alarm(device),
              json.dumps(alarm_obj(device, kind, str(draw(st.uuids())))).encode(), True)
    places = sorted(draw(st.lists(st.integers(0, len(stream)), min_size=1, max_size=2)))
    for offset, place in enumerate(places):
        stream.insert(place + offset, anchor)
    return stream, anchor, [place + offset for offset, place in enumerate(places)]


# --- the properties ------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def handle_and_check(service: AlarmService, store: Store, message: tuple[str, bytes, bool],
                     seen: set[str]) -> MessageOutcome:
    """Hand one message to the service and check its outcome against the oracle; adds a
    newly stored alarm's id to ``seen``."""
    topic, payload, exact = message
    outcome = service.handle(topic, payload)  # an exception here fails the property
    assert isinstance(outcome, MessageOutcome), (topic, payload, outcome)
    alarm_id = valid_alarm_id(topic, payload)
    parts = topic_parts(topic)
    if alarm_id is not None:
        expected = MessageOutcome.DUPLICATE if alarm_id in seen else MessageOutcome.STORED
        seen.add(alarm_id)
    elif parts is not None and parts[1] == "cmd":
        expected = MessageOutcome.IGNORED
    else:
        expected = MessageOutcome.REJECTED
    if exact:
        assert outcome is expected, (topic, payload, outcome)
    else:  # a changed status or event may still be valid
        assert outcome in (MessageOutcome.REJECTED, MessageOutcome(parts[1])), (topic, payload, outcome)
    event(str(outcome))
    if outcome is MessageOutcome.REJECTED:
        [record] = store.devices.rejected(count=1)
        assert record["topic"] == topic
        reason = reason_class(record["reason"], topic)
        assert reason != "other", record  # a reason class the metrics know
        event(f"rejected: {reason}")
    return outcome


def stored_ids(store: Store) -> set[str]:
    return {key.removeprefix("haven:alarm:") for key in store.r.scan_iter("haven:alarm:*")}


@FUZZ
@given(st.one_of(judged(near_valid_alarms()), judged(unknown_device_alarms()),
                 judged(valid_alarms_elsewhere()), judged(near_valid_reports(), exact=False)))
def test_a_message_with_one_field_changed_is_judged_by_the_contract(message):
    service, store, _ = build()
    seen: set[str] = set()
    handle_and_check(service, store, message, seen)
    assert stored_ids(store) == seen


@FUZZ
@given(streams())
def test_handle_never_raises_rejects_the_invalid_and_stores_the_valid_once(case):
    stream, anchor, anchor_at = case
    service, store, published = build()
    seen: set[str] = set()
    outcomes = [handle_and_check(service, store, message, seen) for message in stream]

    # Only the valid alarms are stored, each once; the anchor's redelivery raised nothing.
    assert stored_ids(store) == seen
    anchor_id = json.loads(anchor[1])["alarm_id"]
    assert [outcomes[i] for i in anchor_at] == \
        [MessageOutcome.STORED] + [MessageOutcome.DUPLICATE] * (len(anchor_at) - 1)
    assert [e["event"] for e in store.timeline(anchor_id)].count("raised") == 1
    confirmations = [decode_command(t, p).alarm_id for t, p in published]
    assert confirmations.count(anchor_id) == len(anchor_at)  # "received" every time

    # Every rejection is on record, in order.
    rejected = [m[0] for m, o in zip(stream, outcomes) if o is MessageOutcome.REJECTED]
    records = store.devices.rejected(count=len(rejected) + 1)[::-1]  # oldest first
    assert [r["topic"] for r in records] == rejected


# --- the bugs fuzzing found, pinned (both fixed in device/protocol.py) --------------------

@pytest.mark.parametrize("channel", ["alarm", "status", "event"])
def test_deeply_nested_json_is_rejected_not_raised(channel):
    """json.loads raises RecursionError, not ValueError, for "[[[[..." nested past the
    interpreter's limit, well within MAX_PAYLOAD_BYTES."""
    service, store, _ = build()
    topic = f"{HEAD}main-circ-01/{channel}"
    assert service.handle(topic, b"[" * 2000) is MessageOutcome.REJECTED
    assert reason_class(store.devices.rejected(count=1)[0]["reason"], topic) == "json"


@pytest.mark.parametrize("device, alarm_id, reason", [
    ("main-circ-01", "a1\n", "field:alarm_id"),  # "$" ends a line, not the string: stored
    ("main-circ-01\n", "a1", "topic"),           # was rejected, but as an unknown device
])
def test_an_id_with_a_trailing_newline_is_rejected(device, alarm_id, reason):
    service, store, _ = build()
    topic = Topics().alarm(device)
    obj = alarm_obj(device, "assist", alarm_id)
    assert service.handle(topic, json.dumps(obj).encode()) is MessageOutcome.REJECTED
    assert reason_class(store.devices.rejected(count=1)[0]["reason"], topic) == reason
    assert stored_ids(store) == set()

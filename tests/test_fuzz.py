"""Property-based: whatever arrives on the broker, ``AlarmService.handle`` answers calmly.

Streams of garbage bytes, arbitrary JSON, near-valid alarms with one field changed and
arbitrary topics, with a valid alarm (and maybe its redelivery) somewhere among them, go
to a service on fakeredis with the sample site. Senders and escalation run inline, so an
example is deterministic and needs no pool to shut down. Properties:

- ``handle`` returns an :class:`Outcome` and raises nothing;
- anything invalid is REJECTED (or IGNORED on a ``cmd`` topic), recorded in the rejected
  stream with a reason :func:`hub.metrics.reason_class` knows;
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
from hub.metrics import reason_class
from hub.model import Delivery
from hub.service import AlarmService, Outcome
from hub.site import load_site
from hub.store import Store
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
                     seen: set[str]) -> Outcome:
    """Hand one message to the service and check its outcome against the oracle; adds a
    newly stored alarm's id to ``seen``."""
    topic, payload, exact = message
    outcome = service.handle(topic, payload)  # an exception here fails the property
    assert isinstance(outcome, Outcome), (topic, payload, outcome)
    alarm_id = valid_alarm_id(topic, payload)
    parts = topic_parts(topic)
    if alarm_id is not None:
        expected = Outcome.DUPLICATE if alarm_id in seen else Outcome.STORED
        seen.add(alarm_id)
    elif parts is not None and parts[1] == "cmd":
        expected = Outcome.IGNORED
    else:
        expected = Outcome.REJECTED
    if exact:
        assert outcome is expected, (topic, payload, outcome)
    else:  # a changed status or event may still be valid
        assert outcome in (Outcome.REJECTED, Outcome(parts[1])), (topic, payload, outcome)
    event(str(outcome))
    if outcome is Outcome.REJECTED:
        [record] = store.rejected(count=1)
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
        [Outcome.STORED] + [Outcome.DUPLICATE] * (len(anchor_at) - 1)
    assert [e["event"] for e in store.timeline(anchor_id)].count("raised") == 1
    confirmations = [decode_command(t, p).alarm_id for t, p in published]
    assert confirmations.count(anchor_id) == len(anchor_at)  # "received" every time

    # Every rejection is on record, in order.
    rejected = [m[0] for m, o in zip(stream, outcomes) if o is Outcome.REJECTED]
    records = store.rejected(count=len(rejected) + 1)[::-1]  # oldest first
    assert [r["topic"] for r in records] == rejected


# --- the bugs fuzzing found, pinned (both fixed in device/protocol.py) --------------------

@pytest.mark.parametrize("channel", ["alarm", "status", "event"])
def test_deeply_nested_json_is_rejected_not_raised(channel):
    """json.loads raises RecursionError, not ValueError, for "[[[[..." nested past the
    interpreter's limit, well within MAX_PAYLOAD_BYTES."""
    service, store, _ = build()
    topic = f"{HEAD}main-circ-01/{channel}"
    assert service.handle(topic, b"[" * 2000) is Outcome.REJECTED
    assert reason_class(store.rejected(count=1)[0]["reason"], topic) == "json"


@pytest.mark.parametrize("device, alarm_id, reason", [
    ("main-circ-01", "a1\n", "field:alarm_id"),  # "$" ends a line, not the string: stored
    ("main-circ-01\n", "a1", "topic"),           # was rejected, but as an unknown device
])
def test_an_id_with_a_trailing_newline_is_rejected(device, alarm_id, reason):
    service, store, _ = build()
    topic = Topics().alarm(device)
    obj = alarm_obj(device, "assist", alarm_id)
    assert service.handle(topic, json.dumps(obj).encode()) is Outcome.REJECTED
    assert reason_class(store.rejected(count=1)[0]["reason"], topic) == reason
    assert stored_ids(store) == set()


# === the config loaders: every field wrong in turn ===========================================
#
# Each ``key = value`` line of the shipped examples is, in turn, deleted or given a value of
# every other TOML type (and a broken one). The loader must answer with its config error,
# never another exception; a value of the wrong type must never load silently; the site
# loader's every problem must say FILE:LINE.

import tomllib  # noqa: E402

from device.config import DeviceConfigError, parse_device_config  # noqa: E402
from hub.errors import ConfigError  # noqa: E402
from hub.site import parse_site  # noqa: E402

EXAMPLES = SAMPLE_SITE.parent
ASSIGNMENT = re.compile(r"^(\s*)([A-Za-z0-9_\-\"]+)\s*=\s*(.+?)\s*(#.*)?$")
#: A value of each TOML type, for substituting in turn.
LITERALS = {"string": '"wrong"', "integer": "-7", "float": "0.5", "boolean": "true",
            "array": '["wrong", 1]', "table": '{ wrong = 1 }', "datetime": "2026-01-01T00:00:00"}


def toml_type(value) -> str:
    import datetime
    for name, kind in (("boolean", bool), ("integer", int), ("float", float),
                       ("string", str), ("array", list), ("table", dict),
                       ("datetime", datetime.datetime)):
        if isinstance(value, kind):
            return name
    return "other"


def config_mutations(text: str):
    """``(line number, description, mutated text, wrong_type)`` for every assignment line."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        m = ASSIGNMENT.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        indent, key, raw = m.group(1), m.group(2), m.group(3)
        try:
            original = toml_type(tomllib.loads(f"x = {raw}")["x"])
        except tomllib.TOMLDecodeError:
            continue  # a multi-line value: its first line only
        variants = [("deleted", None, False)]
        variants += [(f"as {name}", literal, name != original
                      and {name, original} != {"integer", "float"})
                     for name, literal in LITERALS.items()]
        variants.append(("unclosed", '"broken', True))
        for what, literal, wrong in variants:
            changed = list(lines)
            if literal is None:
                del changed[index]
            else:
                changed[index] = f"{indent}{key} = {literal}"
            yield index + 1, f"line {index + 1} {key} {what}", "\n".join(changed) + "\n", wrong


SITE_CASES = list(config_mutations(SAMPLE_SITE.read_text()))


def test_the_site_loader_answers_every_wrong_field_with_file_and_line():
    loaded_wrong, checked = [], 0
    for line, what, text, wrong in SITE_CASES:
        try:
            parse_site(text, "site.toml")
        except ConfigError as exc:
            checked += 1
            assert exc.problems, what
            for problem in exc.problems:
                assert problem.line is not None, (what, str(problem))
                assert str(problem).startswith(f"site.toml:{problem.line}: "), (what, problem)
                assert problem.problem.strip(), (what, problem)
            if wrong and "deleted" not in what:  # it points at the very line changed
                assert line in {p.line for p in exc.problems}, (what, exc.problems)
            continue
        except Exception as exc:  # noqa: BLE001 - the property: nothing else escapes
            pytest.fail(f"{what}: {type(exc).__name__}: {exc}")
        if wrong:
            loaded_wrong.append(what)
    assert not loaded_wrong, f"wrong values loaded silently: {loaded_wrong}"
    assert len(SITE_CASES) > 500 and checked > 400, (len(SITE_CASES), checked)


def device_example(name: str) -> str:
    """A shipped device config, minus the TLS files that exist only on a provisioned Pi."""
    text = (EXAMPLES / name).read_text()
    return "\n".join(l for l in text.splitlines()
                     if not re.match(r"\s*(ca_file|cert_file|key_file|password_file)\s*=", l))


DEVICE_CASES = [(name, *case) for name in ("device-wall.toml", "device-wearable.toml",
                                           "device-safe-room.toml")
                for case in config_mutations(device_example(name))]


def test_the_device_loader_answers_every_wrong_field_with_file_and_field():
    loaded_wrong = []
    for name, line, what, text, wrong in DEVICE_CASES:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            continue  # load_device_config reports these with the file name (tests/test_device)
        try:
            parse_device_config(data, name)
        except DeviceConfigError as exc:
            for problem in str(exc).splitlines():
                assert problem.startswith(f"{name}: "), (what, problem)
                assert len(problem.split(": ", 2)) == 3, (what, problem)  # file: field: why
            continue
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"{name} {what}: {type(exc).__name__}: {exc}")
        if wrong:
            loaded_wrong.append(f"{name} {what}")
    assert not loaded_wrong, f"wrong values loaded silently: {loaded_wrong}"
    assert len(DEVICE_CASES) > 100


def test_a_device_outbox_of_the_wrong_type_is_refused():
    text = device_example("device-wall.toml").replace(
        'outbox = "/var/lib/haven/outbox.sqlite3"', "outbox = 42")
    with pytest.raises(DeviceConfigError, match="device.outbox"):
        parse_device_config(tomllib.loads(text), "device-wall.toml")


# === the Twilio webhooks: unsigned, wrongly signed, replayed, oversized =====================

import functools  # noqa: E402
import uuid  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402

from twilio.request_validator import RequestValidator  # noqa: E402

from dashboard import create_app  # noqa: E402
from hub.model import AlarmState  # noqa: E402
from tests.dashboard_login import logged_in_client  # noqa: E402
from tests.test_twilio_hooks import CIRC, LOCAL, TOKEN, alarm as make_alarm, raise_paged  # noqa: E402

#: Markup and template syntax to plant in every field; must come back escaped, if at all.
MARKUP = ('<b id="fz">', '"><img src=x onerror=alert(1)>', "</textarea><script>x()</script>",
          "{{ 7*7 }}", "{% raw %}", "\u202e\u0000\ud7ff", "'; --", "%s%n")
field_text = st.one_of(st.text(max_size=40), st.sampled_from(MARKUP),
                       st.builds(lambda a, b: a + b, st.text(max_size=10), st.sampled_from(MARKUP)))
HOOK_ROUTES = ["/twilio/sms", "/twilio/voice/say", "/twilio/voice/gather", "/twilio/status"]
TWILIO_FIELDS = ["From", "To", "Body", "Digits", "MessageStatus", "CallStatus", "AnsweredBy",
                 "ErrorCode", "AccountSid"]
hook_forms = st.dictionaries(st.sampled_from(TWILIO_FIELDS) | st.text(min_size=1, max_size=8),
                             field_text, max_size=6)
hook_queries = st.dictionaries(st.sampled_from(["alarm", "key", "round"]),
                               field_text | st.just("a1") | st.just("a1:0:+12065550101:sms"),
                               max_size=2)


def snapshot(store: Store) -> dict:
    """Every key and value in the store, to prove a refused request changed nothing."""
    out = {}
    for key in store.r.scan_iter("*"):
        kind = store.r.type(key)
        out[key] = (store.r.hgetall(key) if kind == "hash" else store.r.xrange(key)
                    if kind == "stream" else store.r.get(key) if kind == "string"
                    else store.r.zrange(key, 0, -1, withscores=True) if kind == "zset"
                    else kind)
    return out


def hook_app():
    service, store, _ = build()
    raise_paged(store, make_alarm(), CIRC)
    client = create_app(SITE, store, twilio_auth_token=TOKEN).test_client()
    return service, store, client


def path_with(route: str, query: dict[str, str]) -> str:
    from urllib.parse import urlencode
    return route + (f"?{urlencode(query)}" if query else "")


BAD_SIGNATURES = {
    "missing": lambda url, form: None,
    "empty": lambda url, form: "",
    "wrong token": lambda url, form: RequestValidator("not-the-token").compute_signature(url, form),
    "other url": lambda url, form: RequestValidator(TOKEN).compute_signature(url + "x", form),
    "other form": lambda url, form: RequestValidator(TOKEN).compute_signature(
        url, {**form, "Body": "1", "Digits": "1"} if form.get("Body") != "1" else {}),
    "garbage": lambda url, form: "A" * 28 + "=",
}


HOOKS_FUZZ = settings(FUZZ, max_examples=200)


@HOOKS_FUZZ
@given(st.sampled_from(HOOK_ROUTES), hook_queries, hook_forms,
       st.sampled_from(sorted(BAD_SIGNATURES)))
def test_a_webhook_without_a_valid_signature_is_refused_and_changes_nothing(route, query, form,
                                                                            how):
    _, store, client = hook_app()
    before = snapshot(store)
    path = path_with(route, query)
    signature = BAD_SIGNATURES[how](LOCAL + path, form)
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    response = client.post(path, data=form, headers=headers)
    event(f"refused: {how}")
    assert response.status_code == 403, (how, response.status_code)
    assert b"signature" in response.data
    assert snapshot(store) == before


@HOOKS_FUZZ
@given(st.sampled_from(HOOK_ROUTES), hook_queries, hook_forms)
def test_a_signed_webhook_with_any_content_gets_a_clear_answer(route, query, form):
    _, store, client = hook_app()
    path = path_with(route, query)
    response = client.post(path, data=form, headers={
        "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(LOCAL + path, form)})
    event(f"{route}: {response.status_code}")
    assert response.status_code in (200, 204, 400), response.status_code
    if response.status_code == 200:
        ET.fromstring(response.data)  # TwiML Twilio can read
        assert response.mimetype == "text/xml"
    if response.status_code == 400:
        assert response.data.strip()  # says what was wrong
    for text in MARKUP[:3]:  # nothing planted is echoed back as markup
        assert text.encode() not in response.data


@pytest.mark.parametrize("times", [2, 5])
@pytest.mark.parametrize("route, form", [
    ("/twilio/sms", {"From": CIRC[0], "Body": "1"}),
    ("/twilio/voice/gather?alarm=a1", {"To": CIRC[0], "Digits": "1"}),
])
def test_a_replayed_acknowledgement_acknowledges_once(route, form, times):
    _, store, client = hook_app()
    headers = {"X-Twilio-Signature":
               RequestValidator(TOKEN).compute_signature(LOCAL + route, form)}
    answers = [client.post(route, data=form, headers=headers) for _ in range(times)]
    assert all(a.status_code == 200 for a in answers)
    assert [e["event"] for e in store.timeline("a1")].count("acknowledged") == 1
    assert store.get_alarm("a1").state is AlarmState.ACKNOWLEDGED
    assert b"Already acknowledged" in answers[-1].data


def test_a_replayed_failure_callback_places_one_call():
    """Twilio retries callbacks; an attacker may replay one. Each queues a follow-up, but
    they share the page's key, so the hub calls once."""
    service, store, client = hook_app()
    path = "/twilio/status?" + "key=a1%3A0%3A%2B12065550101%3Asms"
    form = {"MessageStatus": "undelivered", "ErrorCode": "30003", "To": CIRC[0]}
    headers = {"X-Twilio-Signature":
               RequestValidator(TOKEN).compute_signature(LOCAL + path, form)}
    for _ in range(3):
        assert client.post(path, data=form, headers=headers).status_code == 204
    followups = store.r.xrange("haven:followups")
    assert len(followups) == 3
    for _, fields in followups:
        service.followup(fields["key"], fields["status"])
    assert service.notifier.sent == [(CIRC[0], service.notifier.sent[0][1])]  # one call


@pytest.mark.parametrize("signed", [False, True])
def test_an_oversized_webhook_is_answered_not_crashed(signed):
    _, store, client = hook_app()
    before = snapshot(store)
    form = {"From": CIRC[0], "Body": "1" + " " * 100 + "x" * (2 << 20)}  # 2 MiB
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(
        LOCAL + "/twilio/sms", form)} if signed else {}
    response = client.post("/twilio/sms", data=form, headers=headers)
    assert response.status_code in ((200, 413) if signed else (403, 413))
    if response.status_code == 200:
        assert "Reply 1" in reply_text(response)  # not an acknowledgement word: the help
    assert snapshot(store) == before


def reply_text(response) -> str:
    message = ET.fromstring(response.data).find("Message")
    return "" if message is None else message.text or ""


# === the dashboard's forms: CSRF missing, markup in every field =============================

FORMS = {  # route (alarm id / branch id / device id filled in) -> its fields
    "/alarms/{alarm}/acknowledge": (),
    "/alarms/{alarm}/resolve": ("outcome", "note"),
    "/alarms/{alarm}/cancel": ("reason",),
    "/branches/{branch}/drill/start": ("minutes",),
    "/branches/{branch}/drill/end": (),
    "/branches/{branch}/lone-worker": ("mode",),
    "/devices/{device}/locate": (),
    "/logout": (),
}
PAGES = ["/", "/alarms/{alarm}", "/branches", "/devices"]


def form_app():
    store = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))
    app = create_app(SITE, store)
    return app, store


def fresh_alarm(store: Store) -> str:
    a = make_alarm(id=str(uuid.uuid4()), at_ms=int(NOW * 1000))
    store.raise_alarm(a, escalate=True)
    return a.id


def test_every_form_without_its_csrf_token_is_refused_and_changes_nothing():
    app, store = form_app()
    admin = logged_in_client(app, store, "ari", "admin")
    alarm_id = fresh_alarm(store)
    for route, fields in FORMS.items():
        path = route.format(alarm=alarm_id, branch="main", device="main-circ-01")
        form = {f: "x" for f in fields}
        for token in (None, "", "forged-token"):
            before = snapshot(store)
            # the client sends its session's token in a header: blank it, or forge one
            response = admin.post(path, data=form,
                                  environ_overrides={"HTTP_X_CSRF_TOKEN": token or ""})
            assert response.status_code == 400, (path, token, response.status_code)
            assert b"CSRF token missing or wrong" in response.data, path
            changed = {k for k in set(snapshot(store)) | set(before)
                       if snapshot(store).get(k) != before.get(k) and "session" not in k}
            assert not changed, (path, changed)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(set(FORMS) - {"/logout"}) + ["/login"]), st.data())
def test_markup_in_any_form_field_comes_back_escaped_or_not_at_all(route, data):
    app, store, client = form_client()
    alarm_id = fresh_alarm(store)
    if route == "/login":  # a stranger's form: the username is shown back on failure
        form = {f: data.draw(field_text, label=f) for f in ("username", "password", "next")}
        stranger = app.test_client()
        stranger.get("/login")  # the form puts a CSRF token in the new session
        with stranger.session_transaction() as session:
            form["csrf_token"] = session["csrf"]
        response = stranger.post("/login", data=form)
        event(f"/login: {response.status_code}")
        assert response.status_code in (400, 401, 429), response.status_code
        for text in MARKUP[:3]:
            assert text.encode() not in response.data, (form, text)
        return
    fields = FORMS[route]
    form = {f: data.draw(field_text | st.sampled_from(MARKUP), label=f) for f in fields}
    # a path segment may carry markup too (an unknown id: a clear 404)
    segment = data.draw(st.sampled_from(["ok", "markup"]), label="segment")
    ids = dict(alarm=alarm_id, branch="main", device="main-circ-01")
    if segment == "markup":
        key = {"a": "alarm", "b": "branch", "d": "device"}[route[1]]
        ids[key] = "fz<b>"
    response = client.post(route.format(**ids), data=form)
    event(f"{route}: {response.status_code}")
    assert response.status_code in (200, 303, 400, 404), (route, response.status_code)
    answers = [response]
    for page in PAGES:
        shown = client.get(page.format(alarm=alarm_id))
        assert shown.status_code == 200, (page, shown.status_code)
        answers.append(shown)
    for answer in answers:
        if answer.mimetype == "application/json":  # errors for scripts: data, not a page
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            json.loads(answer.data)
            continue
        for text in MARKUP[:3]:
            assert text.encode() not in answer.data, (route, form, text)
        assert b"fz<b>" not in answer.data


@functools.cache
def form_client():
    """One logged-in admin for every example (logging in per example would dominate)."""
    app, store = form_app()
    return app, store, logged_in_client(app, store, "ari", "admin")


def test_a_replayed_sms_reply_does_not_acknowledge_a_later_alarm():
    _, store, client = hook_app()
    form = {"From": CIRC[0], "Body": "1", "MessageSid": "SM" + "1" * 32}
    headers = {"X-Twilio-Signature":
               RequestValidator(TOKEN).compute_signature(LOCAL + "/twilio/sms", form)}
    assert client.post("/twilio/sms", data=form, headers=headers).status_code == 200
    assert store.get_alarm("a1").state is AlarmState.ACKNOWLEDGED
    raise_paged(store, make_alarm(id="a2", at_ms=2_000), CIRC)  # a new alarm, same person
    client.post("/twilio/sms", data=form, headers=headers)  # the old request, replayed
    assert store.get_alarm("a2").state is AlarmState.RAISED

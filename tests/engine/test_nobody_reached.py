"""Accepted is not received: when every page of an attempt is reported undelivered or
unanswered (signed Twilio status callbacks), the wearer is told NOT delivered, the
branch's fallback contacts are texted and the dashboard says "nobody reached"; once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from dashboard import create_app
from hub.core.reach import AttemptReach, Reach, attempt_reach
from hub.engine.service import AlarmService
from hub.store.alarms import Store
from tests.dashboard_login import logged_in_client
from tests.engine.test_escalation import Clock, InlinePool, Recorder, phones, raise_alarm
from tests.dashboard.test_twilio_hooks import TOKEN, post

FALLBACK_TEXT = "HAVEN could not reach anyone for: "


# --- the pure decision -------------------------------------------------------------

def escalation(attempt="0", notifications="2"):
    return {"event": "escalation", "attempt": attempt, "notifications": notifications}


def page(to, channel="sms", step="0", event="notified"):
    return {"event": event, "step": step, "channel": channel, "to": to}


def report(to, status, channel="sms", attempt="0", answered_by=""):
    return {"event": "delivery_status", "attempt": attempt, "channel": channel, "to": to,
            "status": status, "answered_by": answered_by}


@pytest.mark.parametrize("entries, expected", [
    ([escalation(), page("+1"), page("+2", "call")], Reach.PENDING),          # no reports yet
    ([escalation(), page("+1"), page("+2", "call"), report("+1", "undelivered")],
     Reach.PENDING),                                                         # one to come
    ([escalation(), page("+1"), page("+2", "call"), report("+1", "undelivered"),
      report("+2", "busy", "call")], Reach.NOBODY),
    ([escalation(), page("+1"), page("+2", "call"), report("+1", "failed"),
      report("+2", "completed", "call", answered_by="machine_end_beep")], Reach.NOBODY),
    ([escalation(), page("+1", event="notify_failed"), page("+2", "call"),
      report("+2", "no-answer", "call")], Reach.NOBODY),                     # one refused
    ([escalation(), page("+1"), page("+2", "call"), report("+1", "undelivered"),
      report("+2", "completed", "call", answered_by="human")], Reach.REACHED),
    ([escalation(), page("+1"), page("+2", "call"), report("+1", "undelivered"),
      report("+2", "completed", "call")], Reach.REACHED),          # no machine detection
    ([escalation(), page("+1"), page("+2", "call"), report("+1", "delivered"),
      report("+1", "undelivered"), report("+2", "busy", "call")], Reach.REACHED),  # any order
    ([escalation(), page("+1"), page("+2", "call"), report("+1", "sent"),
      report("+2", "canceled", "call")], Reach.PENDING),           # "sent" is not final
    ([escalation(), page("+1"), report("+1", "undelivered")], Reach.PENDING),  # 1 of 2 known
    ([escalation(), page("+1"), page("+2", "call"), report("+1", "undelivered", attempt="1"),
      report("+2", "busy", "call", attempt="1")], Reach.PENDING),  # another attempt's
    ([page("+1"), report("+1", "undelivered")], Reach.PENDING),    # attempt never logged
], ids=["no-reports", "one-to-come", "sms-and-call-failed", "voicemail", "refused-and-no-answer",
        "answered-by-a-person", "answered", "delivered-first", "sent-only", "page-unknown",
        "other-attempt", "no-escalation-entry"])
def test_an_attempt_reached_nobody_only_when_every_page_has_ended_unreached(entries,
                                                                            expected):
    assert attempt_reach(entries, 0).reach is expected


def test_a_report_before_its_page_was_recorded_still_counts_the_page():
    entries = [escalation(), report("+1", "undelivered"), report("+2", "busy", "call")]
    assert attempt_reach(entries, 0) == AttemptReach(Reach.NOBODY, 2, frozenset({"+1", "+2"}))


# --- the service and the dashboard, driven by signed status callbacks --------------------

FINAL = {"sms": {"MessageStatus": "undelivered", "ErrorCode": "30003"},
         "call": {"CallStatus": "no-answer"}}


def pages_of(store: Store, alarm_id: str, attempt: int = 0) -> list[tuple[str, str]]:
    return [(e["channel"], e["to"]) for e in store.timeline(alarm_id)
            if e["event"] == "notified" and e["step"] == str(attempt)]


def callback(client, alarm_id: str, channel: str, to: str, form: dict[str, str]) -> None:
    key = quote(f"{alarm_id}:0:{to}:{channel}", safe="")
    assert post(client, f"/twilio/status?key={key}", {**form, "To": to}).status_code == 204


def drain_followups(service: AlarmService, store: Store, consumer: str = "w1") -> int:
    """What a hub worker's follow-up loop does (hub.app.runner): each queued report, once."""
    entries = store.pages.read_followups(consumer, block_ms=5)
    for entry_id, fields in entries:
        service.followup(fields["key"], fields["status"])
        store.pages.ack_followup(entry_id)
    return len(entries)


def not_delivered(store: Store, alarm_id: str) -> int:
    return sum(1 for _, f in store.r.xrange("haven:device-commands")
               if f["cmd"] == "not_delivered" and f.get("alarm_id") == alarm_id)


def paging(store: Store, alarm_id: str) -> int:
    return sum(1 for _, f in store.r.xrange("haven:device-commands")
               if f["cmd"] == "paging" and f.get("alarm_id") == alarm_id)


def fallback_texts(notifier: Recorder) -> list[str]:
    return [to for ch, to, text in notifier.sent if text.startswith(FALLBACK_TEXT)]


@pytest.fixture
def rig(sample_site, fake_store):
    pool, notifier = InlinePool(), Recorder()
    service = AlarmService(sample_site, fake_store, notifier, lambda t, p: None, pool,
                           escalators=pool, clock=Clock())
    app = create_app(sample_site, fake_store, twilio_auth_token=TOKEN)
    return service, notifier, fake_store, logged_in_client(app, fake_store)


def board_item(client, alarm_id: str) -> dict:
    [item] = [a for a in client.get("/api/board").get_json()["active"] if a["id"] == alarm_id]
    return item


def test_every_page_reported_unreached_tells_the_wearer_the_fallback_and_the_board(
        rig, sample_site):
    service, notifier, store, client = rig
    alarm_id = raise_alarm(service)  # emergency: desk, Dana, police by call and SMS
    paged = pages_of(store, alarm_id)
    assert len(paged) == 6
    *first, last = paged
    for channel, to in first:
        callback(client, alarm_id, channel, to, FINAL[channel])
    drain_followups(service, store)
    assert not_delivered(store, alarm_id) == 0  # one report still to come
    assert not board_item(client, alarm_id)["nobody_reached"]

    callback(client, alarm_id, *last, FINAL[last[0]])
    assert drain_followups(service, store) == 1

    assert not_delivered(store, alarm_id) == 1
    assert fallback_texts(notifier) == sorted(phones(sample_site, "Security desk"))
    [failed] = [e for e in store.timeline(alarm_id) if e["event"] == "delivery_failed"]
    assert (failed["attempt"], failed["tried"]) == ("0", "6")
    assert board_item(client, alarm_id)["nobody_reached"] is True
    page = client.get(f"/alarms/{alarm_id}").get_data(as_text=True)
    assert "Nobody reached" in page and "reported not delivered" in page

    # Twilio retries a callback: the same decision again changes nothing
    callback(client, alarm_id, *last, FINAL[last[0]])
    drain_followups(service, store)
    assert not_delivered(store, alarm_id) == 1 and len(fallback_texts(notifier)) == 1

    # the calls placed instead of the failed texts were accepted, but accepted is not
    # reached: the wearer still reads "use the phone"
    assert paging(store, alarm_id) == 0
    # a later page reaches someone: the board no longer says nobody was reached, and the
    # wearer is told help is being called, once
    callback(client, alarm_id, "call", last[1], {"CallStatus": "completed",
                                                 "AnsweredBy": "human"})
    assert board_item(client, alarm_id)["nobody_reached"] is False
    callback(client, alarm_id, "sms", last[1], {"MessageStatus": "delivered"})
    assert paging(store, alarm_id) == 1
    assert [e["event"] for e in store.timeline(alarm_id)].count("paging_resumed") == 1
    assert "Nobody reached</strong>" not in client.get(f"/alarms/{alarm_id}").get_data(
        as_text=True)


def test_one_delivered_page_means_someone_was_reached(rig):
    service, notifier, store, client = rig
    alarm_id = raise_alarm(service)
    (channel, to), *rest = pages_of(store, alarm_id)
    callback(client, alarm_id, channel, to, {"MessageStatus": "delivered", "CallStatus":
                                             "completed"})
    for channel, to in rest:
        callback(client, alarm_id, channel, to, FINAL[channel])
    drain_followups(service, store)
    assert not_delivered(store, alarm_id) == 0 and fallback_texts(notifier) == []
    assert board_item(client, alarm_id)["nobody_reached"] is False


def test_two_workers_deciding_at_once_tell_the_wearer_and_the_fallback_once(
        sample_site, redis_service):
    """Two hub workers on one real redis-server each take the attempt's last report (a
    redelivery after a worker stalled): both see nobody reached; one acts."""
    stores = [Store.from_url(redis_service.url) for _ in range(2)]
    notifiers = [Recorder(), Recorder()]
    workers = [AlarmService(sample_site, store, notifier, lambda t, p: None, InlinePool(),
                            escalators=InlinePool(), clock=Clock())
               for store, notifier in zip(stores, notifiers)]
    client = create_app(sample_site, stores[0], twilio_auth_token=TOKEN).test_client()
    alarm_id = raise_alarm(workers[0])  # emergency: 6 pages, security (fallback) not in them
    paged = pages_of(stores[0], alarm_id)
    for channel, to in paged:
        callback(client, alarm_id, channel, to, FINAL[channel])
    last_key = f"{alarm_id}:0:{paged[-1][1]}:{paged[-1][0]}"
    start = threading.Barrier(2)

    def decide(service):
        with ThreadPoolExecutor(4) as senders:  # sends on threads, as in a hub
            service.senders = senders
            start.wait(5)
            service.followup(last_key, "undelivered")
    threads = [threading.Thread(target=decide, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert not_delivered(stores[0], alarm_id) == 1
    assert [e["event"] for e in stores[0].timeline(alarm_id)].count("delivery_failed") == 1
    assert [to for n in notifiers for to in fallback_texts(n)] == sorted(
        phones(sample_site, "Security desk"))
    for store in stores:
        store.r.close()

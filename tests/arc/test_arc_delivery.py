"""The ARC link end to end against pysiaalarm receivers on loopback (hub.arc.queue,
hub.arc.sender): events with the right account, code and zone, encrypted and not;
restores and cancels; drills as tests; the backup; NAK clock correction; trouble and
catching up when a receiver is back; exactly once across workers."""

from __future__ import annotations

import socketserver
import threading
import time

import pytest

from device.protocol import Topics, new_alarm
from hub.arc.dc09 import answer_frame
from hub.core.lifecycle import AlarmEvent
from hub.core.model import Alarm
from hub.engine.service import AlarmService, MessageOutcome
from tests.arc_kit import (TEXT_KEY, Receiver, Silent, arc_parts, arc_site, drain,
                           free_port)
from tests.engine.test_service import Pools, RecordingNotifier


@pytest.fixture
def receivers():
    started: list = []

    def start(**kwargs) -> Receiver:
        r = Receiver(**kwargs)
        started.append(r)
        return r
    yield start
    for r in started:
        r.stop()


def raise_alarm(store, kind="emergency", room="circulation", branch="main"):
    now_ms = int(time.time() * 1000)
    alarm = Alarm(id=f"a{time.monotonic_ns()}", kind=kind, device="main-circ-01", branch=branch,
                  room=room, pressed_at_ms=now_ms, received_at_ms=now_ms)
    store.raise_alarm(alarm)
    return alarm


def arc_timeline(store, alarm_id):
    return [e for e in store.timeline(alarm_id) if e["event"] == "arc"]


@pytest.mark.parametrize("fmt, protocol, key, code, zone_of", [
    ("sia-dcs", "tcp", None, "PA", lambda e: e.message),
    ("sia-dcs", "tcp", TEXT_KEY, "PA", lambda e: e.message),
    ("adm-cid", "tcp", TEXT_KEY, "PA", lambda e: e.ri),
    ("sia-dcs", "udp", None, "PA", lambda e: e.message),
])
def test_an_alarm_reaches_the_arc_with_account_code_zone_and_place(
        receivers, fake_store, fmt, protocol, key, code, zone_of):
    arc = receivers(key=key, protocol=protocol)
    site = arc_site(arc.port, fmt=fmt, protocol=protocol, key=key is not None)
    queue, sender = arc_parts(site, fake_store)
    alarm = raise_alarm(fake_store, room="reference")  # the 2nd room of main: zone 2
    assert queue.alarm_raised(alarm) > 0
    drain(sender)
    event = arc.next_event()
    assert (event.account, event.code, int(zone_of(event))) == ("1001", code, 2)
    assert event.encrypted is (key is not None)
    main = site.branches["main"]
    assert event.x_data == f"I{site.kinds['emergency'].label}: {main.name}, " \
                           f"{main.room('reference').name}"
    [queued, sent] = arc_timeline(fake_store, alarm.id)
    assert (queued["outcome"], sent["outcome"], sent["phase"]) == ("queued", "ACK", "alarm")
    assert sent["receiver"] == f"primary 127.0.0.1:{arc.port}/{protocol}"


def test_restore_follows_acknowledge_once_and_cancel_is_its_own_event(receivers, fake_store):
    arc = receivers()
    queue, sender = arc_parts(arc_site(arc.port), fake_store)
    now = int(time.time() * 1000)
    first, second = raise_alarm(fake_store), raise_alarm(fake_store, room="children")
    queue.alarm_raised(first)
    queue.alarm_raised(second)
    acked = fake_store.transition(first.id, AlarmEvent.ACKNOWLEDGE, by="Dana", now_ms=now)
    queue.alarm_changed(acked)
    resolved = fake_store.transition(first.id, AlarmEvent.RESOLVE, by="Dana", now_ms=now,
                                     reason="left")
    assert queue.alarm_changed(resolved) == 0  # the acknowledgement's restore was the one
    cancelled = fake_store.transition(second.id, AlarmEvent.CANCEL_OPERATOR, by="Dana",
                                      now_ms=now, reason="pressed by mistake")
    queue.alarm_changed(cancelled)
    drain(sender)
    got = [(e.code, e.message) for e in (arc.next_event() for _ in range(4))]
    assert got == [("PA", "001"), ("PA", "003"), ("PR", "001"), ("OC", "003")]
    assert arc.quiet()


def test_a_drill_sends_a_test_event_never_an_alarm(receivers, fake_store):
    arc = receivers()
    queue, sender = arc_parts(arc_site(arc.port), fake_store)
    now_ms = int(time.time() * 1000)
    fake_store.branches.set_branch_switches("main", by="Dana", now_ms=now_ms,
                                            drill_until_ms=now_ms + 600_000)
    drill = fake_store.get_alarm(raise_alarm(fake_store).id)
    assert drill.drill  # the raise decided it from the branch's switch (hub.core.drill)
    queue.alarm_raised(drill)
    queue.alarm_changed(fake_store.transition(drill.id, AlarmEvent.ACKNOWLEDGE, by="Dana",
                                              now_ms=int(time.time() * 1000)))
    drain(sender)
    event = arc.next_event()
    assert (event.code, event.account) == ("RX", "1001")
    assert event.x_data.startswith("IDRILL EMERGENCY")
    assert arc.quiet()  # and no restore for a test


def test_a_numbered_room_is_sent_as_its_zone(receivers, fake_store):
    arc = receivers()
    site = arc_site(arc.port, extra="[arc.zones]\nwestside = { front-desk = 41, "
                                    "safe-room = 42 }\n")
    queue, sender = arc_parts(site, fake_store)
    queue.alarm_raised(raise_alarm(fake_store, branch="westside", room="safe-room"))
    drain(sender)
    event = arc.next_event()
    assert (event.account, event.message) == ("1002", "042")


def test_kinds_and_branches_not_configured_are_not_sent(fake_store):
    queue, _ = arc_parts(arc_site(free_port()), fake_store)
    assert queue.alarm_raised(raise_alarm(fake_store, kind="assist")) == 0
    assert queue.waiting() == 0


def test_a_safe_room_alarm_says_staff_shelter_there(receivers, fake_store):
    arc = receivers()
    queue, sender = arc_parts(arc_site(arc.port), fake_store)
    queue.alarm_raised(raise_alarm(fake_store, kind="safe_room", room="safe-room"))
    drain(sender)
    event = arc.next_event()
    assert (event.code, event.message) == ("HA", "005")
    room = arc_site(arc.port).branches["main"].room("safe-room")
    assert event.x_data.endswith(f"staff sheltering in {room.name}")


@pytest.mark.parametrize("primary", ["refused", "silent"])
def test_the_backup_gets_it_when_the_primary_does_not_answer(receivers, fake_store, primary):
    backup = receivers()
    silent = Silent() if primary == "silent" else None
    port = silent.port if silent else free_port()
    told: list[str] = []
    queue, sender = arc_parts(arc_site(port, backup.port), fake_store, told=told)
    alarm = raise_alarm(fake_store)
    queue.alarm_raised(alarm)
    drain(sender)
    assert backup.next_event().code == "PA"
    outcomes = [(e.get("receiver", " ").split(" ")[0], e["outcome"], e.get("sends"))
                for e in arc_timeline(fake_store, alarm.id)]
    assert outcomes == [("", "queued", None), ("primary", "none", "2"), ("backup", "ACK", "1")]
    assert set(queue.troubles()) == {"primary"} and "primary receiver" in told[0]
    if silent:
        silent.stop()


def test_both_down_is_a_trouble_pages_go_on_and_events_follow_when_one_is_back(
        receivers, fake_store, sample_site):
    arc = receivers()
    arc.stop()  # down before the alarms
    told: list[str] = []
    site = arc_site(arc.port, free_port())
    queue, sender = arc_parts(site, fake_store, told=told)
    notifier, pool = RecordingNotifier(), Pools()
    service = AlarmService(site, fake_store, notifier, lambda t, p: None, pool.senders,
                           escalators=pool.escalators)
    service.arc = queue
    msg = new_alarm("main-circ-01", "emergency")
    assert service.handle(Topics().alarm(msg.device), msg.to_json()) is MessageOutcome.STORED
    acked = fake_store.transition(msg.alarm_id, AlarmEvent.ACKNOWLEDGE, by="Dana",
                                  now_ms=int(time.time() * 1000))
    service.command_forwarded({"cmd": "acknowledged", "alarm_id": msg.alarm_id,
                               "device": acked.device})
    pool.shutdown()
    assert notifier.sent and notifier.calls  # paged by SMS and calls exactly as before
    sender.step()
    assert set(queue.troubles()) == {"primary", "backup"} and queue.waiting() == 2
    assert len(told) == 2 and all("not answering" in t for t in told)
    back = arc.restart()
    try:
        drain(sender)  # retried every retry_s: both go out, in order
        assert [back.next_event().code for _ in range(2)] == ["PA", "PR"]
        assert "primary" not in queue.troubles() and "answers again" in told[-1]
    finally:
        back.stop()


def test_a_nak_corrects_the_clock_and_the_event_is_acked(receivers, fake_store):
    arc = receivers()
    skewed = lambda: time.time() - 600  # noqa: E731 - our clock 10 min slow
    queue, sender = arc_parts(arc_site(arc.port), fake_store, clock=skewed)
    alarm = raise_alarm(fake_store)
    queue.alarm_raised(alarm)
    drain(sender)
    assert arc.next_event().code == "PA"
    [_, sent] = arc_timeline(fake_store, alarm.id)
    assert (sent["outcome"], sent["sends"]) == ("ACK", "2")  # NAK, then the corrected send
    assert 595 < queue.clock_offset("primary") < 605


class _Duh(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.recv(4096)
        self.request.sendall(answer_frame("DUH", "0000", "1", "1", "1001"))
        self.server.count += 1


def test_a_duh_is_not_resent_there_and_the_backup_gets_it(receivers, fake_store):
    backup = receivers()
    duh = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Duh)
    duh.count = 0
    threading.Thread(target=duh.serve_forever, args=(0.02,), daemon=True).start()
    try:
        queue, sender = arc_parts(arc_site(duh.server_address[1], backup.port,
                                           attempts=3), fake_store)
        alarm = raise_alarm(fake_store)
        queue.alarm_raised(alarm)
        drain(sender)
        assert backup.next_event().code == "PA" and duh.count == 1
        assert [e["outcome"] for e in arc_timeline(fake_store, alarm.id)] == \
            ["queued", "DUH", "ACK"]
    finally:
        duh.shutdown()
        duh.server_close()


def test_exactly_once_across_workers(receivers, fake_store):
    arc = receivers()
    site = arc_site(arc.port)
    q1, s1 = arc_parts(site, fake_store, worker="w1")
    q2, s2 = arc_parts(site, fake_store, worker="w2")
    alarms = [raise_alarm(fake_store) for _ in range(5)]
    for alarm in alarms:  # both workers' hooks see every alarm (a redelivery, a re-run)
        assert q1.alarm_raised(alarm) > 0 and q2.alarm_raised(alarm) == 0
    stop = threading.Event()
    threads = [threading.Thread(target=s.run, args=(stop,)) for s in (s1, s2)]
    for t in threads:
        t.start()
    try:
        got = [arc.next_event().message for _ in alarms]
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert got == ["001"] * 5 and arc.quiet()
    seqs = [e["seq"] for a in alarms for e in arc_timeline(fake_store, a.id)
            if e["outcome"] == "ACK"]
    assert len(set(seqs)) == 5


def test_a_worker_that_dies_mid_send_leaves_the_event_to_the_next(receivers, fake_store):
    arc = receivers()
    site = arc_site(arc.port)
    q1, s1 = arc_parts(site, fake_store, worker="w1")
    q1.alarm_raised(raise_alarm(fake_store))
    assert q1.lease("w1", 50)  # w1 took the lease, then died before any ACK
    _, s2 = arc_parts(site, fake_store, worker="w2")
    assert not s2.step()
    drain(s2, timeout=5)  # w1's lease lapses; w2 sends it
    assert arc.next_event().code == "PA"


def test_a_queued_event_wakes_this_workers_sender_at_once(receivers, fake_store):
    arc = receivers()
    queue, sender = arc_parts(arc_site(arc.port), fake_store, idle_s=30)  # no polling help
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,))
    thread.start()
    try:
        time.sleep(0.05)  # let it go idle (a pause for the scenario, not a wait on a result)
        queue.alarm_raised(raise_alarm(fake_store))
        assert arc.next_event(timeout=2).code == "PA"
    finally:
        stop.set()
        queue.queued.set()
        thread.join(5)


def test_an_event_that_cannot_be_sent_is_dropped_not_blocking_the_queue(receivers, fake_store,
                                                                         caplog):
    arc = receivers()
    queue, sender = arc_parts(arc_site(arc.port), fake_store)
    fake_store.r.xadd(queue.key("queue"), {"seq": "1", "phase": "alarm", "event": "fire"})
    queue.alarm_raised(raise_alarm(fake_store))
    drain(sender)
    assert arc.next_event().code == "PA"
    assert "dropping a queued event that cannot be sent" in caplog.text


def test_a_queue_that_cannot_be_written_never_holds_up_the_pages(fake_store, caplog):
    from hub.arc.queue import ArcQueue
    from hub.store.alarms import Store
    site = arc_site(free_port())
    notifier, pool = RecordingNotifier(), Pools()
    service = AlarmService(site, fake_store, notifier, lambda t, p: None, pool.senders,
                           escalators=pool.escalators)
    service.arc = ArcQueue(site, Store.from_url(f"redis://127.0.0.1:{free_port()}/0"),
                           clock=time.time)
    msg = new_alarm("main-circ-01", "emergency")
    assert service.handle(Topics().alarm(msg.device), msg.to_json()) is MessageOutcome.STORED
    pool.shutdown()
    assert notifier.sent and notifier.calls
    assert f"alarm {msg.alarm_id}: ARC alarm event not queued" in caplog.text


def test_a_drill_made_real_sends_its_real_alarm_event(receivers, fake_store):
    arc = receivers()
    site = arc_site(arc.port)
    queue, sender = arc_parts(site, fake_store)
    notifier, pool = RecordingNotifier(), Pools()
    service = AlarmService(site, fake_store, notifier, lambda t, p: None, pool.senders,
                           escalators=pool.escalators)
    service.arc = queue
    now_ms = int(time.time() * 1000)
    fake_store.branches.set_branch_switches("main", by="Dana", now_ms=now_ms,
                                            drill_until_ms=now_ms + 600_000)
    msg = new_alarm("main-circ-01", "emergency")
    assert service.handle(Topics().alarm(msg.device), msg.to_json()) is MessageOutcome.STORED
    drain(sender)
    assert arc.next_event().code == "RX"
    fake_store.make_real(msg.alarm_id, by="Dana", via="cli", now_ms=int(time.time() * 1000))
    assert service.run_due(msg.alarm_id) == 1  # its next attempt, due at once, pages police
    pool.shutdown()
    drain(sender)
    event = arc.next_event()
    assert (event.code, event.message) == ("PA", "001")
    assert not event.x_data.startswith("IDRILL")

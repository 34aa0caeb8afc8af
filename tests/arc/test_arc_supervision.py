"""Path supervision (hub.arc.sender): NULL link tests every interval; a receiver that stops
answering is a trouble within one interval (plus its resends), told to IT once across
workers, cleared when it answers again. And ``haven arc test`` for commissioning."""

from __future__ import annotations

import threading
import time

from hub.arc.commission import report, run_test
from hub.app.cli import main
from tests.arc_kit import Receiver, arc_parts, arc_site, free_port


def wait_for(condition, timeout: float = 5.0) -> float:
    """Poll ``condition`` until true; returns when (monotonic s), or fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.005)
    raise AssertionError("condition not met in time")


def test_a_receiver_that_stops_answering_is_a_trouble_within_one_interval(fake_store):
    arc = Receiver()
    interval, timeout, attempts = 0.5, 0.1, 2
    site = arc_site(arc.port, timeout_s=timeout, attempts=attempts)
    told: list[str] = []
    senders = [arc_parts(site, fake_store, worker=w, told=told, supervision_s=interval)[1]
               for w in ("w1", "w2")]
    queue = senders[0].queue
    stop = threading.Event()
    threads = [threading.Thread(target=s.run_supervision, args=(stop,)) for s in senders]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: not arc.events.empty())  # link tests reach the receiver
        assert queue.troubles() == {}
        arc.stop()
        stopped = time.monotonic()
        shown = wait_for(lambda: "primary" in queue.troubles(), timeout=3 * interval + 2)
        assert shown - stopped <= interval + attempts * timeout + 0.2
        back = arc.restart()
        try:
            wait_for(lambda: queue.troubles() == {}, timeout=3 * interval + 2)
        finally:
            back.stop()
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert [("not answering" in t, "answers again" in t) for t in told] == \
        [(True, False), (False, True)]  # once each, though two workers supervise


def test_haven_arc_test_reports_each_receivers_answer():
    arc = Receiver()
    try:
        site = arc_site(arc.port, free_port())
        results = run_test(site, branch="westside")
        text, status = report(results)
        event = arc.next_event()
        assert (event.code, event.account) == ("RX", site.arc.accounts["westside"])
        lines = text.splitlines()
        assert lines[0].startswith(f"westside: primary 127.0.0.1:{arc.port}/tcp: ACK after 1 "
                                   "send(s)")
        assert lines[1].startswith("westside: backup") and "no answer after 2 send(s)" in lines[1]
        assert status == 1  # not every receiver answered
    finally:
        arc.stop()


def test_haven_arc_test_without_arc_is_a_clear_error(capsys):
    from tests.conftest import SAMPLE_SITE
    assert main(["arc", "test", "--site", str(SAMPLE_SITE)]) == 2
    err = capsys.readouterr().err
    assert "arc: missing: add an [arc] table" in err and "Traceback" not in err


def test_haven_arc_test_command_prints_the_answers(tmp_path, capsys):
    arc = Receiver()
    try:
        from tests.conftest import SAMPLE_SITE, write_site
        path = tmp_path / "site.toml"
        write_site(path, SAMPLE_SITE.read_text() + f"""
[arc]
accounts = {{ main = "1001" }}
kinds = {{ emergency = "panic" }}
[[arc.receiver]]
host = "127.0.0.1"
port = {arc.port}
""")
        assert main(["arc", "test", "--site", str(path)]) == 0
        assert capsys.readouterr().out.startswith(f"main: primary 127.0.0.1:{arc.port}/tcp: ACK")
        assert arc.next_event().code == "RX"
    finally:
        arc.stop()


def test_the_board_shows_a_receiver_not_answering_until_it_answers(fake_store):
    from dashboard import create_app
    from tests.dashboard_login import logged_in_client
    site = arc_site(free_port())
    queue, _ = arc_parts(site, fake_store)
    client = logged_in_client(create_app(site, fake_store), fake_store)
    assert client.get("/api/board").json["arc_troubles"] == []
    assert 'id="arc-trouble"' in client.get("/").get_data(as_text=True)
    queue.trouble_raised("primary", 1_000, "link test: none")
    [shown] = client.get("/api/board").json["arc_troubles"]
    assert shown == {"receiver": "primary", "since_ms": 1_000,
                     "words": "Monitoring centre: primary receiver not answering"}
    queue.trouble_cleared("primary", 2_000)
    assert client.get("/api/board").json["arc_troubles"] == []


def test_the_alarm_page_tells_each_arc_outcome_in_words():
    from dashboard.alarms import timeline_rows
    rows = timeline_rows([
        {"event": "arc", "outcome": "queued", "phase": "alarm", "seq": "7", "at_ms": "1"},
        {"event": "arc", "outcome": "none", "phase": "alarm", "seq": "7", "sends": "3",
         "ms": "9001.2", "receiver": "primary arc1:12000/tcp", "at_ms": "2"},
        {"event": "arc", "outcome": "ACK", "phase": "alarm", "seq": "7", "sends": "1",
         "ms": "3.1", "receiver": "backup arc2:12000/tcp", "at_ms": "3"}])
    assert [(r.label, r.detail, r.status, r.bad) for r in rows] == [
        ("Monitoring centre", "alarm event, sequence 7", "queued", False),
        ("Monitoring centre", "alarm event, sequence 7, primary arc1:12000/tcp",
         "no answer after 3 send(s), 9001.2 ms", True),
        ("Monitoring centre", "alarm event, sequence 7, backup arc2:12000/tcp",
         "received (ACK) after 1 send(s), 3.1 ms", False)]

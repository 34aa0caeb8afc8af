"""The demo announces lone-worker check-ins: in its banner, and each request as it comes."""

from __future__ import annotations

import re
from types import SimpleNamespace

from hub.demo import CheckinNotes, _banner

NOW_MS = 1_780_000_000_000


def test_each_check_in_request_is_announced_once_with_how_and_by_when(sample_site,
                                                                      fake_store):
    notes = CheckinNotes(sample_site, fake_store, list(sample_site.devices), "haven")
    assert notes.poll() == []  # nothing asked yet
    fake_store.r.hset("haven:checkin:west-front-01", "requested_ms", NOW_MS)
    [line] = notes.poll()
    assert "the hub asked west-front-01 (Evening librarian, alone at Westside Branch)" in line
    assert "'haven press west-front-01' by" in line
    asked, by = re.findall(r"\d\d:\d\d:\d\d", line)
    minutes = lambda t: int(t[:2]) * 60 + int(t[3:5]) + int(t[6:]) / 60
    assert (minutes(by) - minutes(asked)) % (24 * 60) == 2  # checkin_grace_s = 120
    assert "'Lone worker missed check-in' alarm" in line
    assert notes.poll() == []  # once
    fake_store.r.hset("haven:checkin:west-front-01", "requested_ms", NOW_MS + 1_800_000)
    assert len(notes.poll()) == 1  # the next one, 30 min later


def test_the_banner_says_the_demo_will_ask_the_worn_device_to_check_in(sample_site, capsys):
    sim = SimpleNamespace(apps=dict.fromkeys(sample_site.devices), skipped=[])
    _banner(sample_site, "http://127.0.0.1:8080/", sim, "redis://127.0.0.1:1", ("pw", "tok"))
    out = capsys.readouterr().out
    assert ("west-front-01   every 30 min while Sam Lee (westside supervisor) is alone on "
            "duty at Westside Branch") in out
    assert "unanswered after 120 s,\n               a missed check-in alarm is paged" in out

"""The ``haven`` command: alarm ids as people copy them, ``--redis`` wherever it is put,
and one line (never a traceback) when Redis cannot be reached."""

from __future__ import annotations

import time

import pytest

from hub.app import cli
from hub.core.alarmref import AlarmRefError, resolve_alarm_id, search_prefix
from hub.core.messages import page_ref
from hub.core.model import Alarm, AlarmState
from tests.conftest import SAMPLE_SITE

IDS = ["86bce38e-2f1a-4c1d-9d55-0f6c1a2b3c4d", "86bce38e-7abc-4c1d-9d55-0f6c1a2b3c4d",
       "1f00aa00-0000-4000-8000-000000000001", "1f00bb00-0000-4000-8000-000000000002"]


def starting(ids):
    return lambda prefix: [i for i in ids if i.startswith(prefix)]


@pytest.mark.parametrize("typed, found", [
    (IDS[2], IDS[2]),                        # the whole id
    ("1f00a", IDS[2]),                       # any unique start
    (" 1f00bb00 ", IDS[3]),                  # pasted with spaces
    (page_ref(IDS[2], 1), IDS[2]),           # the Ref of a text: "1f00aa00-2"
    ("1f00aa00-12", IDS[2]),                 # a 12th call for help
])
def test_an_alarm_is_found_by_what_people_copy(typed, found):
    assert resolve_alarm_id(typed, starting(IDS)) == found


@pytest.mark.parametrize("typed, said", [
    ("86bce38e", "starts 2 alarm ids"),
    # the Ref's id part starts both: "-2" must not pick the one whose id has "-2f1a"
    ("86bce38e-2", "starts 2 alarm ids"),
    ("1f00", "give more of the id"),
    ("ffff", "no alarm id starts with 'ffff'"),
    ("", "is not an alarm id"),
    ("86*", "is not an alarm id"),
])
def test_an_ambiguous_unknown_or_malformed_id_is_refused_saying_what_to_type(typed, said):
    with pytest.raises(AlarmRefError) as caught:
        resolve_alarm_id(typed, starting(IDS))
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_a_long_list_of_candidates_is_cut_short():
    many = [f"abc{n:03d}" for n in range(40)]
    message = str(pytest.raises(AlarmRefError, resolve_alarm_id, "abc",
                                lambda p: starting(many)(p)[:6]).value)
    assert "more than 5 alarm ids" in message and message.count("abc0") == 5


def test_a_page_ref_searches_by_its_id_part():
    assert search_prefix("86bce38e-2") == "86bce38e"
    assert search_prefix("86bce38e-2f1a") == "86bce38e-2f1a"  # a longer id start, kept


def stored(store, alarm_id, state=AlarmState.RAISED):
    now = int(time.time() * 1000)
    alarm = Alarm(id=alarm_id, kind="assist", device="main-circ-01", branch="main",
                  room="circ", pressed_at_ms=now, received_at_ms=now, state=state)
    assert store.raise_alarm(alarm)
    return alarm


def test_the_store_lists_ids_by_their_start_active_or_ended(fake_store):
    for alarm_id in IDS:
        stored(fake_store, alarm_id)
    fake_store.r.hset(fake_store.key("alarms-not-an-alarm"), "x", "1")
    assert sorted(fake_store.alarm_ids_starting("86bce38e")) == IDS[:2]
    assert fake_store.alarm_ids_starting("1f00bb") == [IDS[3]]
    assert fake_store.alarm_ids_starting("zz") == []
    assert len(fake_store.alarm_ids_starting("", limit=3)) == 3


@pytest.mark.parametrize("where", ["top", "group", "leaf"])
def test_a_texts_ref_acknowledges_its_alarm_with_redis_given_anywhere(store, redis_service,
                                                                      capsys, where):
    alarm = stored(store, IDS[2])
    stored(store, IDS[3])
    ref = page_ref(alarm.id, 1)
    argv = {"top": ["--redis", redis_service.url, "alarm", "ack", ref, "--by", "Ana"],
            "group": ["alarm", "--redis", redis_service.url, "ack", ref, "--by", "Ana"],
            "leaf": ["alarm", "ack", ref, "--by", "Ana", "--redis", redis_service.url]}[where]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert f"alarm {alarm.id}: acknowledged by Ana" in capsys.readouterr().out
    assert store.get_alarm(alarm.id).acknowledged_by == "Ana"
    assert store.get_alarm(IDS[3]).acknowledged_by is None


def test_an_ambiguous_ref_changes_nothing_and_says_so_in_one_line(store, redis_service,
                                                                  capsys):
    for alarm_id in IDS[:2]:
        stored(store, alarm_id)
    code = cli.main(["alarm", "resolve", "86bce38e-1", "--by", "Ana", "--reason", "ok",
                     "--redis", redis_service.url])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("haven alarm resolve: '86bce38e' starts 2 alarm ids")
    assert err.count("\n") == 1
    assert all(store.get_alarm(i).state == AlarmState.RAISED for i in IDS[:2])


DOWN = "redis://127.0.0.1:1"  # nothing listens on port 1


@pytest.mark.parametrize("argv", [
    ["alarm", "list"],
    ["alarm", "resolve", "86bce38e-2", "--by", "Ana", "--reason", "ok"],
    ["alarm", "real", "86bce38e", "--by", "Ana"],
    ["tell", "main-circ-01", "locate"],
    ["branch", "lone-worker", "main", "on", "--by", "Ana", "--site", str(SAMPLE_SITE)],
    ["user", "list"],
])
def test_with_redis_down_every_command_fails_in_one_line_naming_it(argv, capsys):
    assert cli.main([*argv, "--redis", DOWN]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "cannot reach Redis" in err and "127.0.0.1:1" in err and "--redis" in err


@pytest.mark.parametrize("argv", [
    ["alarm", "list"], ["alarm", "ack"], ["alarm", "resolve"], ["alarm", "cancel"],
    ["alarm", "real"], ["branch", "drill"], ["branch", "on-duty"],
    ["branch", "lone-worker"], ["tell"], ["user", "add"], ["user", "list"],
    ["provision", "list"], ["hub"], ["dashboard"],
])
def test_each_subcommands_help_shows_redis(argv, capsys):
    with pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    assert "--redis URL" in capsys.readouterr().out


def test_dashboard_help_explains_host_and_port(capsys):
    with pytest.raises(SystemExit):
        cli.main(["dashboard", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--host HOST address to listen on" in out and "(default 127.0.0.1" in out
    assert "--port PORT TCP port (default 8080)" in out

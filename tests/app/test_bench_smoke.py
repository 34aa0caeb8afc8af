"""The benchmark code must not rot: its site generation, the peer adapter and a tiny storm.

No timing is asserted here (benchmarks are commands, not tests); only that each piece
still does what the figures rely on.
"""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace

import pytest

from bench.benchsite import Group, site_from_contacts, site_toml, storm_groups
from bench.peers_adapter import HavenAdapter, harness_devices, write_site
from bench.storm_bench import MAX_CONNECTIONS, storm
from hub.config.site import parse_site

FANOUT = [f"+1500555{1000 + i:04d}" for i in range(20)]
CONTACTS = {"default": ["+15005550100"], "devices": {"bench-fanout-01": FANOUT}}


def test_the_harness_contacts_become_a_site_paging_each_device_its_contacts(tmp_path):
    path = write_site(CONTACTS, tmp_path / "site.toml", devices=3)  # haven check-config passed
    site = parse_site(path.read_text(), str(path))
    assert set(site.devices) == {"bench-probe", "bench-dev-000", "bench-dev-001",
                                 "bench-dev-002", "bench-fanout-01"}
    fanout_branch = site.devices["bench-fanout-01"].branch_id
    assert [c.phone for c in site.recipients("emergency", fanout_branch)] == FANOUT
    assert [c.phone for c in site.recipients("emergency", "bench")] == ["+15005550100"]
    step = site.kinds["emergency"].steps[0]
    assert step.channels == ("sms",) and step.wait_s == 3600  # never repeats within a run


def test_bad_benchmark_ids_and_phones_are_refused_by_name():
    with pytest.raises(ValueError, match="'bad id'"):
        site_toml({"b": Group(("bad id",), ("+15005550100",))})
    with pytest.raises(ValueError, match="'555-0100' is not E.164"):
        site_toml({"b": Group(("dev",), ("555-0100",))})
    with pytest.raises(ValueError, match="page no one"):
        site_from_contacts({"default": []}, ["dev"])


def test_storm_groups_spread_every_device_over_branches():
    groups = storm_groups(25, branches=10, contacts=2)
    devices = [d for g in groups.values() for d in g.devices]
    assert sorted(devices) == [f"storm-{i:04d}" for i in range(25)]
    assert all(len(g.phones) == 2 for g in groups.values())
    assert len(parse_site(site_toml(groups)).devices) == 25


def test_the_adapter_runs_haven_so_the_harness_finds_the_alarm_id_in_a_post(
        tmp_path, mosquitto, fake_twilio):
    from bench.hub_bench import client
    fake_twilio._post_statuses = lambda *args: None  # the public URL is not reachable
    contacts_file = tmp_path / "contacts.json"
    contacts_file.write_text(json.dumps(CONTACTS))
    ctx = SimpleNamespace(broker_host="127.0.0.1", broker_port=mosquitto.port,
                          twilio_url=fake_twilio.url, account_sid=fake_twilio.account_sid,
                          auth_token=fake_twilio.auth_token, from_number="+15005550006",
                          contacts=CONTACTS, contacts_file=str(contacts_file),
                          workdir=str(tmp_path))
    adapter = HavenAdapter(workers="2", devices="2")
    adapter.setup()
    adapter.start(ctx)
    pub = client(mosquitto.port, "harness-like")
    try:
        assert len(adapter.pids()) == 3  # two workers and their redis-server
        alarm_id = str(uuid.uuid4())  # what the harness sends, byte for byte in form
        payload = json.dumps({"v": 1, "alarm_id": alarm_id, "kind": "emergency",
                              "device": harness_devices(2)[1],
                              "pressed_at": int(time.time() * 1000)}, separators=(",", ":"))
        pub.publish(f"haven/v1/dev/{harness_devices(2)[1]}/alarm", payload, qos=1)
        got = fake_twilio.wait_for(1, timeout=10,
                                   match=lambda r: alarm_id in r.form.get("StatusCallback", ""))
        assert [r.form["To"] for r in got] == ["+15005550100"]
    finally:
        pub.loop_stop()
        pub.disconnect()
        adapter.stop()
    assert adapter.pids() == []


def test_a_tiny_storm_stores_and_pages_every_alarm_once(tmp_path):
    result = storm(20, 1, window_s=0.2, contacts=2, workdir=tmp_path, timeout_s=20)
    assert (result.stored, result.complete, result.duplicates) == (20, 20, 0)
    assert result.done_s is not None and result.alarms_per_s > 0
    # the workers' warm sender threads opened theirs before the storm: peak, not opened
    assert 1 <= result.peak_connections <= MAX_CONNECTIONS
    assert result.peak_rss_mb[0] > 10  # sampled from a live worker
    assert "stored 20/20" in "\n".join(result.lines())


def test_a_tiny_ingest_splits_heartbeats_between_workers_live_and_drained(tmp_path):
    """Two workers on the shared heartbeat subscription: each stores its share, every
    device's last heartbeat is in the store, and a backlog queued while they were stopped
    is drained by both."""
    from bench.ingest_bench import drain, ingest
    live, = ingest(200, workers=(2,), workdir=tmp_path / "live")
    assert live.hub_per_s and live.stored_ok and sum(live.shares) == 200
    assert min(live.shares) > 0, live.shares
    drained, = drain(200, workers=(2,), workdir=tmp_path / "drain")
    assert drained.hub_per_s and drained.bare_per_s and sum(drained.shares) == 200
    assert min(drained.shares) > 0, drained.shares
    assert "drain  200 heartbeats, 2 worker(s)" in drained.line()


def test_the_rounds_bench_site_loads_and_its_budget_sends_emergencies_first():
    from bench.rounds_bench import PAGES_PER_ROUND, Round, budget_bounds
    from bench.rounds_bench import site_toml as rounds_site
    site = parse_site(rounds_site(20, 8.0))
    assert len(site.recipients("emergency", "branch-00")) == PAGES_PER_ROUND
    rounds = [Round("a", "assist", 1, 0, 0, 3), Round("e", "emergency", 1, 10, 10, 3)]
    budget_bounds(rounds, rate_per_ms=1.0)  # one page a ms, none before its round is due
    # the assist's pages leave by 3 ms, before the emergency is due (10 ms)
    assert [r.budget_ms for r in rounds] == [3.0, 13.0]
    late = [Round("a", "assist", 1, 0, 0, 3), Round("e", "emergency", 1, 1, 1, 3)]
    budget_bounds(late, rate_per_ms=1.0)
    assert [r.budget_ms for r in late] == [6.0, 4.0]  # the emergency jumps the queue

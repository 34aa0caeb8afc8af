"""hub.config.redistarget and hub.engine.replication: Sentinel settings validated once, confirmations
that wait for a replica (real redis-server processes)."""

from __future__ import annotations

import pytest

from hub.errors import ConfigError
from hub.config.redistarget import connect
from hub.engine.replication import NO_REPLICA, Replication, replicated_confirm
from hub.config.settings import hub_settings


def test_a_plain_url_keeps_working_and_waits_for_no_replica():
    target = hub_settings(env={"HAVEN_REDIS_URL": "redis://:pw@10.0.0.5:6380/2"}).redis
    assert (target.url, target.sentinels, target.wait_replicas) == \
        ("redis://:pw@10.0.0.5:6380/2", (), 0)
    assert "pw" not in target.safe
    assert replicated_confirm(target, print).replication is None


def test_sentinels_are_read_with_their_master_and_wait_for_one_replica():
    target = hub_settings(env={"HAVEN_REDIS_SENTINELS": "10.0.0.11:26379, s2:26379,[::1]:26380",
                               "HAVEN_REDIS_MASTER": "branch-redis"}).redis
    assert target.sentinels == (("10.0.0.11", 26379), ("s2", 26379), ("::1", 26380))
    assert (target.master, target.wait_replicas, target.wait_ms) == ("branch-redis", 1, 1000)
    assert "branch-redis" in target.safe and "s2:26379" in target.safe


@pytest.mark.parametrize("env,name,words", [
    ({"HAVEN_REDIS_SENTINELS": "10.0.0.11"}, "HAVEN_REDIS_SENTINELS", "host:port"),
    ({"HAVEN_REDIS_SENTINELS": "a:99999"}, "HAVEN_REDIS_SENTINELS", "host:port"),
    ({"HAVEN_REDIS_SENTINELS": "a:1", "HAVEN_REDIS_MASTER": "my master"}, "HAVEN_REDIS_MASTER",
     "sentinel monitor"),
    ({"HAVEN_REDIS_SENTINEL_PASSWORD": "x"}, "HAVEN_REDIS_SENTINEL_PASSWORD",
     "HAVEN_REDIS_SENTINELS"),
    ({"HAVEN_REDIS_WAIT_REPLICAS": "two"}, "HAVEN_REDIS_WAIT_REPLICAS", "0 to 5"),
    ({"HAVEN_REDIS_WAIT_MS": "0"}, "HAVEN_REDIS_WAIT_MS", "10 to 10000"),
    ({"HAVEN_REDIS_URL": "localhost:6379"}, "HAVEN_REDIS_URL", "redis://"),
])
def test_each_bad_redis_variable_is_refused_by_name_with_the_fix(env, name, words):
    with pytest.raises(ConfigError) as err:
        hub_settings(env=env)
    assert name in str(err.value) and words in str(err.value)


def test_without_a_replica_confirmations_are_withheld_and_counted(redis_service, caplog):
    sent = []
    replication = Replication(lambda: connect(redis_service.url, max_connections=1),
                              lambda t, p: sent.append(t), replicas=1, timeout_ms=50)
    with replication.batch() as store:
        store.r.set("haven:x", 1)
        replication.confirm("haven/v1/dev/a/cmd", b"{}")
    assert sent == [] and replication.withheld(NO_REPLICA) == 1
    assert "0 of 1 replica(s)" in caplog.text
    replication.confirm("outside/a/batch", b"{}")  # not raising alarms: sent at once
    assert sent == ["outside/a/batch"]


def test_with_a_replica_confirmations_go_once_it_has_the_writes(tmp_path):
    from hub.app.replicaset import start_replica_set
    replica_set = start_replica_set(tmp_path, replicas=1, sentinels=1)
    try:
        sent = []
        replication = Replication(lambda: connect(replica_set.target(), max_connections=1),
                                  lambda t, p: sent.append(t), replicas=1, timeout_ms=1000)
        with replication.batch() as store:
            store.r.set("haven:x", 1)
            replication.confirm("haven/v1/dev/a/cmd", b"{}")
            assert sent == []  # held until WAIT answered
        assert sent == ["haven/v1/dev/a/cmd"] and replication.withheld(NO_REPLICA) == 0
    finally:
        replica_set.stop()

"""hub.redislane on a real redis-server: scripts in one round trip, each with its own
reply or error, loud on a lost connection and connected again on the next call."""

import threading
import time

import pytest
import redis

from hub.redislane import Lane

ECHO = "return ARGV[1]"
FAIL_ON_BAD = "if ARGV[1] == 'bad' then return redis.error_reply('bad input') end " \
              "return redis.call('INCR', KEYS[1])"


@pytest.fixture
def client(redis_service):
    r = redis.Redis.from_url(redis_service.url, decode_responses=True, socket_timeout=2)
    yield r
    r.close()


def test_scripts_run_in_order_each_with_its_own_reply_or_error(client):
    lane = Lane(client)
    echo, incr = client.register_script(ECHO), client.register_script(FAIL_ON_BAD)
    client.script_load(ECHO), client.script_load(FAIL_ON_BAD)
    replies = lane.run_scripts([(echo, [], ["one"]), (incr, ["n"], ["bad"]),
                                (incr, ["n"], ["ok"]), (incr, ["n"], ["ok"])])
    assert replies[0] == "one" and replies[2:] == [1, 2]
    assert isinstance(replies[1], redis.ResponseError) and "bad input" in str(replies[1])
    assert lane.run_scripts([(echo, [], ["again"])]) == ["again"]  # the connection is clean


def test_scripts_redis_lost_are_loaded_and_run_once(client):
    lane = Lane(client)
    incr = client.register_script(FAIL_ON_BAD)
    client.script_flush()  # as after a restart without its script cache
    assert lane.run_scripts([(incr, ["m"], ["ok"]), (incr, ["m"], ["ok"])]) == [1, 2]
    assert client.get("m") == "2"


def test_a_connection_the_server_closed_is_replaced_before_the_call(client):
    lane = Lane(client)
    echo = client.register_script(ECHO)
    assert lane.run_scripts([(echo, [], ["x"])]) == ["x"]
    client.client_kill_filter(_type="normal", skipme=True)  # as after a Redis restart
    time.sleep(0.05)  # the close reaches this side
    assert lane.run_scripts([(echo, [], ["checked"])]) == ["checked"]
    lane.close()
    assert lane.run_scripts([(echo, [], ["after close"])]) == ["after close"]


def test_a_store_that_cannot_be_reached_is_raised_and_the_lane_recovers(redis_service):
    from hub.localservices import free_port
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    down = redis.Redis(port=free_port(), decode_responses=True, socket_connect_timeout=1,
                       retry=Retry(NoBackoff(), 0))
    script = down.register_script(ECHO)
    with pytest.raises(redis.ConnectionError):
        Lane(down).run_scripts([(script, [], ["lost"])])
    up = redis.Redis.from_url(redis_service.url, decode_responses=True)
    assert Lane(up).run_scripts([(up.register_script(ECHO), [], ["back"])]) == ["back"]
    up.close()


def test_callers_on_many_threads_each_get_their_own_replies(client):
    lane = Lane(client)
    echo = client.register_script(ECHO)
    got, lock = {}, threading.Lock()

    def caller(k):
        for j in range(50):
            value = f"{k}-{j}"
            reply = lane.run_scripts([(echo, [], [value]), (echo, [], [value + "!"])])
            with lock:
                got[value] = reply

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 400 and all(reply == [v, v + "!"] for v, reply in got.items())


def test_a_store_warmed_up_has_every_script_and_its_lanes_connected(redis_service):
    """Hub start: the first alarm must not pay a connection setup or a NOSCRIPT."""
    from hub.model import Alarm
    from hub.store import Store
    store = Store.from_url(redis_service.url)
    try:
        scripts = [v for v in vars(store).values() if isinstance(v, redis.commands.core.Script)]
        assert len(scripts) >= 10
        assert not any(store.r.script_exists(*(s.sha for s in scripts)))
        store.warm_up()
        assert all(store.r.script_exists(*(s.sha for s in scripts)))
        opened = store.r.info("stats")["total_connections_received"]
        loads = store.r.info("commandstats")["cmdstat_script|load"]["calls"]
        assert store.raise_alarm(Alarm(id="a1", kind="assist", device="d1", branch="main",
                                       room="circ", pressed_at_ms=1000, received_at_ms=2000),
                                 escalate=True)
        # the raise used the warm lane and a loaded script: no new connection, no loading
        assert store.r.info("stats")["total_connections_received"] == opened
        assert store.r.info("commandstats")["cmdstat_script|load"]["calls"] == loads
    finally:
        store.r.close()

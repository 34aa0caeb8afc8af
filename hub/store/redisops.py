"""Redis operations every part of the store uses: scripts run together, work streams read.

Wiring: the store's parts (hub.store.alarms, .pages, .devices) call these with their
client; nothing here knows a key but the one it is given.
"""

from __future__ import annotations

import json
from typing import Any

import redis

#: The hub workers' consumer group on every work stream (device commands, follow-ups).
WORKERS_GROUP = "hub"


def flat_json(fields: dict[str, Any]) -> str:
    """``{"a": 1, "b": "x"}`` as the JSON array ``["a", "1", "b", "x"]``, for a script to
    ``unpack(cjson.decode(...))`` into HSET or XADD (values as strings: cjson would turn
    a large number into "1.76384e+12")."""
    return json.dumps([str(x) for kv in fields.items() for x in kv])


def run_scripts(client: redis.Redis, calls: list[tuple[Any, list[str], list[Any]]]) -> list[Any]:
    """Run ``[(script, keys, args)]`` (scripts from ``register_script``) in one pipeline
    of EVALSHA: each script's reply, in order, or the error it alone met (an
    ``Exception`` instance). Raises ``redis.RedisError`` if the store cannot be reached
    (then any of them may or may not have run). A script Redis lost (a restart, a
    flush) had not run: it is loaded and run again on its own."""
    with client.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        replies = pipe.execute(raise_on_error=False)
    for i, ((script, keys, args), reply) in enumerate(zip(calls, replies)):
        if isinstance(reply, redis.exceptions.NoScriptError):
            try:
                replies[i] = script(keys=keys, args=args)
            except redis.ResponseError as exc:
                replies[i] = exc
    return replies


def read_group(client: redis.Redis, stream: str, consumer: str, block_ms: int,
               count: int) -> list[tuple[str, dict[str, str]]]:
    """Read the work stream ``stream`` (a full key) as ``consumer`` of the hub workers'
    group, entries another worker left unacknowledged for 5 s first; waits up to
    ``block_ms`` for new ones."""
    try:
        client.xgroup_create(stream, WORKERS_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    _, stale, _ = client.xautoclaim(stream, WORKERS_GROUP, consumer, min_idle_time=5000,
                                    count=count)
    if stale:
        return [(entry_id, fields) for entry_id, fields in stale if fields]
    got = client.xreadgroup(WORKERS_GROUP, consumer, {stream: ">"}, count=count,
                            block=block_ms)
    return [(entry_id, fields) for _, entries in got for entry_id, fields in entries]

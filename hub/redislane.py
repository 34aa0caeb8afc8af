"""A Redis connection kept for one hot path: scripts sent on it with no per-call client
machinery around them.

Each command through ``redis.Redis`` takes a connection from the pool and gives it back,
wraps the call in the client's retry and (redis-py 7+) observability hooks: measured at
~65 µs of client CPU per EVALSHA on the hub's machines, against ~38 µs sending the same
command on a connection held by the caller. An alarm's raise (on the MQTT thread, before
its first page can leave) and the senders' records (hub.groupcommit) each keep a
:class:`Lane` and send their scripts on it, a batch as one write.

What the client gave is kept: the connection is the pool's own kind (its host, password,
TLS, timeouts, health check, the hiredis parser), connects and reconnects on first use
after an error, and is checked for a server-side close before each use (as the pool does
at each checkout), so a Redis restart meanwhile costs no call. What it is not: retried.
A connection error is raised to the caller, which holds the message or the record and
tries again on its own schedule (hub.mqtt), as it does when the store is down.

Wiring: ``Lane(client)``; ``run_scripts([(script, keys, args)])`` from one thread at a
time (a lock makes sure of it).
"""

from __future__ import annotations

import threading
from typing import Any

import redis


class Lane:
    """One connection of ``client``'s pool, held for this lane's callers."""

    def __init__(self, client: redis.Redis):
        self._client = client
        self._conn = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Take and connect this lane's connection now (hub start), not on its first call:
        redis-py spends a few ms setting up a connection. Raises ``redis.RedisError``."""
        with self._lock:
            if self._conn is None:
                self._conn = self._client.connection_pool.get_connection()

    def run_scripts(self, calls: list[tuple[Any, list[str], list[Any]]]) -> list[Any]:
        """Run ``[(script, keys, args)]`` (scripts from ``register_script``) in one round
        trip: each script's reply, in order, or the error it alone met (an ``Exception``
        instance). Raises ``redis.RedisError`` if the store cannot be reached (then any
        of them may or may not have run). A script Redis lost (it restarted, or was
        flushed) is loaded and run again on its own: it had not run."""
        with self._lock:
            conn = self._conn
            if conn is None:
                conn = self._conn = self._client.connection_pool.get_connection()
            else:
                self._check(conn)
            try:
                conn.send_packed_command(conn.pack_commands(
                    [("EVALSHA", script.sha, len(keys), *keys, *args)
                     for script, keys, args in calls]))
                replies = []
                for _ in calls:
                    try:
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:  # this script's own error
                        replies.append(exc)
            except BaseException:
                conn.disconnect()  # a half-read pipeline must not be read by the next call
                raise
        for i, ((script, keys, args), reply) in enumerate(zip(calls, replies)):
            if isinstance(reply, redis.exceptions.NoScriptError):
                try:
                    replies[i] = script(keys=keys, args=args)
                except redis.ResponseError as exc:
                    replies[i] = exc
        return replies

    @staticmethod
    def _check(conn) -> None:
        """Disconnect a connection the server closed since its last use (Redis restarted),
        so the call reconnects instead of failing on it: one poll, no read."""
        try:
            stale = conn.can_read(timeout=0)  # nothing is due on an idle connection
        except redis.ConnectionError:
            stale = True
        if stale:
            conn.disconnect()

    def close(self) -> None:
        """Give the connection back to the pool."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            self._client.connection_pool.release(conn)

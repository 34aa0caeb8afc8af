"""The board: every branch and room of the site, and the alarms active in them.

Routes::

    GET /            the page (layout from the site config; state filled in by board.js)
    GET /api/board   JSON snapshot of the board (see :mod:`dashboard.snapshot`)
    GET /events      server-sent events: the store's live events, forwarded as they come

The page stays correct without trusting the event stream: on every event, and
every time the stream (re)opens, it fetches a fresh snapshot. Events only say
"look again"; the snapshot is the truth.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import replace

import redis
from flask import Blueprint, Response, current_app, jsonify, render_template

from hub.store.alarms import Store

from .context import dashboard_context, now_ms
from .incidents import readiness_now
from .snapshot import board_snapshot, read_facts

__all__ = ["bp", "board_snapshot", "event_stream", "format_event"]

log = logging.getLogger(__name__)

bp = Blueprint("board", __name__)

#: How long to wait for Redis to confirm the subscription, in seconds.
SUBSCRIBE_TIMEOUT_S = 5.0
#: How long a browser waits before reconnecting a dropped stream, in milliseconds.
RECONNECT_MS = 2000
_EVENT_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@bp.get("/")
def index() -> str:
    ctx = dashboard_context()
    return render_template("board.html", site=ctx.site)


@bp.get("/api/board")
def api_board() -> Response:
    ctx = dashboard_context()
    alarms = ctx.store.active_alarms()
    facts = read_facts(ctx.store, ctx.site)
    ready = readiness_now()
    facts = replace(facts, drill_overdue=frozenset(ready.drill_overdue),
                    test_press_stale=frozenset(ready.stale_devices))
    snapshot = board_snapshot(ctx.site, alarms, now_ms(), facts=facts,
                              demo=ctx.demo_control_url is not None)
    response = jsonify(snapshot)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(redis.RedisError)
def store_unavailable(exc: redis.RedisError) -> tuple[Response, int]:
    log.warning("alarm store unavailable: %s", exc)
    return jsonify(error=f"alarm store unavailable: {exc}"), 503


@bp.get("/events")
def events() -> Response:
    ctx = dashboard_context()
    stream = event_stream(ctx.store, current_app.config["HAVEN_SSE_HEARTBEAT_S"])
    return Response(stream, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def event_stream(store: Store, heartbeat_s: float) -> Iterator[str]:
    """Server-sent events: ``hello`` once subscribed, then each store event, and pings.

    ``hello`` is sent only after Redis confirmed the subscription, so a snapshot
    fetched after it misses nothing. A ``: ping`` comment every ``heartbeat_s``
    seconds lets the server notice a vanished client (only a write fails). If
    Redis fails, the stream ends and the browser reconnects after RECONNECT_MS.
    """
    pubsub = store.r.pubsub()
    try:
        pubsub.subscribe(store.events_channel)
        if not _subscribed(pubsub, SUBSCRIBE_TIMEOUT_S):
            log.warning("Redis did not confirm the subscription within %s s", SUBSCRIBE_TIMEOUT_S)
            return
        yield f"retry: {RECONNECT_MS}\nevent: hello\ndata: {{}}\n\n"
        next_ping = time.monotonic() + heartbeat_s
        while True:
            message = pubsub.get_message(timeout=max(0.0, next_ping - time.monotonic()))
            if message is not None and message["type"] == "message":
                yield format_event(message["data"])
            if time.monotonic() >= next_ping:
                yield ": ping\n\n"
                next_ping = time.monotonic() + heartbeat_s
    except redis.RedisError as exc:
        log.warning("event stream ended: alarm store unavailable: %s", exc)
    finally:
        pubsub.close()


def _subscribed(pubsub: redis.client.PubSub, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=remaining)
        if message is not None and message["type"] == "subscribe":
            return True
    return False


def format_event(raw: str | bytes) -> str:
    """One SSE message from a store event: its JSON ``type`` names the event."""
    data = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        name = json.loads(data).get("type")
    except (ValueError, AttributeError):
        name = None
    if not isinstance(name, str) or not _EVENT_NAME_RE.match(name):
        name = "message"
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {name}\n{lines}\n"

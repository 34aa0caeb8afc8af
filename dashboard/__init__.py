"""Haven's operator dashboard (Flask): a live board of every branch, room and active alarm.

Wiring::

    site = hub.site.load_site("site.toml")
    store = hub.store.Store.from_url("redis://127.0.0.1:6379/0")
    app = dashboard.create_app(site, store)
    dashboard.serve.serve(app, "0.0.0.0", 8080)       # blocks; waitress

The dashboard only reads the alarm store; it learns of changes from the store's
pub/sub channel (``store.events_channel``) and forwards them to browsers as
server-sent events. Nothing connects at import: Redis is touched only when a
request needs it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response

from hub.site import Site
from hub.store import Store

from . import board, demo, twilio_hooks

#: Content-Security-Policy: the page loads its own script and style, nothing else.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def create_app(site: Site, store: Store, *, demo_control_url: str | None = None,
               test_config: dict[str, Any] | None = None,
               twilio_auth_token: str | None = None, public_url: str | None = None) -> Flask:
    """The dashboard app for ``site``, reading alarms from ``store``.

    ``demo_control_url`` (``http://host:port``) is the demo simulator's control
    endpoint; when given, the board shows "Press" / "Hold 2 s" buttons on rooms
    with devices. Leave it ``None`` in production.

    ``twilio_auth_token`` serves the Twilio webhooks under ``/twilio`` (SMS and
    keypress acknowledgements, see :mod:`dashboard.twilio_hooks`); without it they
    are absent. ``public_url`` (``https://haven.example.org``) is the dashboard's
    root as Twilio reaches it, for signature checks behind a proxy and for the
    URLs put in TwiML; ``None`` uses the request's own URL.

    Config keys (override with ``test_config``):
      ``HAVEN_SSE_HEARTBEAT_S``  seconds between ``: ping`` comments on /events
                                 (default 5.0); a vanished browser is noticed
                                 at the next ping.
    """
    if demo_control_url is not None:
        parts = urlsplit(demo_control_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"demo_control_url must be http://host:port, "
                             f"not {demo_control_url!r}")
        demo_control_url = demo_control_url.rstrip("/")
    app = Flask(__name__)
    app.config.from_mapping(HAVEN_SSE_HEARTBEAT_S=5.0)
    if test_config:
        app.config.update(test_config)
    app.extensions["haven"] = board.BoardContext(site, store, demo_control_url)
    app.register_blueprint(board.bp)
    if demo_control_url is not None:
        app.register_blueprint(demo.bp)
    if twilio_auth_token is not None:
        twilio_hooks.init_app(app, twilio_auth_token, public_url)
    app.after_request(_security_headers)
    return app


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response

"""Haven's operator dashboard (Flask): a live board of every branch, room and active alarm.

Wiring::

    site = hub.config.site.load_site("site.toml")
    store = hub.store.alarms.Store.from_url("redis://127.0.0.1:6379/0")
    app = dashboard.create_app(site, store)
    dashboard.serve.serve(app, "0.0.0.0", 8080)       # blocks; waitress

The dashboard reads the alarm store and acts on it the way ``haven alarm`` and
``haven branch`` do; it learns of changes from the store's pub/sub channel
(``store.events_channel``) and forwards them to browsers as server-sent events.
Nothing connects at import: Redis is touched only when a request needs it.

Everything needs a logged-in session (see :mod:`dashboard.auth`) except
``/login``, ``/static/``, the Twilio webhooks, a plan link's ``/p/<token>``, and ``/push/public/`` (the service worker,
the manifest, and a push's "I'm responding", which carries its own signed token); every POST needs the session's
CSRF token (:mod:`dashboard.csrf`). Users and sessions live in the same Redis
(:mod:`dashboard.users`), so several dashboard processes behind one address
share them; they must also share ``secret_key`` (see :func:`auth.load_secret_key`).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, Response

from hub.config.site import Site
from hub.store.alarms import Store

from hub.core.planlink import PlanLinks

if TYPE_CHECKING:
    from hub.config.push_keys import PushKeys

from . import (alarms, auth, board, branches, csrf, demo, devices, incidents, plans, privacy, push,
               twilio_hooks)
from .context import DashboardContext
from .ratelimit import LoginLimiter
from .users import Users

#: Content-Security-Policy: the page loads its own script and style, nothing else.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


#: The largest request body the dashboard reads, in bytes.
MAX_REQUEST_BYTES = 256 * 1024


def create_app(site: Site, store: Store, *, demo_control_url: str | None = None,
               test_config: dict[str, Any] | None = None,
               twilio_auth_token: str | None = None, public_url: str | None = None,
               secret_key: str | None = None, push_keys: "PushKeys | None" = None,
               plan_links: PlanLinks | None = None) -> Flask:
    """The dashboard app for ``site``, reading alarms from ``store``.

    ``demo_control_url`` (``http://host:port``) is the demo simulator's control
    endpoint; when given, the board shows "Press" / "Hold 2 s" buttons on rooms
    with devices. Leave it ``None`` in production.

    ``twilio_auth_token`` serves the Twilio webhooks under ``/twilio`` (SMS and
    keypress acknowledgements, see :mod:`dashboard.twilio_hooks`); without it they
    are absent. ``public_url`` (``https://haven.example.org``) is the dashboard's
    root as Twilio reaches it, for signature checks behind a proxy and for the
    URLs put in TwiML; ``None`` uses the request's own URL.

    ``push_keys`` (hub.config.push_keys, ``HAVEN_PUSH_KEYS``): browsers subscribe to Web Push and
    the push's "I'm responding" acknowledges (:mod:`dashboard.push`); without them the push
    page says how IT sets it up.
    ``plan_links`` (hub.core.planlink) opens ``/p/<token>``, one alarm's floor plan without a
    login (dashboard.plans); ``None``: those pages answer 404.

    ``secret_key`` signs the session cookie; ``None`` makes a random one, so sessions
    end when the process does (tests). ``haven dashboard`` passes
    :func:`auth.load_secret_key`'s. The cookie is HttpOnly, SameSite=Lax, and
    Secure when ``public_url`` is https.

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
    app.config.from_mapping(
        HAVEN_SSE_HEARTBEAT_S=5.0, SECRET_KEY=secret_key or secrets.token_hex(32),
        SESSION_COOKIE_NAME="haven_session", SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(public_url and public_url.startswith("https://")),
        # Forms and Twilio's webhooks are a few KB: a bigger body is refused (413) before
        # it is parsed, so an unsigned 2 MB post costs nothing.
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES)
    if test_config:
        app.config.update(test_config)
    app.extensions["haven"] = DashboardContext(site, store, demo_control_url)
    auth.init_app(app, Users(store), LoginLimiter(store))  # first: who is asking
    csrf.init_app(app)                                     # then: did our page ask
    for blueprint in (board.bp, alarms.bp, branches.bp, devices.bp, incidents.bp,
                      privacy.bp):
        app.register_blueprint(blueprint)
    push.init_app(app, push_keys)
    plans.init_app(app, plan_links)
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

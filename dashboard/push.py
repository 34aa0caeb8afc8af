"""Web Push in the dashboard: subscribe a browser for a contact, revoke it, and the
"I'm responding" action of a push (hub.edges.push).

Routes::

    GET  /push                             this site's subscriptions; subscribe this browser
    POST /push/subscriptions               JSON {contact: phone, label, subscription}: the
                                           browser's PushSubscription, for that contact
    POST /push/revoke                      form phone, id: revoke one (who added it, or admins)
    GET  /push/public/sw.js                the service worker (scope "/")
    GET  /push/public/manifest.webmanifest the web app manifest (installable)
    POST /push/public/respond              JSON {token}: "I'm responding" from a notification;
                                           acknowledges the alarm as the token's contact

``/push/public/`` needs no session (auth.PUBLIC_PREFIXES) nor CSRF token
(csrf.EXEMPT_PREFIXES): the service worker's fetch carries the push's action token
instead, signed by the hub with the site's action secret (hub.config.push_keys), bound to one
alarm, contact and subscription, good for ``hub.edges.push.TOKEN_MAX_AGE_S`` and spent on first
use. A revoked subscription's tokens stop working.

The keys come from ``create_app(push_keys=...)`` (``haven dashboard`` reads
``HAVEN_PUSH_KEYS``); without them the page says how IT sets Web Push up.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import (Blueprint, abort, current_app, flash, g, jsonify, redirect,
                   render_template, request, url_for)

from hub.config.push_keys import PushKeys
from hub.core.lifecycle import AlarmEvent, IllegalTransition
from hub.edges.push import TOKEN_MAX_AGE_S, read_action_token
from hub.store.push import PushStore, parse_subscription

from .context import dashboard_context, now_ms

log = logging.getLogger(__name__)

bp = Blueprint("push", __name__, url_prefix="/push")


def _keys() -> PushKeys | None:
    return current_app.extensions.get("haven_push")


def _subs() -> PushStore:
    return PushStore(dashboard_context().store)


@bp.get("")
def index() -> Any:
    ctx, keys = dashboard_context(), _keys()
    contacts = sorted(ctx.site.contacts, key=lambda c: c.name.casefold())
    names = {c.phone: c.name for c in ctx.site.contacts}
    subs = _subs().everyone() if keys is not None else []
    return render_template("push.html", keys=keys, contacts=contacts, subs=subs, names=names)


@bp.post("/subscriptions")
def subscribe() -> Any:
    ctx = dashboard_context()
    if _keys() is None:
        return _problem(409, "Web Push is not set up on this site: IT runs 'haven provision "
                             "push' (docs/push.md)")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _problem(400, "send JSON: {contact, label, subscription}")
    phone = body.get("contact")
    if not isinstance(phone, str) or all(c.phone != phone for c in ctx.site.contacts):
        return _problem(400, "contact: pick a contact of the site file (their phone number)")
    label = body.get("label") if isinstance(body.get("label"), str) else ""
    try:
        sub = parse_subscription(body.get("subscription"), phone, label=label,
                                 by=g.user.name, added_ms=now_ms())
    except ValueError as exc:
        return _problem(400, str(exc))
    sub_id = _subs().add(sub)
    log.info("push subscription %s added for %s by %s", sub_id, phone, g.user.name)
    return jsonify({"id": sub_id, "contact": ctx.site.contact(phone).name}), 201


@bp.post("/revoke")
def revoke() -> Any:
    phone, sub_id = request.form.get("phone", ""), request.form.get("id", "")
    subs = _subs()
    sub = subs.get(phone, sub_id)
    if sub is None:
        abort(404, description="No such subscription (revoked already?).")
    if not g.user.is_admin and sub.by != g.user.name:
        abort(403, description="Only whoever added a subscription, or an admin, may revoke it.")
    subs.remove(phone, sub_id)
    log.info("push subscription %s of %s revoked by %s", sub_id, phone, g.user.name)
    flash(f"Revoked: {dashboard_context().site.contact(phone).name} no longer gets pushes on "
          f"{sub.label or 'that browser'}.", "info")
    return redirect(url_for("push.index"), 303)


@bp.get("/public/sw.js")
def service_worker() -> Any:
    response = current_app.send_static_file("sw.js")
    response.headers["Service-Worker-Allowed"] = "/"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/public/manifest.webmanifest")
def manifest() -> Any:
    name = dashboard_context().site.name
    response = jsonify({
        "name": f"Haven · {name}", "short_name": "Haven", "start_url": "/",
        "scope": "/", "display": "standalone", "background_color": "#ffffff",
        "theme_color": "#b00020", "description": "Staff alarms: the board and alarm pages",
        "icons": [{"src": url_for("static", filename="icon.svg"), "sizes": "any",
                   "type": "image/svg+xml", "purpose": "any"}]})
    response.mimetype = "application/manifest+json"
    return response


@bp.post("/public/respond")
def respond() -> Any:
    """The notification's "I'm responding": acknowledge as the token's contact, once."""
    keys = _keys()
    body = request.get_json(silent=True)
    token = body.get("token") if isinstance(body, dict) else None
    if keys is None or not isinstance(token, str) or len(token) > 1000:
        return _problem(400, "send JSON {token} from a Haven push notification")
    claims = read_action_token(keys, token)
    if claims is None:
        return _problem(403, "this action is not a valid Haven push (forged, altered or "
                             "expired): open the alarm page and acknowledge there")
    ctx, subs = dashboard_context(), _subs()
    if subs.get(claims.phone, claims.sub_id) is None:
        return _problem(410, "this browser's push subscription was revoked: open the alarm "
                             "page and acknowledge there")
    if not subs.spend(claims.nonce, TOKEN_MAX_AGE_S):
        return _problem(409, "this notification's action was used already")
    contact = ctx.site.contact(claims.phone)
    try:
        alarm = ctx.store.transition(claims.alarm_id, AlarmEvent.ACKNOWLEDGE, by=contact.name,
                                     now_ms=now_ms())
        acknowledged = True
    except KeyError:
        return _problem(404, "no such alarm (removed?)")
    except IllegalTransition:  # acknowledged or closed already, perhaps a moment ago
        alarm, acknowledged = ctx.store.get_alarm(claims.alarm_id), False
    if acknowledged:
        log.info("alarm %s acknowledged by %s (push)", claims.alarm_id, contact.name)
    return jsonify({"acknowledged": acknowledged, "alarm_id": claims.alarm_id,
                    "state": str(alarm.state) if alarm else "",
                    "acknowledged_by": alarm.acknowledged_by if alarm else None,
                    "url": url_for("alarms.show", alarm_id=claims.alarm_id)})


def _problem(status: int, message: str) -> Any:
    return jsonify({"error": message}), status


def init_app(app, keys: PushKeys | None) -> None:
    app.extensions["haven_push"] = keys
    app.register_blueprint(bp)

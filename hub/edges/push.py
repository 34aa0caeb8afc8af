"""Web Push pages: an alarm to every browser its contact subscribed (RFC 8030/8291/8292).

:class:`PushNotifier` sends one page (a ``push`` page key: alarm, attempt, contact
phone) to each of the contact's subscriptions (hub.store.push) through pywebpush, which
encrypts the payload (aes128gcm, http_ece) and signs the VAPID header (py-vapid) with the
site's keys (hub.config.push_keys). Like the SMS notifier it only sends and reports a
:class:`hub.model.Delivery`; claims, retries and the other route wrap it (hub.engine.pager,
hub.engine.push_route).

- accepted by at least one push service (HTTP 201): sent;
- HTTP 404/410: the browser unsubscribed or the subscription expired: it is removed;
- HTTP 429/5xx, no connection, a timeout: retryable;
- no subscription left, or every push service refused: failed, not retryable.

The payload (JSON, read by the dashboard's service worker ``dashboard/static/sw.js``)::

    {"v": 1, "alarm_id", "kind", "kind_label", "branch", "room", "pressed_at_ms",
     "drill", "title", "body", "url": "/alarms/<id>", "respond_url", "token"}

``token`` is an "I'm responding" action token (:func:`action_token`): signed with the
site's action secret, naming the alarm, the contact and the subscription, checked and
spent once by the dashboard (``POST /push/public/respond``).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from dataclasses import dataclass

from hub.config.push_keys import PushKeys
from hub.core.model import Alarm, Delivery
from hub.store.push import PushStore, Subscription

log = logging.getLogger("haven.hub")

#: Seconds to wait for a push service; like Twilio's (hub.edges.notify.TWILIO_TIMEOUT_S), short
#: of the claim's lease (hub.engine.pager.LEASE_MS).
PUSH_TIMEOUT_S = 3.0
#: How long a push service keeps a page for a phone that is off or out of coverage, in
#: seconds (the ``TTL`` header): after 10 min a page is stale (later rounds page again).
PUSH_TTL_S = 600
#: How long an "I'm responding" token is good for, in seconds.
TOKEN_MAX_AGE_S = 6 * 3600
#: The dashboard's URL that takes the action token (no session needed: the token is it).
RESPOND_PATH = "/push/public/respond"
_SALT = "haven-push-respond"


@dataclass(frozen=True)
class ActionToken:
    """What an "I'm responding" token says: who may acknowledge which alarm, from which
    subscription; ``nonce`` makes it single use."""

    alarm_id: str
    phone: str
    sub_id: str
    nonce: str


def _serializer(keys: PushKeys):
    from itsdangerous import URLSafeTimedSerializer
    return URLSafeTimedSerializer(keys.action_secret, salt=_SALT)


def action_token(keys: PushKeys, alarm_id: str, phone: str, sub_id: str) -> str:
    """A signed, timestamped token for one push to one subscription (itsdangerous, HMAC)."""
    return _serializer(keys).dumps({"a": alarm_id, "c": phone, "s": sub_id,
                                    "n": secrets.token_urlsafe(12)})


def read_action_token(keys: PushKeys, token: str,
                      max_age_s: int = TOKEN_MAX_AGE_S) -> ActionToken | None:
    """The token's claims, or ``None`` if it is forged, altered or older than
    ``max_age_s``. Whether it was spent already is the store's to say
    (:meth:`hub.store.push.PushStore.spend`)."""
    from itsdangerous import BadSignature
    try:
        raw = _serializer(keys).loads(token, max_age=max_age_s)
        return ActionToken(str(raw["a"]), str(raw["c"]), str(raw["s"]), str(raw["n"]))
    except (BadSignature, KeyError, TypeError):
        return None


def payload(alarm: Alarm, site, keys: PushKeys, sub: Subscription, *, attempt: int,
            now_ms: int) -> bytes:
    """The push's JSON for ``sub``; its text is the SMS's without the reply hint."""
    from hub.core.messages import sms_text
    label = site.kinds[alarm.kind].label if alarm.kind in site.kinds else alarm.kind
    branch = site.branches.get(alarm.branch)
    room = branch.room(alarm.room) if branch else None
    try:
        body = sms_text(alarm, site, drill=alarm.drill, attempt=attempt, now_ms=now_ms)
    except KeyError:  # kind or branch gone from the site config since the alarm
        body = f"HAVEN {label}: {alarm.branch}, {alarm.room}"
    return json.dumps({
        "v": 1, "alarm_id": alarm.id, "kind": alarm.kind, "kind_label": label,
        "branch": branch.name if branch else alarm.branch,
        "room": room.name if room else alarm.room,
        "pressed_at_ms": alarm.told_pressed_ms, "drill": alarm.drill,
        "title": f"{'DRILL ' if alarm.drill else ''}HAVEN {label}",
        "body": body, "url": f"/alarms/{alarm.id}", "respond_url": RESPOND_PATH,
        "token": action_token(keys, alarm.id, sub.phone, sub.id)}).encode()


class PushNotifier:
    """Sends pages by Web Push; one ``requests`` session (keep-alive) per sender thread."""

    name = "webpush"

    def __init__(self, keys: PushKeys, subs: PushStore, *, timeout_s: float = PUSH_TIMEOUT_S,
                 ttl_s: int = PUSH_TTL_S):
        self.keys, self.subs = keys, subs
        self._vapid = keys.vapid()
        import pywebpush  # noqa: F401  (~0.5 s with requests and aiohttp: at start, not at
        #                   the first alarm)
        self._timeout, self._ttl = timeout_s, ttl_s
        self._local = threading.local()

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            import requests
            session = self._local.session = requests.Session()
        return session

    def send(self, alarm: Alarm, site, phone: str, *, attempt: int, now_ms: int) -> Delivery:
        """Push ``alarm`` (its attempt ``attempt``) to every subscription of ``phone``."""
        subs = self.subs.of(phone)
        if not subs:
            return Delivery.failed("no push subscription", retryable=False)
        accepted, retryable, errors = [], False, []
        for sub in subs:
            status, error = self._push(sub, payload(alarm, site, self.keys, sub,
                                                    attempt=attempt, now_ms=now_ms))
            if status is not None and 200 <= status < 300:
                accepted.append(sub.id)
            elif status in (404, 410):
                self.subs.remove(phone, sub.id)
                log.warning("push subscription %s of %s is gone (HTTP %s): removed", sub.id,
                            phone, status)
                errors.append(f"{sub.id}: gone (HTTP {status})")
            else:
                retryable = retryable or status is None or status == 429 or status >= 500
                errors.append(f"{sub.id}: {error}")
        if accepted:
            return Delivery.sent("push-" + "+".join(accepted))
        return Delivery.failed("push: " + "; ".join(errors), retryable=retryable)

    def _push(self, sub: Subscription, data: bytes) -> tuple[int | None, str]:
        """One push request: (HTTP status, error words); status ``None`` when no answer."""
        import requests
        from pywebpush import WebPushException, webpush
        try:
            response = webpush(sub.info(), data, vapid_private_key=self._vapid,
                               vapid_claims={"sub": self.keys.subject},  # fresh: it is filled
                               ttl=self._ttl, timeout=self._timeout,
                               requests_session=self._session(),
                               headers={"Urgency": "high"})
            return response.status_code, ""
        except WebPushException as exc:
            return exc.status_code, f"HTTP {exc.status_code}"
        except requests.RequestException as exc:
            return None, f"push service unreachable ({type(exc).__name__})"


def push_from_env(site, store) -> PushNotifier | None:
    """The hub's Web Push notifier from ``HAVEN_PUSH_KEYS`` (hub.config.push_keys), or ``None``
    (logged when the site's policies name ``push``: those steps then text everyone).
    Raises :class:`hub.config.push_keys.PushKeyError` for keys named but unreadable."""
    from hub.config.push_keys import push_keys_from_env
    from hub.store.push import PushStore
    keys = push_keys_from_env()
    if keys is None:
        if any("push" in step.channels for kind in site.kinds.values()
               for step in kind.steps + kind.lone_worker_steps):
            log.warning("the site's policies name the channel push but this hub has no Web "
                        "Push keys (HAVEN_PUSH_KEYS; 'haven provision push'): push steps "
                        "text instead")
        return None
    log.info("web push: keys from %s (contact %s)", keys.directory, keys.subject)
    return PushNotifier(keys, PushStore(store))

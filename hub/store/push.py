"""Web Push subscriptions in Redis: each belongs to a contact (by E.164 phone).

Keys, under the store's prefix (default ``haven``)::

    haven:push:subs:<phone>    hash    subscription id -> JSON (endpoint, p256dh, auth,
                                       label, by, added_ms): the contact's browsers
    haven:push:contacts        set     phones with at least one subscription (the
                                       planner asks it once per attempt)
    haven:push:used:<nonce>    string  an "I'm responding" token spent (single use; expires
                                       with the token)

A subscription's id is the first 16 hex digits of the SHA-256 of its endpoint, so a
browser subscribing again replaces its entry. The dashboard adds and revokes
subscriptions; the hub reads them to send and removes one its push service says is gone
(HTTP 404/410).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from hub.store.alarms import Store

#: Push-service endpoints Haven accepts from a browser: https only (RFC 8030), bounded.
MAX_ENDPOINT_CHARS = 1024

_REMOVE = """
-- KEYS: the contact's subscription hash, the contacts set; ARGV: subscription id, phone
-- Removes one subscription; the phone leaves the set with its last one. 1 if it was there.
local gone = redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
return gone
"""


@dataclass(frozen=True)
class Subscription:
    """One browser's push subscription (the browser's ``PushSubscription.toJSON()``),
    belonging to the contact with ``phone``. ``by``: the dashboard user who added it;
    ``added_ms``: when (Unix ms)."""

    phone: str
    endpoint: str
    p256dh: str
    auth: str
    label: str = ""
    by: str = ""
    added_ms: int = 0

    @property
    def id(self) -> str:
        return subscription_id(self.endpoint)

    def info(self) -> dict:
        """The ``subscription_info`` pywebpush takes."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def subscription_id(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode()).hexdigest()[:16]


def parse_subscription(raw: object, phone: str, *, label: str = "", by: str = "",
                       added_ms: int = 0) -> Subscription:
    """A browser's ``PushSubscription.toJSON()`` checked: ``ValueError`` naming the field."""
    if not isinstance(raw, dict):
        raise ValueError("subscription: must be the browser's PushSubscription as JSON")
    endpoint, keys = raw.get("endpoint"), raw.get("keys")
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")) \
            or len(endpoint) > MAX_ENDPOINT_CHARS:
        raise ValueError("subscription.endpoint: must be the push service's URL "
                         f"(http(s), at most {MAX_ENDPOINT_CHARS} characters)")
    if not isinstance(keys, dict) or not all(
            isinstance(keys.get(k), str) and 8 <= len(keys[k]) <= 200
            and keys[k].replace("-", "").replace("_", "").replace("=", "").isalnum()
            for k in ("p256dh", "auth")):
        raise ValueError("subscription.keys: must hold p256dh and auth, base64url")
    return Subscription(phone, endpoint, keys["p256dh"], keys["auth"], label[:80], by,
                        added_ms)


class PushStore:
    """Subscriptions and spent tokens, on the hub's :class:`hub.store.alarms.Store` connection."""

    def __init__(self, store: Store):
        self.r, self._key = store.r, store.key
        self._remove = store.r.register_script(_REMOVE)

    def add(self, sub: Subscription) -> str:
        """Store (or replace) a subscription; returns its id."""
        fields = asdict(sub)
        with self.r.pipeline() as pipe:  # MULTI: the hash and the set together
            pipe.hset(self._key("push", "subs", sub.phone), sub.id, json.dumps(fields))
            pipe.sadd(self._key("push", "contacts"), sub.phone)
            pipe.execute()
        return sub.id

    def remove(self, phone: str, sub_id: str) -> bool:
        """Revoke one subscription of the contact; whether it was there."""
        return bool(self._remove(keys=[self._key("push", "subs", phone),
                                       self._key("push", "contacts")], args=[sub_id, phone]))

    def of(self, phone: str) -> list[Subscription]:
        """The contact's subscriptions, oldest first."""
        raw = self.r.hgetall(self._key("push", "subs", phone))
        subs = [Subscription(**json.loads(v)) for v in raw.values()]
        return sorted(subs, key=lambda s: s.added_ms)

    def get(self, phone: str, sub_id: str) -> Subscription | None:
        raw = self.r.hget(self._key("push", "subs", phone), sub_id)
        return Subscription(**json.loads(raw)) if raw else None

    def contacts(self) -> set[str]:
        """Phones of the contacts with a subscription (one round trip)."""
        return set(self.r.smembers(self._key("push", "contacts")))

    def has(self, phone: str) -> bool:
        return bool(self.r.sismember(self._key("push", "contacts"), phone))

    def everyone(self) -> list[Subscription]:
        """Every subscription, by contact then age (the dashboard's list)."""
        return [sub for phone in sorted(self.contacts()) for sub in self.of(phone)]

    def spend(self, nonce: str, ttl_s: int) -> bool:
        """Mark an action token spent: ``True`` the first time only (across dashboards)."""
        return bool(self.r.set(self._key("push", "used", nonce), "1", nx=True, ex=ttl_s))

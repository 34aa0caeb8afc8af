"""The second route: a page the SMS provider failed goes by Web Push, and the other way.

Wiring (hooks in hub.sending, hub.followups and hub.service; ``service.push`` is the
:class:`hub.push.PushNotifier`, ``None`` when the site has no push keys):

- a policy page by SMS or call that the API refuses (or cannot be reached for) at its
  first try sends, there and then on the same sender thread, the same attempt's ``push``
  page to that contact if they have a subscription (:func:`other_route`); the SMS is
  still tried again as before (hub.sending);
- a text whose delivery report says undelivered/failed does the same
  (:func:`other_route_later`, from the status callback's follow-up);
- a push page that fails (no subscription left, push service refused) sends the same
  attempt's SMS instead;
- an attempt whose planned pages all failed but whose other-route page got through has
  reached someone: no "nobody reached" (:func:`reached_other_way`).

The other route's page has the notification key of the same attempt and contact with the
other channel, ``(alarm, attempt, phone, push|sms)``: claimed like any page, so when the
step already named both channels, or a second failure asks again, nothing goes twice.
"""

from __future__ import annotations

import logging

from .escalation import FALLBACK_ATTEMPT_BASE, PlannedNotification
from .model import Channel, Delivery, NotificationKey

log = logging.getLogger("haven.hub")


def twin_key(key: NotificationKey) -> NotificationKey:
    """The other route's key: push for an SMS or a call, SMS for a push."""
    other = Channel.SMS if key.channel is Channel.PUSH else Channel.PUSH
    return NotificationKey(key.alarm_id, key.step, key.contact, other)


def _twin(service, item: PlannedNotification) -> PlannedNotification | None:
    """The other route's page for a failed policy page, or ``None`` when there is none
    (a follow-up's page, push not configured, or a contact without a subscription)."""
    if item.key.step >= FALLBACK_ATTEMPT_BASE or not item.retry:
        return None
    key = twin_key(item.key)
    if key.channel is Channel.PUSH and (service.push is None or
                                  not service.push.subs.has(item.key.contact)):
        return None
    return PlannedNotification(key, item.contact, item.text, item.ref)


def other_route(service, item: PlannedNotification) -> None:
    """``item`` failed at its first try: send its other route's page now, on this thread
    (claimed first: at most once). Never raises."""
    try:
        twin = _twin(service, item)
        if twin is None:
            return
        log.warning("%s to %s for alarm %s failed: sending by %s instead", item.key.channel,
                    item.contact.name, item.key.alarm_id, twin.key.channel)
        service._send(twin)
    except Exception:
        log.exception("the other route for %s failed", item.key)


def other_route_later(service, key: NotificationKey, text: str, ref: str = "") -> None:
    """A page reported undelivered (status callback): its other route's page, queued on the
    sender pool."""
    item = PlannedNotification(key, service.site.contact(key.contact), text, ref)
    if _twin(service, item) is not None:
        service.senders.submit(other_route, service, item)


def deliver_push(service, item: PlannedNotification) -> Delivery:
    """Send a ``push`` page (hub.sending's hook): the alarm as it is now, to every browser
    of the contact."""
    if service.push is None:
        return Delivery.failed("push: no Web Push keys on this hub (docs/push.md)",
                               retryable=False)
    alarm = service.store.get_alarm(item.key.alarm_id)
    if alarm is None:
        return Delivery.failed("push: the alarm is gone", retryable=False)
    attempt = item.key.step if item.key.step < FALLBACK_ATTEMPT_BASE else 0
    return service.push.send(alarm, service.site, item.key.contact, attempt=attempt,
                             now_ms=service._now_ms())


def reached_other_way(store, planned: list[PlannedNotification]) -> bool:
    """Whether an attempt whose planned pages all failed got one through by the other
    route (its twin page was accepted)."""
    twins = list(dict.fromkeys(twin_key(item.key) for item in planned))
    return any(outcome and outcome.startswith("sent:")
               for outcome in store.notification_outcomes(twins))

"""The second route: a page the SMS provider failed goes by Web Push, and the other way.

Wiring (hooks in hub.engine.pager, hub.engine.followups and hub.engine.escalator;
``pager.push`` is the :class:`hub.edges.push.PushNotifier`, ``None`` when the site has no
push keys):

- a policy page by SMS or call that the API refuses (or cannot be reached for) at its
  first try sends, there and then on the same sender thread, the same attempt's ``push``
  page to that contact if they have a subscription (:func:`other_route`); the SMS is
  still tried again as before (hub.engine.pager);
- a text whose delivery report says undelivered/failed does the same
  (:func:`other_route_later`, from the status callback's follow-up);
- a push page that fails (no subscription left, push service refused) sends the same
  attempt's SMS instead;
- an attempt whose planned pages all failed but whose other-route page got through has
  reached someone: no "nobody reached" (:func:`reached_other_way`).

The other route's page has the page key of the same attempt and contact with the
other channel, ``(alarm, attempt, phone, push|sms)``: claimed like any page, so when the
step already named both channels, or a second failure asks again, nothing goes twice.
"""

from __future__ import annotations

import logging

from hub.core.escalation import FALLBACK_ATTEMPT_BASE, PlannedPage
from hub.core.model import Channel, Delivery, PageKey

log = logging.getLogger("haven.hub")


def twin_key(key: PageKey) -> PageKey:
    """The other route's key: push for an SMS or a call, SMS for a push."""
    other = Channel.SMS if key.channel is Channel.PUSH else Channel.PUSH
    return PageKey(key.alarm_id, key.step, key.contact, other)


def _twin(pager, item: PlannedPage) -> PlannedPage | None:
    """The other route's page for a failed policy page, or ``None`` when there is none
    (a follow-up's page, push not configured, or a contact without a subscription)."""
    if item.key.step >= FALLBACK_ATTEMPT_BASE or not item.retry:
        return None
    key = twin_key(item.key)
    if key.channel is Channel.PUSH and (pager.push is None or
                                  not pager.push.subs.has(item.key.contact)):
        return None
    return PlannedPage(key, item.contact, item.text, item.ref)


def other_route(pager, item: PlannedPage) -> None:
    """``item`` failed at its first try: send its other route's page now, on this thread
    (claimed first: at most once). Never raises."""
    try:
        twin = _twin(pager, item)
        if twin is None:
            return
        log.warning("%s to %s for alarm %s failed: sending by %s instead", item.key.channel,
                    item.contact.name, item.key.alarm_id, twin.key.channel)
        pager.send(twin)
    except Exception:
        log.exception("the other route for %s failed", item.key)


def other_route_later(pager, key: PageKey, text: str, ref: str = "") -> None:
    """A page reported undelivered (status callback): its other route's page, queued on the
    sender pool."""
    item = PlannedPage(key, pager.site.contact(key.contact), text, ref)
    if _twin(pager, item) is not None:
        pager.senders.submit(other_route, pager, item)


def deliver_push(pager, item: PlannedPage) -> Delivery:
    """Send a ``push`` page (the pager's hook): the alarm as it is now, to every browser
    of the contact."""
    if pager.push is None:
        return Delivery.failed("push: no Web Push keys on this hub (docs/push.md)",
                               retryable=False)
    alarm = pager.store.get_alarm(item.key.alarm_id)
    if alarm is None:
        return Delivery.failed("push: the alarm is gone", retryable=False)
    attempt = item.key.step if item.key.step < FALLBACK_ATTEMPT_BASE else 0
    return pager.push.send(alarm, pager.site, item.key.contact, attempt=attempt,
                           now_ms=pager._now_ms())


def reached_other_way(store, planned: list[PlannedPage]) -> bool:
    """Whether an attempt whose planned pages all failed got one through by the other
    route (its twin page was accepted)."""
    twins = list(dict.fromkeys(twin_key(item.key) for item in planned))
    return any(outcome and outcome.startswith("sent:")
               for outcome in store.pages.outcomes(twins))

"""After the pages: follow-ups of failed pages, the all-clear, and delivery failure.

Wiring: :class:`Followups` is given the site, the store, the :class:`~hub.engine.pager.Pager`
and the clock; the service routes the provider's status callbacks, the device-command
forwarder's hook and safe-room door events here, and the escalator tells it when an
attempt's pages were all refused. Each follow-up has its own page key (attempt numbers far
above any policy's), so it is sent at most once like any page:

- an SMS that ends undelivered/failed is replaced by a call at once;
- an unanswered call (busy, no answer, voicemail) is placed again
  ``site.call_retry_after_s`` later, up to ``site.call_retries`` times, from a Redis
  sorted set any worker's timer leases;
- when nobody of an attempt could be reached (the API refused every page, or every page's
  delivery report says it reached nobody: hub.core.reach), the device shows NOT delivered,
  the dashboard marks the alarm "nobody reached" and the branch's ``fallback`` contacts
  are texted, once per attempt across workers;
- once someone acknowledges, everyone else who was reached is texted who is responding;
- a resolved or cancelled alarm's all-clear goes to everyone who was reached;
- a safe-room door opening while alarms of its branch are active is texted to everyone
  reached for them (staff left the refuge: those coming must know).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from functools import partial
from typing import Callable

import redis

from hub.core.escalation import (ALL_CLEAR_ATTEMPT, FALLBACK_ATTEMPT_BASE,
                                 FOLLOWUP_CALL_BASE, RESPONDING_ATTEMPT,
                                 SAFE_ROOM_LEFT_BASE, PlannedPage)
from hub.core.messages import (all_clear_text, call_text, page_ref, responding_text,
                               safe_room_left_text, sms_text)
from hub.core.model import Alarm, AlarmState, Channel, PageKey
from hub.core.reach import Reach, attempt_reach
from hub.core.site import Site
from hub.core.urgency import kind_rank
from hub.engine.pager import LEASE_MS, Pager
from hub.engine.push_route import other_route_later
from hub.store import Store

log = logging.getLogger("haven.hub")

#: Paged when every page of an attempt failed (Twilio down, numbers dead...).
FALLBACK_ROLE = "fallback"
def same_person(contact_name: str, by: str) -> bool:
    """Whether ``by`` (who acknowledged, as typed or as the SMS/keypress contact) names the
    contact ``contact_name``: ``"Dana Ortiz"`` is ``"Dana Ortiz (branch manager)"``, in
    any case."""
    by = by.strip().casefold()
    return bool(by) and by in (contact_name.strip().casefold(),
                               contact_name.split(" (")[0].strip().casefold())


class Followups:
    """Follow-up calls, call retries, "is responding", the all-clear and delivery failure.

    ``pager`` sends each text and call (claimed, so once across workers); ``clock``
    returns Unix seconds. ``arc``: the monitoring centre's queue (hub.arc.queue), set by
    the runner when the site has ``[arc]``."""

    def __init__(self, site: Site, store: Store, pager: Pager, *,
                 clock: Callable[[], float]):
        self.site, self.store, self.pager, self.clock = site, store, pager, clock
        self.arc = None

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def command_forwarded(self, fields: dict[str, str]) -> None:
        """Hook for the device-command forwarder: an ``acknowledged`` alarm tells the others
        who is responding; a ``resolved`` alarm gets its all-clear; both queue the
        monitoring centre's restore or cancel event (hub.arc)."""
        alarm_id = fields.get("alarm_id")
        if not alarm_id:
            return
        if self.arc is not None and fields.get("cmd") in ("acknowledged", "resolved"):
            alarm = self.store.get_alarm(alarm_id)  # restore or cancel event (hub.arc)
            if alarm is not None:
                self.arc.alarm_changed(alarm)
        if fields.get("cmd") == "acknowledged":
            self.send_responding(alarm_id)
        elif fields.get("cmd") == "resolved":
            self.send_all_clear(alarm_id)

    def followup(self, key_text: str, status: str) -> bool:
        """A page finally failed (from Twilio's status callback): an undelivered SMS is
        replaced by a call at once; an unanswered call (busy, no answer, voicemail) is
        placed again ``site.call_retry_after_s`` later, up to ``site.call_retries`` times;
        only while the alarm is still waiting for someone. When it was the last report
        of its attempt and none reached a person, that is a delivery failure (once).
        Returns whether a call was queued or scheduled."""
        alarm_id, attempt_text, phone, channel = key_text.split(":")
        attempt = int(attempt_text)
        alarm = self.store.get_alarm(alarm_id)
        if alarm is None or alarm.state is not AlarmState.RAISED:
            return False
        if attempt < FALLBACK_ATTEMPT_BASE:  # a policy's page, not a follow-up's
            self._check_reach(alarm, attempt)
        if channel == Channel.SMS:
            if status not in ("undelivered", "failed"):
                return False
            # the push says it in its own words (hub.edges.push)
            other_route_later(self.pager, PageKey.parse(key_text), "")
            original, n = attempt, 0
        elif attempt >= FOLLOWUP_CALL_BASE:
            original, n = divmod(attempt - FOLLOWUP_CALL_BASE, 10)
            n += 1
        else:
            original, n = attempt, 1
        if n > self.site.call_retries:
            log.error("alarm %s: %s did not answer %d calls; escalation goes on", alarm_id,
                      phone, n)
            return False
        key = PageKey(alarm_id, FOLLOWUP_CALL_BASE + 10 * original + n, phone,
                              Channel.CALL)
        delay_ms = int(self.site.call_retry_after_s * 1000) if n else 0
        log.warning("alarm %s: %s to %s %s; calling %s", alarm_id, channel, phone, status,
                    f"again in {delay_ms / 1000:g} s" if delay_ms else "instead")
        if delay_ms:
            self.store.pages.schedule_call_retry(key, self._now_ms() + delay_ms)
        else:
            self._place_followup_call(alarm, key)
        return True

    def run_call_retries(self) -> int:
        """Queue the call retries that are due (timer thread); returns how many. Each is
        done with once its call is placed (on the sender thread): the timer never waits
        for a call, which may queue behind a burst's pages (a lease that runs out
        meanwhile hands the retry to a timer again; the call's claim places it once)."""
        due = self.store.pages.lease_call_retries(self._now_ms(), LEASE_MS)
        for key_text in due:
            alarm_id, attempt_text, phone, _ = key_text.split(":")
            alarm = self.store.get_alarm(alarm_id)
            if alarm is not None and alarm.state is AlarmState.RAISED:
                key = PageKey(alarm_id, int(attempt_text), phone, Channel.CALL)
                placed = self._place_followup_call(alarm, key)
                placed.add_done_callback(partial(self._call_retry_placed, key_text))
            else:
                self.store.pages.call_retry_done(key_text)
        return len(due)

    def _call_retry_placed(self, key_text: str, _placed: Future) -> None:
        try:
            self.store.pages.call_retry_done(key_text)
        except redis.RedisError as exc:
            log.warning("call retry %s placed, but the store did not hear it (%s): its "
                        "lease runs out and a timer finds the call claimed", key_text, exc)

    def _place_followup_call(self, alarm: Alarm, key: PageKey) -> Future:
        contact = self.site.contact(key.contact)
        return self.pager.submit(PlannedPage(key, contact, call_text(alarm, self.site)),
                                 kind_rank(alarm.kind))

    def send_responding(self, alarm_id: str) -> int:
        """Text everyone who was reached for this alarm, but the person who acknowledged it,
        who is responding (hub.core.messages.responding_text), once each across workers (the
        text's claim, attempt RESPONDING_ATTEMPT). A call still in progress hears it when
        it asks again (dashboard.twilio_hooks). Returns how many were queued."""
        alarm = self.store.get_alarm(alarm_id)
        if alarm is None or alarm.state is not AlarmState.ACKNOWLEDGED:
            return 0  # closed meanwhile: the all-clear says it
        reached, drill = self._reached(alarm)
        others = {phone: name for phone, name in reached.items()
                  if not same_person(name, alarm.acknowledged_by or "")}
        self._text_each(alarm, others, RESPONDING_ATTEMPT,
                        responding_text(alarm, self.site, drill=drill))
        log.info("alarm %s acknowledged by %s: told %d other contact(s)", alarm.id,
                 alarm.acknowledged_by, len(others))
        return len(others)

    def send_all_clear(self, alarm_id: str) -> int:
        """Text everyone who was reached for this alarm that it is over (resolved or a false
        alarm), once each. Returns how many were queued."""
        alarm = self.store.get_alarm(alarm_id)
        if alarm is None or alarm.state not in (AlarmState.RESOLVED, AlarmState.CANCELLED):
            return 0
        reached, drill = self._reached(alarm)
        if not reached:
            return 0
        self._text_each(alarm, reached, ALL_CLEAR_ATTEMPT,
                        all_clear_text(alarm, self.site, drill=drill))
        log.info("alarm %s %s: all-clear to %d contact(s)", alarm.id, alarm.state, len(reached))
        return len(reached)

    def _reached(self, alarm: Alarm) -> tuple[dict[str, str], bool]:
        """Who a page of this alarm reached the API for, or whose device was alerted
        (hub.engine.colleagues) (phone -> contact name), from its timeline, and whether it
        is a drill (its own, not its branch's: hub.core.drill)."""
        reached: dict[str, str] = {}
        drill = alarm.drill
        for entry in self.store.timeline(alarm.id):
            if entry["event"] in ("notified", "alerted"):
                reached.setdefault(entry["to"], entry["contact"])
        return reached, drill

    def _text_each(self, alarm: Alarm, names: dict[str, str], attempt: int, text: str, *,
                   retry: bool = False) -> None:
        """Queue ``text`` to each phone of ``names`` (phone -> contact name) as the SMS of
        ``attempt``: claimed, so each goes out once across workers. ``retry``: tried again
        after a retryable failure while the alarm waits for a person (hub.engine.pager); the
        texts after an acknowledgement or the end are not."""
        for phone, name in names.items():
            key = PageKey(alarm.id, attempt, phone, Channel.SMS)
            self.pager.submit(PlannedPage(key, self.site.contact(phone, name), text,
                                                  retry=retry), kind_rank(alarm.kind))

    def _check_reach(self, alarm: Alarm, number: int) -> None:
        """Attempt ``number``'s delivery reports so far (the alarm's timeline): if every page
        ended without reaching a person, a delivery failure."""
        timeline = self.store.timeline(alarm.id)
        reach = attempt_reach(timeline, number)
        if reach.reach is not Reach.NOBODY:
            return
        drill = any(e.get("event") == "escalation" and e.get("attempt") == str(number)
                    and e.get("branch_state") == "drill" for e in timeline)
        try:
            text = sms_text(alarm, self.site, drill=drill, attempt=number)
        except KeyError:  # kind or branch gone from the site config since the alarm
            text = (f"{'DRILL ' if drill else ''}HAVEN {alarm.kind}: {alarm.branch}, "
                    f"{alarm.room}. Ref {page_ref(alarm.id, number)}")
        self._nobody_reached(alarm, number, reach.pages, reach.tried, text,
                             page_ref(alarm.id, number),
                             how="accepted, then reported not delivered or not answered")

    def safe_room_left(self, device_id: str, event_at: int, now_ms: int) -> int:
        """The safe-room door of ``device_id`` opened (``event_at``: the event's device time,
        ms): nobody shelters there now. Every active alarm of the branch records it in its
        timeline, and everyone reached for them is texted once (that staff LEFT the safe
        room only if they were recorded sheltering there). Returns how many texts were
        queued."""
        place = self.site.locate(device_id)
        if place is None:
            return 0
        branch, room = place
        sheltered = self.store.branches.end_shelter(branch.id, room.id) is not None
        texted: set[str] = set()
        for alarm in self.store.active_alarms():
            if alarm.branch != branch.id:
                continue
            self.store.add_timeline(alarm.id, "safe_room_left", at_ms=now_ms,
                                    reason=f"{room.name} door opened")
            reached, drill = self._reached(alarm)
            text = safe_room_left_text(alarm, self.site, room.id, now_ms, drill=drill,
                                       sheltered=sheltered)
            names = {phone: name for phone, name in reached.items() if phone not in texted}
            texted.update(names)
            self._text_each(alarm, names, SAFE_ROOM_LEFT_BASE + event_at % 1_000_000, text,
                            retry=True)
        if texted:
            log.warning("%s: %s door opened: %d contact(s) told staff left the safe room",
                        branch.name, room.name, len(texted))
        return len(texted)

    def delivery_failed(self, alarm: Alarm, number: int,
                         planned: list[PlannedPage]) -> None:
        """Nobody could be reached in this attempt: the API refused every page."""
        # The attempt's text (a call's words have no page reference).
        first = next((p for p in planned if p.key.channel is Channel.SMS), planned[0])
        self._nobody_reached(alarm, number, len(planned),
                             {item.contact.phone for item in planned}, first.text, first.ref,
                             how="refused by the API", refused=True)

    def _nobody_reached(self, alarm: Alarm, number: int, pages: int,
                        tried: set[str] | frozenset[str], page_text: str, ref: str, *,
                        how: str, refused: bool = False) -> None:
        """Nobody could be reached in attempt ``number`` (``pages`` pages to the phones
        ``tried``, saying ``page_text`` with page reference ``ref``): an alarm of its own. Once across workers (the
        store's mark, while the alarm is raised), the device that pressed shows NOT
        delivered (use the phone), the timeline and the dashboard say "nobody reached";
        the branch's fallback contacts are texted (claimed, so a worker redoing this after
        a crash sends only what had not gone out)."""
        marked = self.store.mark_nobody_reached(alarm.id, number, self._now_ms(),
                                                tried=pages, how=how, refused=refused)
        if marked < 0:
            return  # acknowledged or closed meanwhile: someone was reached after all
        if marked:
            log.error("alarm %s attempt %d: NOT DELIVERED to anyone (%d tried, %s)",
                      alarm.id, number, pages, how)
        fallback = [c for c in self.site.contacts if alarm.branch in c.branches
                    and FALLBACK_ROLE in c.roles and c.phone not in tried]
        text = ("HAVEN could not reach anyone for: "
                + page_text.removeprefix("HAVEN ").removeprefix("DRILL HAVEN "))
        for contact in fallback:
            key = PageKey(alarm.id, FALLBACK_ATTEMPT_BASE + number, contact.phone,
                                  Channel.SMS)
            self.pager.submit(PlannedPage(key, contact, text[:300], ref), kind_rank(alarm.kind))

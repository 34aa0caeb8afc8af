"""Delivery to the ARC as DC-09 expects, and supervision of the path.

One worker at a time (the queue's lease, hub.arc.queue) runs :meth:`ArcSender.run`:

- **delivery**: the oldest queued event goes to the primary receiver; with no ACK within
  ``ack_timeout_s`` it is sent again, same sequence number, up to ``attempts`` times; a
  NAK carrying the receiver's clock corrects our timestamps for that receiver (kept in
  Redis) and is answered by a resend; a DUH (not understood) is not resent there. Then
  the backup gets the same. With neither ACKing, the event stays first in the queue and
  is tried again every ``retry_s`` (and at once when supervision hears a receiver
  again): events go out in order once a receiver is back. Every outcome goes into the
  alarm's timeline (``arc`` entries).
- **supervision**: a NULL (link test) to each receiver every ``supervision_s``. A
  receiver that does not answer one (or fails a delivery) is a **trouble**: stored in
  ``haven:arc:trouble`` (the dashboard shows it), logged, and texted to IT once; cleared,
  and IT texted, when it answers again.

Pages (SMS, calls) never wait for any of this: the ARC is one more route, not a gate.
Wiring: ``ArcSender(queue, addresses, worker=hub_id, tell_it=texts.tell_it)``, ``run``
on a thread of its own (hub.app.runner). Times: the hub's clock, Unix seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import redis

from hub.core.arc import ArcSettings, Receiver
from hub.arc.dc09 import EVENTS, Address, Answer, Event, Phase, event_frame, null_frame
from hub.arc.link import exchange
from hub.arc.queue import ArcQueue

log = logging.getLogger("haven.arc")

#: With every receiver silent, the head event is tried again this often, in seconds.
RETRY_S = 10.0
#: The loop's pause when there is nothing to do, in seconds (also the stop latency).
IDLE_S = 0.05

Exchange = Callable[[Receiver, bytes, float], "Answer | None"]


@dataclass(frozen=True)
class Tried:
    """What one receiver answered to one message, after its resends: ``answer`` ACK, NAK,
    DUH, RSP or ``none``; ``sends`` how many times it was sent; ``ms`` from the first send
    to the last answer."""

    receiver: Receiver
    answer: str
    sends: int
    ms: float

    @property
    def acked(self) -> bool:
        return self.answer == "ACK"


class ArcSender:
    """Sends queued events and supervises the receivers while holding the lease."""

    def __init__(self, queue: ArcQueue, addresses: dict[str, Address], *, worker: str,
                 tell_it: Callable[[str], None] = lambda text: None,
                 clock: Callable[[], float] = time.time, send: Exchange = exchange,
                 retry_s: float = RETRY_S, idle_s: float = IDLE_S,
                 supervision_s: float | None = None):
        """``supervision_s``: the link-test interval, ``None`` for the site's (tests pass
        a short one)."""
        self.queue, self.addresses, self.worker = queue, addresses, worker
        self._supervision_s = supervision_s
        self.tell_it, self.clock, self.send = tell_it, clock, send
        self.retry_s, self.idle_s = retry_s, idle_s
        self._next_null: dict[str, float] = {}
        self._next_delivery = 0.0

    @property
    def settings(self) -> ArcSettings:
        arc = self.queue.site.arc
        assert arc is not None, "the ARC sender runs only with [arc] in the site config"
        return arc

    def lease_ms(self) -> int:
        """Long enough for one message's sends to one receiver between renewals."""
        return int((self.settings.ack_timeout_s * 2 + 5) * 1000)

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop``; an unreachable store is logged, not fatal."""
        self._loop(stop, self.step, self.queue.queued)
        try:
            self.queue.release(self.worker)
        except redis.RedisError:
            pass

    def run_supervision(self, stop: threading.Event) -> None:
        """Supervise the receivers until ``stop`` (a thread of its own, so a silent
        receiver's link test never holds up an alarm's event)."""
        self._loop(stop, self.supervise_due)

    def _loop(self, stop: threading.Event, work: Callable[[], bool],
              wake: threading.Event | None = None) -> None:
        """Run ``work`` until ``stop``; when it found nothing to do, wait ``idle_s`` or
        until ``wake`` is set."""
        while not stop.is_set():
            if wake is not None:
                wake.clear()  # before the work: an event queued meanwhile wakes the wait
            try:
                busy = work()
            except redis.RedisError as exc:
                log.error("ARC: store unreachable (%s)", exc)
                busy = False
                stop.wait(1.0)
            except Exception:  # a bug must not end the ARC link silently: logged, retried
                log.exception("ARC: %s failed; trying again in 1 s", work.__name__)
                busy = False
                stop.wait(1.0)
            if not busy:
                (wake or stop).wait(self.idle_s)

    def step(self) -> bool:
        """One delivery pass: take the lease, deliver the head event. Returns whether an
        event was delivered (more may wait)."""
        if not self.queue.lease(self.worker, self.lease_ms()):
            return False
        if self.clock() < self._next_delivery:
            return False
        head = self.queue.head()
        if head is None:
            return False
        entry_id, fields = head
        queued = read_queued(fields)
        if queued is None:
            log.error("ARC: dropping a queued event that cannot be sent: %s", fields)
            self.queue.done(entry_id)
            return True
        if self.deliver(*queued):
            self.queue.done(entry_id)
            return True
        self._next_delivery = self.clock() + self.retry_s
        return False

    def supervise_due(self) -> bool:
        """Link-test each receiver whose interval is up (lease holder only)."""
        if not self.queue.lease(self.worker, self.lease_ms()):
            return False
        for receiver in self.settings.receivers:
            now = self.clock()
            if now >= self._next_null.get(receiver.name, 0.0):
                self._next_null[receiver.name] = now + (self._supervision_s
                                                        or self.settings.supervision_s)
                self.supervise(receiver)
        return False

    # --- delivery ----------------------------------------------------------------------

    def deliver(self, event: Event, seq: int, alarm_id: str) -> bool:
        """Send one queued event: the primary, then the backup. ``True`` once ACKed."""
        silent = self.queue.troubles()
        # The primary first, as DC-09 asks, unless it is known silent and the backup is not:
        # then the backup first, so an alarm does not wait out the silent one's resends.
        order = sorted(self.settings.receivers, key=lambda r: r.name in silent)
        for receiver in order:
            address = self.addresses[receiver.name]
            tried = self.exchange(receiver, lambda now: event_frame(
                event, self.settings.format, seq, address, now))
            self.queue.timeline(alarm_id, at_ms=int(self.clock() * 1000), phase=event.phase,
                                seq=seq, receiver=receiver.where, outcome=tried.answer,
                                sends=tried.sends, ms=round(tried.ms, 1))
            if tried.acked:
                log.info("alarm %s: ARC %s event %04d ACKed by %s in %.1f ms (%d send(s))",
                         alarm_id, event.phase, seq, receiver.where, tried.ms, tried.sends)
                self._answered(receiver)
                return True
            log.error("alarm %s: ARC %s event %04d: %s answered %s after %d send(s)",
                      alarm_id, event.phase, seq, receiver.where, tried.answer, tried.sends)
            self._silent(receiver, f"{event.phase} event: {tried.answer}")
        log.error("alarm %s: no ARC receiver took its %s event; it stays queued and is sent "
                  "again every %.0f s (pages go on as usual)", alarm_id, event.phase,
                  self.retry_s)
        return False

    def exchange(self, receiver: Receiver, build: Callable[[float], bytes]) -> Tried:
        """:func:`send_until_ack` with this receiver's stored clock correction, renewing
        the lease before each send."""
        def before_send() -> float:
            self.queue.lease(self.worker, self.lease_ms())
            return self.queue.clock_offset(receiver.name)
        return send_until_ack(receiver, build, self.settings, send=self.send, clock=self.clock,
                              before_send=before_send,
                              corrected=lambda offset: self.queue.set_clock_offset(
                                  receiver.name, offset))

    # --- supervision -------------------------------------------------------------------

    def supervise(self, receiver: Receiver) -> Tried:
        """A NULL link test to ``receiver``; a trouble when it does not ACK."""
        account = next(iter(self.settings.accounts.values()))
        address = self.addresses[receiver.name]
        seq = self.queue.next_sequence()
        tried = self.exchange(receiver, lambda now: null_frame(seq, address, account, now))
        if tried.acked:
            self._answered(receiver)
        else:
            self._silent(receiver, f"link test: {tried.answer}")
        return tried

    def _silent(self, receiver: Receiver, detail: str) -> None:
        now_ms = int(self.clock() * 1000)
        if self.queue.trouble_raised(receiver.name, now_ms, detail):
            log.error("ARC receiver %s is not answering (%s): trouble", receiver.where, detail)
            self.tell_it(f"HAVEN: the monitoring centre's {receiver.name} receiver "
                         f"({receiver.host}) is not answering. Alarms still page by SMS "
                         "and calls.")

    def _answered(self, receiver: Receiver) -> None:
        if self.queue.trouble_cleared(receiver.name, int(self.clock() * 1000)):
            log.warning("ARC receiver %s answers again: trouble cleared", receiver.where)
            self.tell_it(f"HAVEN: the monitoring centre's {receiver.name} receiver "
                         f"({receiver.host}) answers again.")
            self._next_delivery = 0.0  # anything waiting goes now


def read_queued(fields: dict[str, str]) -> tuple[Event, int, str] | None:
    """A queued entry as (event, sequence number, alarm id), or ``None`` when it cannot be
    sent (written by something else, or an event name this version does not know)."""
    try:
        if fields["event"] not in EVENTS:
            return None
        return (Event(fields["account"], Phase(fields["phase"]), fields["event"],
                      int(fields["zone"]), fields.get("text", "")),
                int(fields["seq"]), fields["alarm_id"])
    except (KeyError, ValueError):
        return None


def send_until_ack(receiver: Receiver, build: Callable[[float], bytes], settings: ArcSettings,
                   *, send: Exchange = exchange, clock: Callable[[], float] = time.time,
                   before_send: Callable[[], float] = lambda: 0.0,
                   corrected: Callable[[float], None] = lambda offset: None) -> Tried:
    """Send to ``receiver`` until it ACKs, at most ``settings.attempts`` times: again on
    silence (``ack_timeout_s``) and on NAK. A NAK with the receiver's clock corrects ours:
    ``corrected(offset_s)`` keeps the difference, and ``before_send()`` returns the one to
    use (seconds to add to our clock). A DUH is final. ``build(now)`` makes the frame
    stamped ``now``."""
    started = time.perf_counter()
    answer: Answer | None = None
    sends, nak_offset = 0, None
    for sends in range(1, settings.attempts + 1):
        offset = before_send()
        offset = offset if nak_offset is None else nak_offset
        answer = send(receiver, build(clock() + offset), settings.ack_timeout_s)
        if answer is None:
            continue
        if answer.kind in ("ACK", "DUH"):
            break
        if answer.kind == "NAK" and answer.clock is not None:
            offset = answer.clock - clock()
            log.warning("ARC %s NAKed; its clock differs from ours by %+.0f s: timestamps "
                        "corrected", receiver.where, offset)
            corrected(offset)
            nak_offset = offset
    ms = (time.perf_counter() - started) * 1000
    return Tried(receiver, answer.kind if answer else "none", sends, ms)

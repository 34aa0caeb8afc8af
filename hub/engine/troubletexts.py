"""Device troubles texted to IT in batches, and the hub's broker outage reported as such.

IT must never learn to ignore Haven's texts, so troubles are not texted one by one:
supervision (hub.engine.supervision) hands each trouble change to :meth:`TroubleTexts.queue`
(once across workers), which stores it in the branch's pending list; after every
check, :meth:`TroubleTexts.after_check` sends each branch's pending changes as **one
text** to that branch's ``it`` contacts, at most one text per branch per
``BATCH_EVERY_S`` (60 s). A quiet branch's first trouble leaves at once; what
follows within the minute waits for the next text. A hub start whose devices have
not connected yet is one text per branch, not one per device.

While this worker's own broker connection is down (``broker()`` says so), devices'
silence is not their trouble (supervision raises no offline troubles then): after
``BROKER_REPORT_AFTER_S`` the IT contacts of every branch are texted once that the
hub cannot reach its broker, and once more when it is back.

Its keys (each branch's pending changes and last text, the outage report) belong to
hub.store.troubles (``store.troubles``).

Once across hub workers: one Lua script takes a branch's whole pending list and sets
its "sent" key in one step, so only one worker gets each batch, leased to it until
every IT contact was tried; a worker that dies before that leaves the batch to the
next one whose check finds the lease run out (``TEXT_LEASE_MS``): sent late, or twice
to those the dead worker reached, never lost. The outage report is claimed with SET NX
and its end with DEL.

Wiring: ``texts = TroubleTexts(site, store, notifier, broker=lambda: mqtt.link)``,
``Supervisor(site, store, texts.queue, broker=..., after_check=texts.after_check)``.
Texts leave on a small pool of their own: a slow API never holds up supervision.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from typing import Callable

from hub.core.messages import broker_text, trouble_batch_text
from hub.edges.notify import Notifier
from hub.config.site import Contact, Site
from hub.store.alarms import Store
from hub.core.troubles import Trouble, TroubleNotice

log = logging.getLogger("haven.supervision")

#: At most one trouble text per branch this often, in seconds.
BATCH_EVERY_S = 60.0
#: The hub's broker connection down this long is reported to IT, in seconds (a broker
#: restart for an upgrade takes about one).
BROKER_REPORT_AFTER_S = 10.0
#: The role of the contacts told about device troubles and broker outages.
IT_ROLE = "it"

class TroubleTexts:
    """Queues trouble changes and texts them per branch; reports broker outages.

    ``broker()`` returns ``(connected, since_ms)`` of this worker's broker connection
    (hub.edges.mqtt.HubMqtt.link); ``senders`` runs the texts (default: 2 threads)."""

    def __init__(self, site: Site, store: Store, notifier: Notifier, *,
                 broker: Callable[[], tuple[bool, int]] = lambda: (True, 0),
                 senders: Executor | None = None,
                 batch_every_s: float = BATCH_EVERY_S):
        self.site, self.store, self.notifier, self.broker = site, store, notifier, broker
        self.senders = senders or ThreadPoolExecutor(2, thread_name_prefix="trouble")
        self.batch_every_ms = int(batch_every_s * 1000)
        self._saw_outage = False  # this worker saw the broker unreachable (and reported it)

    def queue(self, notice: TroubleNotice) -> None:
        """A trouble change, for the branch's next text (supervision's ``notify``)."""
        self.store.troubles.queue_text(notice.branch_id, {
            "device": notice.device_id, "trouble": str(notice.trouble),
            "raised": notice.raised, "at_ms": notice.at_ms})

    def after_check(self, now_ms: int) -> None:
        """Send each branch's pending changes (if its minute is up), then report the
        broker's outage or its end. Raises ``redis.RedisError``."""
        for branch_id in self.site.branches:
            taken = self.store.troubles.take_texts(branch_id, now_ms, self.batch_every_ms)
            if taken is None:
                continue
            token, items = taken
            notices = [_notice(item, branch_id, self.site) for item in items]
            self._text(self._it(branch_id), trouble_batch_text(branch_id, notices, self.site),
                       f"{len(notices)} trouble change(s) at {branch_id}",
                       then=partial(self._sent, branch_id, token))
        self._check_broker(now_ms)

    def _check_broker(self, now_ms: int) -> None:
        connected, since_ms = self.broker()
        if not connected and now_ms - since_ms >= BROKER_REPORT_AFTER_S * 1000:
            self._saw_outage = True
            if self.store.troubles.report_broker_outage(since_ms):
                log.error("broker unreachable for %.0f s: no device can raise an alarm "
                          "through it; devices' silence is not their trouble meanwhile",
                          (now_ms - since_ms) / 1000)
                self._text(self._it(), broker_text(reachable=False), "broker unreachable")
        elif connected and self._saw_outage:
            self._saw_outage = False
            if self.store.troubles.end_broker_outage():
                self._text(self._it(), broker_text(reachable=True), "broker back")

    def tell_it(self, text: str) -> None:
        """Text every branch's IT contacts ``text`` (the ARC link's troubles, hub.arc)."""
        self._text(self._it(), text, "monitoring centre link")

    def _it(self, branch_id: str | None = None) -> list[Contact]:
        """The ``it`` contacts of a branch, or of every branch (each phone once)."""
        chosen: dict[str, Contact] = {}
        for c in self.site.contacts:
            if IT_ROLE in c.roles and (branch_id is None or branch_id in c.branches):
                chosen.setdefault(c.phone, c)
        return list(chosen.values())

    def _text(self, contacts: list[Contact], text: str, what: str,
              then: Callable[[], None] | None = None) -> None:
        """Text ``contacts`` on the senders; ``then`` runs once every one was tried (at
        once if there is nobody to tell)."""
        if not contacts:
            log.error("%s: no contact with role %r to tell; add one to the site config %s",
                      what, IT_ROLE, self.site.source)
            if then is not None:
                then()
            return
        log.warning("%s: texting %d IT contact(s)", what, len(contacts))
        left, lock = [len(contacts)], threading.Lock()

        def send(contact: Contact) -> None:
            self._send(contact, text)
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last and then is not None:
                then()
        for contact in contacts:
            self.senders.submit(send, contact)

    def _sent(self, branch_id: str, token: str) -> None:
        """A batch texted: released, so no other worker sends it again."""
        try:
            self.store.troubles.texts_sent(branch_id, token)
        except Exception:  # its lease runs out and another worker texts it again
            log.exception("marking the trouble texts of %s sent failed: they may go twice",
                          branch_id)

    def _send(self, contact: Contact, text: str) -> None:
        try:
            delivery = self.notifier.send_sms(contact.phone, text)
            if not delivery.ok:
                log.error("trouble SMS to %s FAILED: %s", contact.name, delivery.error)
        except Exception:
            log.exception("trouble SMS to %s failed", contact.name)


def _notice(obj: dict, branch_id: str, site: Site) -> TroubleNotice:
    place = site.locate(obj["device"])
    return TroubleNotice(obj["device"], Trouble(obj["trouble"]), bool(obj["raised"]),
                         branch_id, place[1].id if place else "", int(obj["at_ms"]))

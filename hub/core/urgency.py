"""Which alarms' pages go out first when the API connections are the limit. Pure.

A hub worker sends through ``HAVEN_API_CONNECTIONS`` connections (hub.engine.senders);
with the provider answering in ``L`` seconds it can start at most ``connections / L``
pages a second. When more pages are due than that (hundreds of alarms live at once),
pages wait for a connection, and they leave in this order, lowest rank first, and in
the order they were queued within a rank:

====  ===========================  ================================================
rank  kinds                        why
====  ===========================  ================================================
0     ``emergency``                a life may be at risk now
1     ``safe_room``                staff are sheltering from a threat
2     ``missed_checkin``,          a lone worker has not answered, or asked to be
      ``welfare``                  checked on: maybe unable to press again
3     ``assist``, and any kind a   help wanted, no danger said; also follow-ups
      site names itself            (:data:`OTHER_RANK`) and a sender's other work
4     ``test``                     the daily test press (pages no one by default)
====  ===========================  ================================================

A page's rank is its alarm's kind's, whatever it is (a round's page, its retry, a
follow-up call, "is responding", the all-clear): an emergency's follow-ups go before an
assist's rounds. The rank orders the queue only; it never holds a page back when a
connection is free.
"""

from __future__ import annotations

#: Rank of each of Haven's alarm kinds (hub.core.site.Kind ids): lower goes first.
KIND_RANKS: dict[str, int] = {
    "emergency": 0,
    "safe_room": 1,
    "missed_checkin": 2,
    "welfare": 2,
    "assist": 3,
    "test": 4,
}

#: Rank of a kind a site names itself, and of a sender's work that is no alarm's page.
OTHER_RANK = 3


def kind_rank(kind: str) -> int:
    """The rank of the pages of an alarm of ``kind`` (lower leaves first)."""
    return KIND_RANKS.get(kind, OTHER_RANK)

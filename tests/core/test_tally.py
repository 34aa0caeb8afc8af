"""hub.core.tally: the last of an attempt's pages finishes it, exactly once, after every other
page's outcome is recorded."""

import random
import threading

import pytest

from hub.core.tally import UNCHECKED, AttemptTally, FinishCheck

CHECK = FinishCheck("a1", 0, 5000, ())


def run_pages(pages: int, *, recorded_by_last: set[int] = frozenset(), unsent=frozenset()):
    """Each page on its own thread, as hub.engine.pager does: claim_last, record, done."""
    recorded: list[int] = []
    finishes: list[tuple[object, list[int]]] = []
    lock = threading.Lock()
    tally = AttemptTally(pages, CHECK, lambda result: finishes.append((result, list(recorded))))
    start = threading.Barrier(pages)

    def page(i: int, ticket) -> None:
        start.wait()
        try:
            if i in unsent:
                return
            check = ticket.claim_last()
            threading.Event().wait(random.random() / 1000)
            with lock:
                recorded.append(i)
            if check is not None:
                ticket.finished(f"checked by {i}")
        finally:
            ticket.done()

    threads = [threading.Thread(target=page, args=(i, tally.ticket())) for i in range(pages)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    return recorded, finishes


@pytest.mark.parametrize("round_", range(20))
def test_the_attempt_is_finished_once_after_every_page_is_recorded(round_):
    recorded, finishes = run_pages(8)
    assert len(finishes) == 1
    # Whether by the last done() or by the last page's own record (which, here, appends
    # itself before finishing), no page's record comes after the finish.
    result, seen = finishes[0]
    assert sorted(seen) == list(range(8)), result


def test_a_single_page_finishes_its_attempt_with_its_own_record():
    recorded, finishes = run_pages(1)
    assert finishes == [("checked by 0", [0])]


def test_pages_that_were_not_sent_still_count():
    recorded, finishes = run_pages(3, unsent={0, 1, 2})
    assert finishes == [(UNCHECKED, [])]


def test_a_ticket_counts_once():
    finishes = []
    tally = AttemptTally(2, CHECK, finishes.append)
    first = tally.ticket()
    first.done()
    first.done()
    assert finishes == []
    tally.ticket().done()
    assert finishes == [UNCHECKED]


def test_an_attempt_without_pages_is_refused():
    with pytest.raises(ValueError):
        AttemptTally(0, CHECK, print)

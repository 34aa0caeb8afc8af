"""hub.engine.groupcommit: concurrent callers share round trips, each gets its own result or
error, and a lone caller runs on its own thread at once."""

import threading
import time

import pytest

from hub.engine.groupcommit import GroupCommit


def test_a_lone_caller_runs_its_item_on_its_own_thread():
    ran_on = []
    group = GroupCommit(lambda items: ran_on.append(threading.current_thread()) or
                        [item * 2 for item in items])
    assert group.call(21) == 42
    assert ran_on == [threading.current_thread()]
    assert (group.batches, group.items) == (1, 1)


def test_callers_arriving_during_a_batch_go_together_in_the_next_and_each_gets_its_own():
    first_running, release = threading.Event(), threading.Event()
    batches = []

    def run(items):
        batches.append(list(items))
        if items == [0]:
            first_running.set()
            assert release.wait(5)
        return [ValueError(f"item {i}") if i == 3 else i * 10 for i in items]

    group = GroupCommit(run)
    results: dict[int, object] = {}

    def caller(i):
        try:
            results[i] = group.call(i)
        except ValueError as exc:
            results[i] = str(exc)

    first = threading.Thread(target=caller, args=(0,))
    first.start()
    assert first_running.wait(5)
    others = [threading.Thread(target=caller, args=(i,)) for i in range(1, 6)]
    for t in others:
        t.start()
    deadline = time.monotonic() + 5
    while len(group._queue) < 6 and time.monotonic() < deadline:  # all queued behind it
        time.sleep(0.005)
    release.set()
    for t in [first, *others]:
        t.join(5)
    assert batches[0] == [0] and sorted(batches[1]) == [1, 2, 3, 4, 5]
    assert len(batches) == 2
    assert results == {0: 0, 1: 10, 2: 20, 3: "item 3", 4: 40, 5: 50}


def test_a_failed_batch_reaches_every_caller_in_it_and_the_next_batch_still_runs():
    gate = threading.Barrier(4)
    calls = []

    def run(items):
        calls.append(len(items))
        if len(calls) == 2:
            raise ConnectionError("store down")
        return items

    group = GroupCommit(run, max_batch=2)
    outcomes = []
    lock = threading.Lock()

    def caller(i):
        gate.wait()
        try:
            value = group.call(i)
        except ConnectionError as exc:
            value = exc
        with lock:
            outcomes.append(value)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(outcomes) == 4 and max(calls) <= 2
    errors = [o for o in outcomes if isinstance(o, ConnectionError)]
    assert len(errors) == calls[1]  # every caller of the failed batch, and only those
    assert group.items == 4


def test_a_batch_answering_the_wrong_number_of_results_is_an_error_for_its_callers():
    group = GroupCommit(lambda items: [])
    with pytest.raises(RuntimeError, match="1 item"):
        group.call("x")


def test_many_threads_each_get_exactly_their_own_result():
    group = GroupCommit(lambda items: [(item, len(items)) for item in items])
    results: dict[int, object] = {}

    def caller(base):
        for j in range(200):
            results[base + j] = group.call(base + j)[0]

    threads = [threading.Thread(target=caller, args=(k * 1000,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {k * 1000 + j: k * 1000 + j for k in range(16) for j in range(200)}
    assert group.items == 3200 and group.batches <= 3200
    assert not group._queue


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(lambda items: items, max_batch=0)

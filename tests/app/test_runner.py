"""The worker's start-up: what run_hub does to the interpreter before it serves."""

import gc

from hub.app.runner import GC_YOUNG_THRESHOLD, settle_heap


def test_settling_the_heap_leaves_start_up_objects_out_of_later_collections():
    before = gc.get_threshold()
    held = object(), [object()]  # noqa: F841 - alive through the freeze
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
        gc.collect()  # a full collection now leaves the frozen objects where they are
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)

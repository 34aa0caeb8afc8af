"""The fault matrix (issue #9): real processes killed, cut off and restarted mid-escalation.

Every test checks the same three promises (see :mod:`tests.faults.harness`): no alarm
lost, nothing paged twice for one (alarm, attempt, contact, channel), and escalation
resuming within 5 s. Marked ``faults``; run alone with ``pytest -m faults``.
"""

"""The pure core: the alarm model, lifecycle, escalation planner, schedule, texts and the
site's typed objects. No I/O: every function takes ``now`` when it needs time."""

"""The alarm engine: intake, escalation rounds, pages, follow-ups and device events,
composed from the store, the notifiers and the clock given to each."""

"""Redis state, one module per part (alarms, pages, branches, devices); every key is built here.

``from hub.store.alarms import Store`` is the whole store; the parts are its modules."""

from hub.store.alarms import Store

__all__ = ["Store"]

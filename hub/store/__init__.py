"""Redis state, one module per part (alarms, pages, branches, devices, troubles, push);
every key the engine and the app use is built here (docs/architecture.md lists them).

``from hub.store.alarms import Store`` is the whole store; the parts are its modules."""

from hub.store.alarms import Store

__all__ = ["Store"]

"""What every dashboard view shares: the site and the store, set once at app start.

Wiring: ``create_app`` (dashboard/__init__.py) stores one :class:`DashboardContext` in
``app.extensions["haven"]``; views call :func:`dashboard_context` for it, and
:func:`now_ms` for the time. Imports nothing of the dashboard, so no view module needs
another to reach it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import current_app

from hub.core.site import Site
from hub.store import Store


@dataclass(frozen=True)
class DashboardContext:
    """The site config, the store, and the demo's control URL (``None`` outside the demo)."""

    site: Site
    store: Store
    demo_control_url: str | None = None


def dashboard_context() -> DashboardContext:
    """This app's context (inside a request or app context)."""
    return current_app.extensions["haven"]


def now_ms() -> int:
    """Unix time now, in ms."""
    return time.time_ns() // 1_000_000

"""Demo controls: "Press" and "Hold 2 s" buttons that drive simulated devices.

Registered only when the app is made with a ``demo_control_url``: the control
endpoint of the demo's device simulator, which presses a simulated button on
``POST {demo_control_url}/press/<device_id>?hold=0|1``. Never in production.

Route::

    POST /demo/press/<device_id>   form or JSON ``hold=0|1`` (default 0) for a button;
                                   ``door=close|open`` for a safe-room door contact
        200 {"ok": true}            the simulator accepted the press
        400 {"ok": false, ...}      hold is not 0 or 1, or door is missing or not
                                    close or open for a door contact
        404 {"ok": false, ...}      the device is not in the site config
        502 {"ok": false, ...}      the simulator could not be reached or refused (its
                                    own words, not just the HTTP status)
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request

from flask import Blueprint, Response, jsonify, request

from .context import dashboard_context

log = logging.getLogger(__name__)

bp = Blueprint("demo", __name__, url_prefix="/demo")

#: How long to wait for the simulator's answer, in seconds (a hold takes 2 s).
CONTROL_TIMEOUT_S = 10.0


def _body() -> dict | None:
    data = request.get_json(silent=True) if request.is_json else request.form
    return data if hasattr(data, "get") else None  # not a JSON list, scalar or bad JSON


def _hold_flag() -> str | None:
    """``"0"`` or ``"1"`` from the JSON or form body; ``None`` if it is anything else."""
    data = _body()
    if data is None:
        return None
    raw = data.get("hold", "0")
    value = str(int(raw)) if isinstance(raw, bool) else str(raw)
    return value if value in ("0", "1") else None


def _door() -> str | None:
    """``"close"`` or ``"open"`` from the JSON or form body; ``None`` otherwise."""
    data = _body()
    value = data.get("door") if data is not None else None
    return value if value in ("close", "open") else None


@bp.post("/press/<device_id>")
def press(device_id: str) -> tuple[Response, int]:
    ctx = dashboard_context()
    if device_id not in ctx.site.devices:
        return jsonify(ok=False, error=f"unknown device {device_id!r}"), 404
    base = f"{ctx.demo_control_url}/press/{urllib.parse.quote(device_id, safe='')}"
    if ctx.site.devices[device_id].type == "safe_room":
        door = _door()
        if door is None:
            return jsonify(ok=False, error=f"{device_id} is a door contact: send door "
                                           "close or open"), 400
        url = f"{base}?door={door}"
    else:
        hold = _hold_flag()
        if hold is None:
            return jsonify(ok=False, error="hold must be 0 or 1"), 400
        url = f"{base}?hold={hold}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"),
                                    timeout=CONTROL_TIMEOUT_S) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read()).get("error") or f"HTTP {exc.code} {exc.reason}"
        except (ValueError, AttributeError, OSError):
            error = f"HTTP {exc.code} {exc.reason}"
        finally:
            exc.close()
    except urllib.error.URLError as exc:
        error = str(exc.reason)
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, bad answers
        error = str(exc) or type(exc).__name__
    else:
        return jsonify(ok=True), 200
    log.warning("demo press of %s failed: %s: %s", device_id, url, error)
    return jsonify(ok=False, error=f"device simulator at {ctx.demo_control_url}: {error}"), 502

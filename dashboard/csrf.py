"""CSRF protection: one secret token per session, required on every POST.

Every ``POST`` (and ``PUT``/``PATCH``/``DELETE``) except Twilio's webhooks under
``/twilio/`` (signature-checked instead) must carry the session's token, as the
form field ``csrf_token`` or the header ``X-CSRF-Token``; otherwise it is
refused with 400 and a message saying so. Another site can make a browser post
to the dashboard with its cookie, but cannot read the token to put in it.

In templates, ``{{ csrf_token() }}`` gives the token: forms carry
``<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">``, and
``base.html`` puts it in ``<meta name="csrf-token">`` for scripts, which send
it as ``X-CSRF-Token``.

The token lives in the signed session cookie; it is replaced at login (see
:mod:`dashboard.auth`), so a token seen before login is useless after it.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, abort, request, session

SESSION_KEY = "csrf"
FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXEMPT_PREFIXES = ("/twilio/", "/push/public/")  # push: its action token instead
MESSAGE = (f"CSRF token missing or wrong: a form must send the field {FORM_FIELD!r} and a "
           f"script the header {HEADER!r} with this session's token. Reload the page and try "
           "again (your session may have ended).")


def csrf_token() -> str:
    """This session's token, made on first use."""
    token = session.get(SESSION_KEY)
    if not token:
        token = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def new_token() -> str:
    """Replace the token (at login: a token from before the login must not work after it)."""
    session[SESSION_KEY] = secrets.token_urlsafe(32)
    return session[SESSION_KEY]


def check() -> None:
    """``before_request``: refuse an unsafe request without the session's token (400)."""
    if request.method not in UNSAFE_METHODS or request.path.startswith(EXEMPT_PREFIXES):
        return
    expected = session.get(SESSION_KEY)
    sent = request.headers.get(HEADER) or request.form.get(FORM_FIELD)
    if not expected or not sent or not hmac.compare_digest(
            str(sent).encode(), str(expected).encode()):
        abort(400, description=MESSAGE)


def init_app(app: Flask) -> None:
    app.before_request(check)
    app.jinja_env.globals["csrf_token"] = csrf_token

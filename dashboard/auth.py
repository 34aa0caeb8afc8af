"""Login and logout, and a session required for everything else.

Routes::

    GET  /login                   the form (fields username, password, csrf_token; ?next=/path)
    POST /login                   303 to ``next`` (a local path) or the board; 400 a field
                                  missing, 401 wrong name or password (one message for both),
                                  429 + Retry-After after too many failures (see ratelimit)
    GET  /login/token/<token>     a one-time login link (``haven demo`` prints one): 303 to
                                  the board, or 410 if used or expired
    POST /logout                  ends the session; 303 to /login

Every other request needs a session, except ``/login``, ``/static/``, plan links
(``/p/<token>``, capability URLs checked by :mod:`dashboard.plans`) and Twilio's
webhooks under ``/twilio/`` (signature-checked instead). Without one, a page
request is redirected to ``/login?next=<path>``; a script's request (``/api/``,
``/events``, ``/demo/``, JSON, or a POST sending ``X-CSRF-Token``) gets 401 JSON.

The session cookie (Flask's, signed with the app's secret key) holds only a
random session id and the CSRF token; the session itself is in Redis (see
:class:`dashboard.users.Users`). A login always starts a new session id and a
new CSRF token (no session fixation); logout deletes the session in Redis, so
the old cookie is worthless even if it was copied. ``g.user`` is the
:class:`~dashboard.users.User` (``.name``, ``.role``) during a request.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import redis
from flask import (Blueprint, Flask, Response, abort, current_app, flash, g, jsonify,
                   redirect, render_template, request, session, url_for)
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from . import csrf
from .ratelimit import LoginLimiter
from .users import User, Users

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

EXTENSION = "haven.auth"
PUBLIC_PREFIXES = ("/login", "/static/", "/twilio/", "/push/public/", "/p/")  # /p/: plan links
SCRIPT_PREFIXES = ("/api/", "/events", "/demo/")
WRONG = "Wrong username or password."


@dataclass(frozen=True)
class AuthContext:
    users: Users
    limiter: LoginLimiter


def auth_context() -> AuthContext:
    return current_app.extensions[EXTENSION]


def wants_json() -> bool:
    """Whether the caller is a script (answer JSON) rather than a person's page load."""
    return (request.path.startswith(SCRIPT_PREFIXES) or request.is_json
            or (request.method != "GET" and csrf.HEADER in request.headers)
            or request.accept_mimetypes.best == "application/json")


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else the board (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("board.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for("board.index")
    return target


def require_login() -> Response | None:
    """``before_request``: put the session's user in ``g.user`` or turn the request away."""
    g.user = None
    if request.path.startswith(PUBLIC_PREFIXES) or request.endpoint == "static":
        return None
    user = auth_context().users.session_user(session.get("sid", ""))
    if user is not None:
        g.user = user
        return None
    if wants_json():
        return jsonify(error="not logged in: log in at /login"), 401
    if request.method == "GET":
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    flash("Your session has ended, so that was not done. Log in and try again.", "error")
    return redirect(url_for("auth.login", next=request.referrer and urlsplit(
        request.referrer).path))


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Only admins may do this; operators get 403."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.user is None or not g.user.is_admin:
            abort(403, description="Only an admin can do this: ask an admin, or have "
                                   "'haven user' give you the admin role.")
        return view(*args, **kwargs)
    return wrapper


def _begin(user: User) -> None:
    """A fresh session for ``user``: new id, new CSRF token, nothing kept from before."""
    session.clear()
    session["sid"] = auth_context().users.start_session(user)
    csrf.new_token()


@bp.get("/login")
def login_form() -> Any:
    return render_template("login.html", next=request.args.get("next", ""), username="")


@bp.post("/login")
def login() -> Any:
    ctx = auth_context()
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    target = request.form.get("next") or request.args.get("next") or ""
    page = functools.partial(render_template, "login.html", next=target, username=username)
    missing = [f for f, v in (("username", username), ("password", password)) if not v]
    if missing:
        return page(error=f"{' and '.join(missing).capitalize()}: required."), 400
    address = request.remote_addr or "unknown"
    wait_s = ctx.limiter.retry_after(username, address)
    if wait_s:
        log.warning("login for %r from %s refused: too many failures", username[:64], address)
        minutes = max(1, (wait_s + 59) // 60)
        response = Response(page(error=f"Too many failed logins. Try again in {minutes} "
                                       f"minute{'s' if minutes > 1 else ''}."), 429)
        response.headers["Retry-After"] = str(wait_s)
        return response
    user = ctx.users.verify(username, password)
    if user is None:
        ctx.limiter.failed(username, address)
        log.warning("failed login for %r from %s", username[:64], address)
        return page(error=WRONG), 401
    ctx.limiter.succeeded(username)
    _begin(user)
    log.info("%s (%s) logged in from %s", user.name, user.role, address)
    return redirect(safe_next(target), 303)


@bp.get("/login/token/<token>")
def login_token(token: str) -> Any:
    user = auth_context().users.redeem_token(token)
    if user is None:
        return render_template("login.html", next="", username="",
                               error="This login link was already used or has expired. "
                                     "Log in with your password, or ask for a new link."), 410
    _begin(user)
    log.info("%s (%s) logged in with a one-time link from %s", user.name, user.role,
             request.remote_addr)
    return redirect(url_for("board.index"), 303)


@bp.post("/logout")
def logout() -> Any:
    sid = session.get("sid", "")
    auth_context().users.end_session(sid)
    session.clear()
    flash("You have logged out.", "info")
    return redirect(url_for("auth.login"), 303)


def _error_page(exc: HTTPException) -> Any:
    """Errors as JSON for scripts, as a page (with the reason) for people."""
    if exc.code is None or exc.code < 400:
        return exc
    if wants_json():
        response = jsonify(error=exc.description)
        response.status_code = exc.code
    else:
        response = Response(render_template("error.html", code=exc.code, name=exc.name,
                                            description=exc.description), exc.code)
    for key, value in exc.get_headers():
        if key in ("Retry-After", "Allow"):
            response.headers[key] = value
    return response


#: Shortest accepted HAVEN_DASHBOARD_SECRET, in characters.
MIN_SECRET_LEN = 32
SECRET_FILE = "dashboard-secret"


def load_secret_key(from_env: str | None, state_dir: str | os.PathLike[str]) -> str:
    """The key that signs session cookies: ``from_env`` (HAVEN_DASHBOARD_SECRET) if given,
    else the file ``<state_dir>/dashboard-secret``, made (mode 0600, 64 hex digits) on
    first use. Dashboard processes on several hosts need the same env value; on one host
    they share the file. Changing the key logs everyone out."""
    if from_env is not None and from_env.strip():
        if len(from_env.strip()) < MIN_SECRET_LEN:
            raise ValueError(f"HAVEN_DASHBOARD_SECRET: at least {MIN_SECRET_LEN} characters; "
                             "make one with: python3 -c 'import secrets; "
                             "print(secrets.token_hex(32))'")
        return from_env.strip()
    path = Path(state_dir) / SECRET_FILE
    try:
        Path(state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if len(key) < MIN_SECRET_LEN:
            raise ValueError(f"{path}: holds no key (under {MIN_SECRET_LEN} characters); "
                             "delete it and a new one is made") from None
        return key
    except OSError as exc:
        raise ValueError(f"{path}: cannot create the session key ({exc.strerror}); give a "
                         "writable --state-dir or set HAVEN_DASHBOARD_SECRET") from None
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    log.info("made a new session key in %s", path)
    return key


def _store_down(exc: redis.RedisError) -> Any:
    """Redis is unreachable: nothing can be read or done; say so (503), never a blank 500."""
    log.warning("alarm store unavailable: %s", exc)
    return _error_page(ServiceUnavailable(
        f"alarm store unavailable: {exc}. Nothing was read or changed; use the phone "
        "procedures and try again in a moment."))


def init_app(app: Flask, users: Users, limiter: LoginLimiter) -> None:
    """Require a session on ``app`` (register this before :func:`csrf.init_app`)."""
    app.extensions[EXTENSION] = AuthContext(users, limiter)
    app.before_request(require_login)
    app.register_blueprint(bp)
    app.register_error_handler(HTTPException, _error_page)
    app.register_error_handler(redis.RedisError, _store_down)

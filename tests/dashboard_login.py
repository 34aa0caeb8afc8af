"""Log a dashboard test client (or a raw HTTP connection) in, quickly.

Users get a cheap password hash here (tests are not attacked); logging in goes
through the real one-time link route, so the session is made as in production.
"""

from __future__ import annotations

import http.client

from dashboard.users import Users
from hub.store.alarms import Store

FAST_HASH = "pbkdf2:sha256:1000"
PASSWORD = "correct horse battery"


def add_user(store: Store, name: str = "dana", role: str = "operator") -> Users:
    users = Users(store, hash_method=FAST_HASH)
    if users.get(name) is None:
        users.add(name, PASSWORD, role)
    return users


def log_in(client, store: Store, name: str = "dana", role: str = "operator") -> str:
    """Log ``client`` (Flask's test client) in as ``name``; returns the CSRF token to send."""
    token = add_user(store, name, role).issue_token(name)
    response = client.get(f"/login/token/{token}")
    assert response.status_code == 303, response.text
    with client.session_transaction() as session:
        return session["csrf"]


def session_cookie(host: str, port: int, store: Store, name: str = "dana",
                   role: str = "operator") -> str:
    """A ``Cookie`` header value for a served dashboard, from a one-time link."""
    token = add_user(store, name, role).issue_token(name)
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", f"/login/token/{token}")
        response = conn.getresponse()
        response.read()
        assert response.status == 303, response.status
        cookie = response.getheader("Set-Cookie")
    finally:
        conn.close()
    return cookie.split(";", 1)[0]


def logged_in_client(app, store: Store, name: str = "dana", role: str = "operator"):
    """A test client of ``app``, logged in, sending the CSRF header with every request."""
    client = app.test_client()
    client.environ_base["HTTP_X_CSRF_TOKEN"] = log_in(client, store, name, role)
    return client

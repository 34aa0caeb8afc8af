"""Login, sessions, CSRF, rate limits, users and the ``haven user`` command."""

from __future__ import annotations

import io
import os
import re
import stat

import pytest

from dashboard import create_app
from dashboard.auth import WRONG, load_secret_key
from dashboard.csrf import MESSAGE as CSRF_MESSAGE
from dashboard.ratelimit import LoginLimit, LoginLimiter
from dashboard.users import UserError, Users
from hub.app import cli
from hub.app.usercli import PasswordError, read_password
from tests.dashboard_login import FAST_HASH, PASSWORD, add_user, log_in

TOKEN_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def users(fake_store):
    users = add_user(fake_store, "dana", "operator")
    add_user(fake_store, "ari", "admin")
    return users


def form_token(client, path="/login") -> str:
    return TOKEN_RE.search(client.get(path).text).group(1)


def login(client, username, password, token=None, **extra):
    token = form_token(client) if token is None else token
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": token, **extra})


# --- a session is needed everywhere but the login page, static files and Twilio ----

def test_pages_redirect_to_login_and_scripts_get_401(app):
    client = app.test_client()
    page = client.get("/alarms/a1?x=1")
    assert page.status_code == 302
    assert page.headers["Location"] == "/login?next=/alarms/a1?x%3D1"
    for path in ("/api/board", "/events"):
        response = client.get(path)
        assert response.status_code == 401 and "log in" in response.json["error"]
    assert client.get("/static/pages.css").status_code == 200
    assert client.get("/login").status_code == 200


def test_twilio_webhooks_need_no_session_and_no_csrf_token(sample_site, fake_store):
    client = create_app(sample_site, fake_store, twilio_auth_token="t" * 32).test_client()
    # refused by the signature check (403), not sent to the login page or refused for CSRF
    assert client.post("/twilio/sms", data={"From": "+15550100", "Body": "1"}).status_code == 403


# --- logging in ------------------------------------------------------------------

def test_login_lands_on_next_and_refuses_an_outside_next(app, users):
    client = app.test_client()
    response = login(client, "Dana", PASSWORD, next="/branches")
    assert response.status_code == 303 and response.headers["Location"] == "/branches"
    assert client.get("/branches").status_code == 200
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        other = app.test_client()
        assert login(other, "dana", PASSWORD, next=evil).headers["Location"] == "/"


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(app, users):
    client = app.test_client()
    wrong = login(client, "dana", "not the password")
    unknown = login(client, "nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert WRONG in wrong.text and WRONG in unknown.text
    assert "nobody" in unknown.text  # the name is kept in the form, nothing said about it
    assert client.get("/").status_code == 302


def test_missing_fields_are_named(app, users):
    response = login(app.test_client(), "", "")
    assert response.status_code == 400 and "Username and password: required." in response.text


def test_login_without_the_csrf_token_is_refused(app, users):
    client = app.test_client()
    client.get("/login")
    response = client.post("/login", data={"username": "dana", "password": PASSWORD})
    assert response.status_code == 400
    assert "csrf_token" in response.text and "Reload the page" in response.text


def test_login_starts_a_new_session_and_a_new_csrf_token(app, users, fake_store):
    client = app.test_client()
    before = form_token(client)
    with client.session_transaction() as session:
        session["sid"] = "planted-by-an-attacker"
    login(client, "dana", PASSWORD, token=before)
    with client.session_transaction() as session:
        sid, after = session["sid"], session["csrf"]
    assert sid != "planted-by-an-attacker" and after != before
    assert client.post("/alarms/a1/acknowledge", data={"csrf_token": before}).status_code == 400
    assert client.post("/alarms/a1/acknowledge", data={"csrf_token": after}).status_code == 404


def test_logout_ends_the_session_even_for_a_copied_cookie(app, users):
    client = app.test_client()
    token = log_in(client, app.extensions["haven"].store)
    stolen = client.get_cookie("haven_session").value
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert "You have logged out." in client.get("/login").text
    client.set_cookie("haven_session", stolen)
    assert client.get("/").status_code == 302


def test_a_password_change_or_removal_ends_open_sessions(app, users, fake_store):
    first, second = app.test_client(), app.test_client()
    log_in(first, fake_store, "dana")
    log_in(second, fake_store, "ari")
    users.passwd("dana", "another password")
    users.remove("ari")
    assert first.get("/").status_code == 302
    assert second.get("/api/board").status_code == 401


def test_cookie_is_httponly_samesite_lax_and_secure_behind_https(sample_site, fake_store):
    add_user(fake_store)
    for public_url, secure in ((None, False), ("https://haven.example.org", True)):
        client = create_app(sample_site, fake_store, public_url=public_url).test_client()
        header = client.get("/login").headers["Set-Cookie"]
        assert "HttpOnly" in header and "SameSite=Lax" in header
        assert ("Secure" in header) is secure


def test_a_one_time_link_works_once(app, users, fake_store):
    token = users.issue_token("dana")
    client = app.test_client()
    assert client.get(f"/login/token/{token}").status_code == 303
    assert client.get("/").status_code == 200
    again = app.test_client().get(f"/login/token/{token}")
    assert again.status_code == 410 and "already used or has expired" in again.text
    assert app.test_client().get("/login/token/made-up").status_code == 410


# --- CSRF ---------------------------------------------------------------------------

def test_every_post_needs_the_sessions_token(app, users, fake_store):
    client = app.test_client()
    token = log_in(client, fake_store)
    assert client.post("/logout").status_code == 400
    assert client.post("/logout", data={"csrf_token": "x" + token}).status_code == 400
    scripted = client.post("/logout", headers={"X-CSRF-Token": "wrong"})
    assert scripted.status_code == 400 and scripted.json["error"] == CSRF_MESSAGE
    assert client.post("/logout", headers={"X-CSRF-Token": token}).status_code == 303


# --- rate limits --------------------------------------------------------------------

def test_five_failures_block_the_user_even_with_the_right_password(app, users):
    for _ in range(5):
        assert login(app.test_client(), "dana", "wrong password").status_code == 401
    blocked = login(app.test_client(), "dana", PASSWORD)
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 900
    assert "Too many failed logins. Try again in 15 minutes." in blocked.text
    # ari, from another address, is not held up by dana's attacker
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert login(other, "ari", PASSWORD).status_code == 303


def test_five_failures_from_one_address_block_it_for_every_name(app, users):
    for name in ("a1", "b2", "c3", "d4", "e5"):
        login(app.test_client(), name, "guess")
    assert login(app.test_client(), "ari", PASSWORD).status_code == 429


def test_a_success_clears_the_users_count(fake_store):
    limiter = LoginLimiter(fake_store, LoginLimit(max_failures=2, window_s=60))
    limiter.failed("dana", "10.0.0.1")
    limiter.succeeded("dana")
    limiter.failed("dana", "10.0.0.2")
    assert limiter.retry_after("dana", "10.0.0.3") == 0
    limiter.failed("dana", "10.0.0.4")
    assert 0 < limiter.retry_after("dana", "10.0.0.5") <= 60


# --- users --------------------------------------------------------------------------

def test_users_validate_names_passwords_and_roles(fake_store):
    users = Users(fake_store, hash_method=FAST_HASH)
    for args, field in ((("Bad Name!", PASSWORD, "operator"), "username"),
                        (("dana", "short", "operator"), "password"),
                        (("dana", PASSWORD, "root"), "role")):
        with pytest.raises(UserError, match=f"^{field}"):
            users.add(*args)
    users.add("Dana", PASSWORD, "admin")
    with pytest.raises(UserError, match="already exists"):
        users.add("dana", PASSWORD, "operator")
    assert [(u.name, u.role) for u in users.list()] == [("dana", "admin")]
    assert users.verify("DANA", PASSWORD).is_admin
    assert users.verify("dana", PASSWORD + "x") is None
    stored = fake_store.r.hget("haven:user:dana", "password")
    assert PASSWORD not in stored and stored.startswith("pbkdf2:sha256")
    assert users.remove("dana") and not users.remove("dana") and users.list() == []


def test_secret_key_from_env_or_a_private_file(tmp_path):
    assert load_secret_key("k" * 40, tmp_path) == "k" * 40
    with pytest.raises(ValueError, match="HAVEN_DASHBOARD_SECRET: at least 32"):
        load_secret_key("short", tmp_path)
    made = load_secret_key("", tmp_path / "state")
    path = tmp_path / "state" / "dashboard-secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(made) == 64
    assert load_secret_key(None, tmp_path / "state") == made  # the next process reads it


# --- haven user -----------------------------------------------------------------------

def test_haven_user_commands_against_a_real_redis(redis_service, monkeypatch, capsys):
    def run(*argv, stdin=""):
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return cli.main(["user", "--redis", redis_service.url, *argv])

    assert run("add", "dana", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n") == 0
    assert run("add", "dana", "--password-stdin", stdin=PASSWORD + "\n") == 1
    assert "already exists" in capsys.readouterr().err
    assert run("add", "sam", "--password-stdin", stdin="short\n") == 1
    assert "password: at least 8 characters" in capsys.readouterr().err
    assert run("add", "sam") == 1  # no terminal to ask on
    assert "--password-stdin" in capsys.readouterr().err
    assert run("list") == 0 and capsys.readouterr().out.split() == ["dana", "admin"]
    assert run("passwd", "dana", "--password-stdin", stdin="a new password\n") == 0
    assert run("remove", "dana") == 0 and run("remove", "dana") == 1
    with pytest.raises(SystemExit):  # a password is never an argument
        run("add", "sam", "hunter2hunter2")


def test_read_password_asks_twice_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    answers = iter(["one password", "one password"])
    assert read_password(from_stdin=False, stdin=Tty(), prompt=lambda _: next(answers)) == \
        "one password"
    answers = iter(["one password", "another"])
    with pytest.raises(PasswordError, match="differ"):
        read_password(from_stdin=False, stdin=Tty(), prompt=lambda _: next(answers))

"""Dashboard users, their sessions and one-time login links, kept in Redis.

Keys, under the store's prefix (default ``haven``)::

    haven:users                set     user names
    haven:user:<name>          hash    name, role, password (werkzeug hash), gen, created_ms
    haven:session:<sid>        hash    user, gen, created_ms; expires SESSION_IDLE_S after
                                       the last request that used it
    haven:login-token:<sha256> string  user name; expires after the link's lifetime, and
                                       is deleted by the one request that uses it

Roles: ``operator`` (watches the board, acknowledges, resolves, cancels) and
``admin`` (also switches drills and lone-worker mode, and manages devices).

``gen`` counts password changes: a session remembers the ``gen`` it was made
with, so changing a password (``haven user passwd``) or removing the user ends
every session that user had open, on every dashboard process at once.

Only a hash of a login token is stored, so a Redis dump gives no usable link.

Wiring::

    users = Users(store)
    users.add("dana", getpass(), "operator")
    user = users.verify("dana", password)          # User, or None (no hint which part)
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from werkzeug.security import check_password_hash, generate_password_hash

from hub.store.alarms import Store

ROLES = ("operator", "admin")
#: A user name: lower-case letters, digits and ``. _ @ -``, up to 64 characters.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}\Z")
#: Shortest password accepted, in characters.
MIN_PASSWORD_LEN = 8
#: Longest password accepted, in characters (hashing a megabyte is a denial of service).
MAX_PASSWORD_LEN = 1024
#: A session unused for this long ends, in seconds (an open board refreshes it).
SESSION_IDLE_S = 12 * 3600
#: How long a one-time login link works, in seconds, unless told otherwise.
TOKEN_TTL_S = 15 * 60

#: Compared against when the user does not exist, so a wrong name costs as long as a
#: wrong password and the timing says nothing about which names exist.
_DUMMY_HASH = generate_password_hash("haven-no-such-user")


class UserError(ValueError):
    """A user command that cannot be done; the message names the field and the fix."""


@dataclass(frozen=True)
class User:
    """A dashboard user: ``name``, ``role`` (``operator`` or ``admin``), password ``gen``."""

    name: str
    role: str
    gen: int = 0

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def normalise_name(name: str) -> str:
    return name.strip().lower()


def check_name(name: str) -> str:
    """The normalised user name, or :class:`UserError` saying what a name may hold."""
    norm = normalise_name(name)
    if not NAME_RE.match(norm):
        raise UserError(f"username {name!r}: use 1-64 lower-case letters, digits and . _ @ -, "
                        "starting with a letter or digit")
    return norm


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LEN:
        raise UserError(f"password: at least {MIN_PASSWORD_LEN} characters")
    if len(password) > MAX_PASSWORD_LEN:
        raise UserError(f"password: at most {MAX_PASSWORD_LEN} characters")
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role {role!r}: must be one of {', '.join(ROLES)}")
    return role


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Users:
    """Users, sessions and login tokens in ``store``'s Redis.

    ``hash_method`` is werkzeug's (default ``scrypt``, about 0.1 s per check);
    tests may pass a cheaper one.
    """

    def __init__(self, store: Store, *, hash_method: str = "scrypt"):
        self.r = store.r
        self.prefix = store.prefix
        self.hash_method = hash_method

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # --- users -----------------------------------------------------------------------

    def add(self, name: str, password: str, role: str) -> User:
        name, role = check_name(name), check_role(role)
        hashed = generate_password_hash(check_password(password), method=self.hash_method)
        key = self._key("user", name)
        fields = {"name": name, "role": role, "password": hashed, "gen": "0",
                  "created_ms": str(_now_ms())}
        if not self.r.hsetnx(key, "name", name):
            raise UserError(f"username {name!r}: already exists; use 'haven user passwd' to "
                            "change the password, or 'haven user remove' first")
        pipe = self.r.pipeline()
        pipe.hset(key, mapping=fields)
        pipe.sadd(self._key("users"), name)
        pipe.execute()
        return User(name, role, 0)

    def get(self, name: str) -> User | None:
        raw = self.r.hgetall(self._key("user", normalise_name(name)))
        if not raw.get("role") or not raw.get("password"):
            return None
        return User(raw["name"], raw["role"], int(raw.get("gen") or 0))

    def list(self) -> list[User]:
        return [u for u in (self.get(n) for n in sorted(self.r.smembers(self._key("users"))))
                if u is not None]

    def remove(self, name: str) -> bool:
        """Remove a user; their open sessions end at their next request."""
        name = normalise_name(name)
        pipe = self.r.pipeline()
        pipe.delete(self._key("user", name))
        pipe.srem(self._key("users"), name)
        return bool(pipe.execute()[0])

    def passwd(self, name: str, password: str) -> User:
        """Set a new password; every open session of the user ends."""
        user = self.get(name)
        if user is None:
            raise UserError(f"username {name!r}: no such user; 'haven user list' shows them")
        hashed = generate_password_hash(check_password(password), method=self.hash_method)
        pipe = self.r.pipeline()
        pipe.hset(self._key("user", user.name), "password", hashed)
        pipe.hincrby(self._key("user", user.name), "gen", 1)
        gen = pipe.execute()[1]
        return User(user.name, user.role, int(gen))

    def verify(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else ``None``: the same answer, and about the
        same time, for an unknown name as for a wrong password."""
        raw = self.r.hgetall(self._key("user", normalise_name(name))) \
            if NAME_RE.match(normalise_name(name)) else {}
        stored = raw.get("password") or _DUMMY_HASH
        ok = check_password_hash(stored, password[:MAX_PASSWORD_LEN])
        if not ok or not raw.get("role"):
            return None
        return User(raw["name"], raw["role"], int(raw.get("gen") or 0))

    # --- one-time login links --------------------------------------------------------

    def issue_token(self, name: str, ttl_s: int = TOKEN_TTL_S) -> str:
        """A secret for ``/login/token/<secret>``: logs ``name`` in once within ``ttl_s``."""
        user = self.get(name)
        if user is None:
            raise UserError(f"username {name!r}: no such user")
        token = secrets.token_urlsafe(32)
        self.r.set(self._token_key(token), user.name, ex=int(ttl_s))
        return token

    def redeem_token(self, token: str) -> User | None:
        """The token's user, once; ``None`` if it was used, expired or never issued."""
        if not token or len(token) > 128:
            return None
        name = self.r.getdel(self._token_key(token))
        return self.get(name) if name else None

    def _token_key(self, token: str) -> str:
        return self._key("login-token", hashlib.sha256(token.encode()).hexdigest())

    # --- sessions --------------------------------------------------------------------

    def start_session(self, user: User, idle_s: int = SESSION_IDLE_S) -> str:
        """A new session id for ``user`` (never reused: a login always gets a fresh one)."""
        sid = secrets.token_urlsafe(32)
        key = self._key("session", sid)
        pipe = self.r.pipeline()
        pipe.hset(key, mapping={"user": user.name, "gen": str(user.gen),
                                "created_ms": str(_now_ms())})
        pipe.expire(key, idle_s)
        pipe.execute()
        return sid

    def session_user(self, sid: str, idle_s: int = SESSION_IDLE_S) -> User | None:
        """The user of a live session, refreshing its idle timer; ``None`` if it ended,
        the user was removed, or their password changed since."""
        if not sid or len(sid) > 128:
            return None
        key = self._key("session", sid)
        pipe = self.r.pipeline()
        pipe.hgetall(key)
        pipe.expire(key, idle_s)  # a no-op once the key is gone
        raw, _ = pipe.execute()
        user = self.get(raw["user"]) if raw.get("user") else None
        if user is None or str(user.gen) != raw.get("gen"):
            self.r.delete(key)
            return None
        return user

    def end_session(self, sid: str) -> None:
        if sid:
            self.r.delete(self._key("session", sid))

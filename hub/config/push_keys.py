"""Web Push keys: the site's VAPID key pair and the secret that signs "I'm responding".

``haven provision push`` (:func:`make_push_keys`) writes a directory (default
``/etc/haven/push``) that the hub and the dashboard both read (:func:`push_keys_from_env`,
``HAVEN_PUSH_KEYS``; unset: that default if it exists, else Web Push is off)::

    vapid-private.pem   the VAPID private key (P-256, PEM; 0640): the hub signs each push
                        request's VAPID JWT with it (RFC 8292, through py-vapid)
    vapid-public.txt    its public key, base64url of the uncompressed point: the browser's
                        ``applicationServerKey`` when it subscribes (the dashboard)
    action-secret       32 random bytes, hex (0640): signs each push's "I'm responding"
                        token (hub), checked by the dashboard (dashboard.push)
    subject             the VAPID ``sub`` claim: ``mailto:`` or ``https:`` contact of the
                        site's IT, which push services use to reach the sender

Keys are made by py-vapid on the ``cryptography`` library: nothing here does crypto.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from hub.errors import HubError

#: Where ``haven provision push`` writes the keys with the default ``--site /etc/haven``.
DEFAULT_DIR = "/etc/haven/push"
PRIVATE, PUBLIC, SECRET, SUBJECT = ("vapid-private.pem", "vapid-public.txt", "action-secret",
                                    "subject")
SUBJECT_RE = re.compile(r"^(mailto:[^@\s]+@[^@\s]+|https://\S+)\Z")


class PushKeyError(HubError, ValueError):
    """The push keys are missing or unreadable; the message names the file and the fix."""


@dataclass(frozen=True)
class PushKeys:
    """A site's Web Push keys, loaded (see the module docstring for each file)."""

    directory: Path
    private_pem: bytes
    public_key: str          # base64url, the browser's applicationServerKey
    action_secret: bytes
    subject: str

    def vapid(self):
        """A py-vapid signer for the private key (pywebpush takes it as is)."""
        from py_vapid import Vapid02
        return Vapid02.from_pem(self.private_pem)


def make_push_keys(directory: Path, subject: str, write) -> list[str]:
    """A new key set in ``directory`` through ``write(path, data, mode)`` (the provision
    transaction); returns what was written, for the operator. Refuses a bad ``subject``
    and a directory that already holds keys (every browser subscribed with the old public
    key would stop receiving pushes)."""
    from cryptography.hazmat.primitives import serialization
    from py_vapid import Vapid02
    from py_vapid.utils import b64urlencode

    if not SUBJECT_RE.match(subject):
        raise PushKeyError(f"--subject: {subject!r} must be mailto:someone@example.org or an "
                           "https:// URL where push services can reach the site's IT")
    if (directory / PRIVATE).exists():
        raise PushKeyError(f"{directory / PRIVATE} exists already: new keys would cut off every "
                           "subscribed browser (each must subscribe again). Remove the "
                           "directory first if that is what you want")
    vapid = Vapid02()
    vapid.generate_keys()
    private = vapid.private_key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
    public = b64urlencode(vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))
    write(directory / PRIVATE, private, 0o640)
    write(directory / PUBLIC, public + "\n", 0o644)
    write(directory / SECRET, secrets.token_hex(32) + "\n", 0o640)
    write(directory / SUBJECT, subject + "\n", 0o644)
    return [f"web push: VAPID keys in {directory} (public key {public[:16]}...), "
            f"contact {subject}",
            f"hub and dashboard read them from HAVEN_PUSH_KEYS={directory} "
            f"(the default when it is {DEFAULT_DIR})"]


def load_push_keys(directory: str | os.PathLike[str]) -> PushKeys:
    """The keys in ``directory``; :class:`PushKeyError` naming the file that is wrong."""
    root = Path(directory)

    def read(name: str) -> bytes:
        try:
            return (root / name).read_bytes()
        except OSError as exc:
            raise PushKeyError(f"{root / name}: cannot be read ({exc.strerror}); make the keys "
                               f"with 'haven provision push --subject mailto:IT-ADDRESS' or "
                               f"point HAVEN_PUSH_KEYS at their directory") from None

    private, public = read(PRIVATE), read(PUBLIC).decode().strip()
    secret_hex, subject = read(SECRET).decode().strip(), read(SUBJECT).decode().strip()
    if not re.fullmatch(r"[0-9a-f]{64}", secret_hex):
        raise PushKeyError(f"{root / SECRET}: must be 64 hex digits; make new keys with "
                           "'haven provision push'")
    if not SUBJECT_RE.match(subject):
        raise PushKeyError(f"{root / SUBJECT}: {subject!r} must be mailto:someone@example.org "
                           "or an https:// URL")
    keys = PushKeys(root, private, public, bytes.fromhex(secret_hex), subject)
    try:
        keys.vapid()
    except Exception as exc:  # py-vapid / cryptography say why in their own words
        raise PushKeyError(f"{root / PRIVATE}: not a VAPID private key ({exc}); make new keys "
                           "with 'haven provision push'") from None
    return keys


def push_keys_from_env(env: Mapping[str, str] | None = None) -> PushKeys | None:
    """The keys named by ``HAVEN_PUSH_KEYS``, else those in :data:`DEFAULT_DIR` if it exists,
    else ``None`` (Web Push off). A directory named but unreadable raises
    :class:`PushKeyError`."""
    env = os.environ if env is None else env
    named = env.get("HAVEN_PUSH_KEYS", "").strip()
    if named:
        return load_push_keys(named)
    if Path(DEFAULT_DIR, PRIVATE).exists():
        return load_push_keys(DEFAULT_DIR)
    return None

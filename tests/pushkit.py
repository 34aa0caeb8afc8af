"""Test parts for Web Push: a local push service, a browser's subscription keys, and two
decryptions of what arrives that share nothing with the sender (pywebpush):

- ``http_ece.decrypt`` with the subscription's private key and auth secret;
- :func:`rfc8291_decrypt`: RFC 8291 section 3.4's key derivation written out in the test
  on ``cryptography``'s ECDH, HKDF and AES-GCM, so a mistake shared by pywebpush and
  http_ece (same authors) would still be caught.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class BrowserKeys:
    """What a browser keeps for one subscription: its P-256 key pair and auth secret."""

    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)

    def subscription(self, endpoint: str) -> dict:
        """The browser's ``PushSubscription.toJSON()``."""
        return {"endpoint": endpoint, "keys": {"p256dh": b64url(self.public_raw),
                                               "auth": b64url(self.auth)}}

    def decrypt_http_ece(self, body: bytes) -> bytes:
        import http_ece
        return http_ece.decrypt(body, private_key=self.private, auth_secret=self.auth,
                                version="aes128gcm")


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def rfc8291_decrypt(keys: BrowserKeys, body: bytes) -> bytes:
    """Decrypt an aes128gcm Web Push message (RFC 8188 header, RFC 8291 keys), one record."""
    salt, rs, idlen = body[:16], int.from_bytes(body[16:20], "big"), body[20]
    sender_raw = body[21:21 + idlen]
    record = body[21 + idlen:]
    assert len(record) <= rs, "one record expected"
    sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_raw)
    shared = keys.private.exchange(ec.ECDH(), sender)
    ikm = _hkdf(keys.auth, shared, b"WebPush: info\x00" + keys.public_raw + sender_raw, 32)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    padded = AESGCM(cek).decrypt(nonce, record, None)
    text = padded.rstrip(b"\x00")
    assert text.endswith(b"\x02"), "the last record ends with the delimiter 0x02"
    return text[:-1]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived (monotonic s)


class PushService:
    """A push service on a free loopback port: records each POST and answers
    ``status_for[path]`` (default 201). ``endpoint(name)`` is a subscription's URL."""

    def __init__(self):
        self.received: list[Received] = []
        self.status_for: dict[str, int] = {}
        self._cond = threading.Condition()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with service._cond:
                    service.received.append(Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    service._cond.notify_all()
                status = service.status_for.get(self.path, 201)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        with self._cond:
            self.received.clear()
            self.status_for.clear()

    def endpoint(self, name: str) -> str:
        return f"{self.url}/push/{name}"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.received) >= count, timeout), \
                f"{len(self.received)} push(es) arrived, {count} expected"
            return list(self.received)

    def count(self) -> int:
        with self._cond:
            return len(self.received)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def decrypted(keys: BrowserKeys, received: Received) -> dict:
    """The push's JSON, after checking both decryptions agree."""
    by_ece, by_rfc = keys.decrypt_http_ece(received.body), rfc8291_decrypt(keys, received.body)
    assert by_ece == by_rfc
    return json.loads(by_rfc)

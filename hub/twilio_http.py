"""A lean HTTP transport for the official twilio SDK: keep-alive ``http.client``
connections, one per sender thread.

The SDK builds and parses every request (``client.messages.create`` ...); only the
transport under it is ours. Its default, ``requests``, spent about 0.8 of the 0.95 ms
of client CPU per page measured on the press -> page path (request preparation,
hooks, adapters, urllib3's pool), which is what made a step to 20 contacts take
~25 ms to leave. Here ``http.client`` only opens connections (TLS, proxy tunnels) and
:mod:`hub.http11` does each exchange: the request in one write, the response parsed
without the ``email`` package (http.client's exchange was itself a third of a worker's
CPU in a burst).

Wiring: ``Client(sid, token, http_client=PooledHttpClient(timeout_s=3))``. Each thread
keeps its own connection to the API host and reuses it; a connection the server has
closed while idle is noticed before it is reused (so a request is never written into
a dead socket and silently lost). Failures to reach the API raise
:class:`ApiUnreachable`, which the notifier reports as a retryable failure; a POST is
never resent here, since Twilio may have acted on it: retries belong to the caller,
under its notification claim.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import select
import socket
import ssl
import threading
from functools import partial
from urllib.parse import urlsplit

from .http11 import HttpError, Reader, encode_request, form_encode, read_reply

from twilio.http import HttpClient
from twilio.http.response import Response

log = logging.getLogger("twilio.http_client")

USER_AGENT_SUFFIX = " haven-pooled-http"


class ApiUnreachable(Exception):
    """The API could not be reached or did not answer in time (retryable)."""


def _tls_context() -> ssl.SSLContext:
    try:  # the CA bundle requests would have used
        import certifi
        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with the twilio SDK
        return ssl.create_default_context()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when an idle keep-alive connection was closed by the server (readable at EOF)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class PooledHttpClient(HttpClient):
    """``api_base`` (``scheme://host:port``) rebases every request (a local fake API in tests
    and benchmarks); ``proxy`` (``http://host:port``) tunnels HTTPS through a proxy.
    ``timeout_s`` bounds the connect and each read, in seconds."""

    def __init__(self, *, timeout_s: float, api_base: str | None = None,
                 proxy: str | None = None):
        super().__init__(logger=log, is_async=False, timeout=timeout_s)
        self._base = urlsplit(api_base) if api_base else None
        self._proxy = urlsplit(proxy) if proxy else None
        self._tls = _tls_context()
        self._local = threading.local()

    def hold_next(self, gate) -> None:
        """This thread's next request waits for ``gate`` (hub.gate) just before it is
        written, and is written by the thread that opens the gate if it is built by then;
        a request that fails before that point still waits for it, so no outcome comes
        before the gate's decision."""
        self._local.gate = gate

    def request(self, method, url, params=None, data=None, headers=None, auth=None,
                timeout=None, allow_redirects=False) -> Response:
        gate, self._local.gate = getattr(self._local, "gate", None), None
        try:
            request, scheme, netloc, path = self._encode(method, url, params, data, headers,
                                                         auth)
            conn = self._connection(scheme, netloc, timeout or self.timeout)
        except BaseException:
            if gate is not None:
                gate.passed()  # raises GateClosed instead, if the page is not ours to send
            raise
        try:
            if gate is None:
                conn.sock.sendall(request)
            else:  # written by the thread that opens the gate, if it is still closed
                gate.send(partial(conn.sock.sendall, request))
            reply = read_reply(Reader(conn.sock), method.upper())
        except (OSError, HttpError) as exc:
            self._drop(scheme, netloc)
            raise ApiUnreachable(f"{type(exc).__name__}: {exc or 'no answer'} "
                                 f"({method.upper()} {scheme}://{netloc}{path})") from exc
        if not reply.reusable:
            self._drop(scheme, netloc)
        return Response(reply.status, reply.body.decode("utf-8", "replace"), reply.headers)

    def connect(self, url: str) -> None:
        """Open this thread's connection to ``url``'s host now (a sender thread at hub
        start), so its first request does not pay the connect and TLS handshake. Raises
        ApiUnreachable."""
        self._connection(*self._host(urlsplit(url)), self.timeout)

    def _host(self, parts) -> tuple[str, str]:
        """(scheme, host[:port]) a URL's request goes to: ``api_base``'s, if set."""
        return ((self._base.scheme, self._base.netloc) if self._base
                else (parts.scheme, parts.netloc))

    def _encode(self, method, url, params, data, headers, auth
                ) -> tuple[bytes, str, str, str]:
        """The request's bytes, and where it goes: (bytes, scheme, host[:port], path)."""
        parts = urlsplit(url)
        scheme, netloc = self._host(parts)
        query = "&".join(q for q in (parts.query, form_encode(params or {})) if q)
        target = (parts.path or "/") + (f"?{query}" if query else "")
        sent = dict(headers or {})
        body = None
        if data:
            if sent.get("Content-Type", "").endswith("json"):
                body = json.dumps(data).encode()
            else:
                body = form_encode(data).encode()
                sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            sent["Authorization"] = f"Basic {token}"
        sent["User-Agent"] = sent.get("User-Agent", "twilio-python") + USER_AGENT_SUFFIX
        return (encode_request(method.upper(), target, netloc, sent, body), scheme, netloc,
                parts.path)

    # --- connections (one per thread and host) -----------------------------------

    def _connections(self) -> dict:
        found = getattr(self._local, "connections", None)
        if found is None:
            found = self._local.connections = {}
        return found

    def _connection(self, scheme: str, netloc: str, timeout_s: float
                    ) -> http.client.HTTPConnection:
        pool = self._connections()
        conn = pool.get((scheme, netloc))
        if conn is not None and conn.sock is not None and not _dropped(conn):
            conn.timeout = timeout_s
            conn.sock.settimeout(timeout_s)
            return conn
        if conn is not None:
            conn.close()
        if scheme == "https":
            if self._proxy is not None:
                conn = http.client.HTTPSConnection(self._proxy.hostname, self._proxy.port or 80,
                                                   timeout=timeout_s, context=self._tls)
                conn.set_tunnel(netloc)
            else:
                conn = http.client.HTTPSConnection(netloc, timeout=timeout_s, context=self._tls)
        elif scheme == "http":
            conn = http.client.HTTPConnection(netloc, timeout=timeout_s)
        else:
            raise ApiUnreachable(f"unsupported URL scheme {scheme!r} for the Twilio API")
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise ApiUnreachable(f"{type(exc).__name__}: {exc} (connecting to {netloc})") \
                from exc
        # Small writes must not wait for the server's delayed ACK (up to ~40 ms): the
        # request is one write, but a TLS record or a proxy's CONNECT may not be.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pool[(scheme, netloc)] = conn
        return conn

    def _drop(self, scheme: str, netloc: str) -> None:
        conn = self._connections().pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close this thread's connections."""
        for key in list(self._connections()):
            self._drop(*key)

"""The twilio SDK's HTTP transport: the standard library's ``http.client`` under the SDK's
public ``twilio.http.HttpClient`` interface, a keep-alive connection per sender thread.

The SDK builds every request (``client.messages.create`` ...) and parses every answer;
only the transport under it is chosen here. Its default, ``TwilioHttpClient`` (the
``requests`` library), and ``urllib3`` under the same interface cost 1.0-1.5 ms more
client CPU per page than ``http.client`` on the hub's machines: a step to 20 contacts
left 2x slower and a burst of alarms fell behind the peer system's figures
(docs/performance.md, measured in the same runs). ``http.client`` does the whole
exchange here (TLS, the request, the response); nothing is resent: Twilio may have acted
on a POST whose answer was lost, so retries belong to the caller, under its
page claim.

A connection the server closed while idle is noticed before it is reused (its socket
reads as ready with nothing due: end of stream), so a request is never written into a
dead socket. ``HTTPS_PROXY`` is honoured (a CONNECT tunnel). ``api_base``
(``scheme://host:port``) sends every request there instead, path and query kept, never
through a proxy: a local fake of the REST API in tests and benchmarks (the SDK's
``edge``/``region`` cannot point at one).

Wiring (hub.edges.notify): ``Client(sid, token, http_client=PooledHttpClient(timeout=3.0))``,
one client shared by the sender threads (connections are per thread). Failures to reach
the API raise :class:`ApiUnreachable`.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import select
import ssl
import threading
import urllib.request
from urllib.parse import urlencode, urlsplit

from twilio.http import HttpClient
from twilio.http.response import Response

log = logging.getLogger("twilio.http_client")


class ApiUnreachable(Exception):
    """The API could not be reached or did not answer: refused, reset, timed out."""


class PooledHttpClient(HttpClient):
    """The SDK's transport on ``http.client``; ``timeout`` in seconds (connect and read)."""

    def __init__(self, *, timeout: float, api_base: str | None = None):
        super().__init__(logger=log, is_async=False, timeout=timeout)
        self._base = urlsplit(api_base) if api_base else None
        proxy = None if api_base else urllib.request.getproxies().get("https")
        self._proxy = urlsplit(proxy) if proxy else None
        self._tls = ssl.create_default_context()
        self._local = threading.local()

    def request(self, method, uri, params=None, data=None, headers=None, auth=None,
                timeout=None, allow_redirects=False) -> Response:
        """One exchange, as ``HttpClient.request`` defines it: ``data`` form-encoded (or
        JSON when the SDK says so), ``auth`` as HTTP Basic. Redirects are not followed
        (the SDK asks for none)."""
        parts = urlsplit(uri)
        if self._base is not None:
            parts = parts._replace(scheme=self._base.scheme, netloc=self._base.netloc)
        query = "&".join(q for q in (parts.query, urlencode(params or {}, doseq=True)) if q)
        target = (parts.path or "/") + (f"?{query}" if query else "")
        headers = dict(headers or {})
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        body = None
        if data is not None:
            if headers.get("Content-Type", "").endswith("json"):
                body = json.dumps(data).encode()
            else:
                body = urlencode(data, doseq=True).encode()
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn = self._connection(parts.scheme, parts.netloc, timeout or self.timeout)
        try:
            conn.request(method.upper(), target, body=body, headers=headers)
            answer = conn.getresponse()
            text = answer.read().decode("utf-8")
        except (OSError, http.client.HTTPException) as exc:
            self._drop(parts.scheme, parts.netloc)
            raise ApiUnreachable(f"{type(exc).__name__}: {exc}") from exc
        if answer.will_close:
            self._drop(parts.scheme, parts.netloc)
        return Response(answer.status, text, dict(answer.getheaders()))

    def _connection(self, scheme: str, netloc: str, timeout: float
                    ) -> http.client.HTTPConnection:
        """This thread's connection to ``netloc``, a new one if it has none or the server
        closed it while idle."""
        conns = self._conns()
        conn = conns.get((scheme, netloc))
        if conn is not None and conn.sock is not None and not _closed(conn.sock):
            conn.timeout = timeout
            conn.sock.settimeout(timeout)
            return conn
        if conn is not None:
            conn.close()
        if scheme == "https" and self._proxy is not None:
            conn = http.client.HTTPSConnection(self._proxy.hostname, self._proxy.port or 443,
                                               timeout=timeout, context=self._tls)
            conn.set_tunnel(netloc)
        elif scheme == "https":
            conn = http.client.HTTPSConnection(netloc, timeout=timeout, context=self._tls)
        else:
            conn = http.client.HTTPConnection(netloc, timeout=timeout)
        conns[(scheme, netloc)] = conn
        return conn

    def _conns(self) -> dict:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        return conns

    def _drop(self, scheme: str, netloc: str) -> None:
        conn = self._conns().pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def connect(self, url: str) -> None:
        """Open this thread's connection to ``url``'s host now (hub start), not on the first
        page. Raises :class:`ApiUnreachable`."""
        parts = urlsplit(url)
        if self._base is not None:
            parts = parts._replace(scheme=self._base.scheme, netloc=self._base.netloc)
        conn = self._connection(parts.scheme, parts.netloc, self.timeout)
        try:
            conn.connect()
        except OSError as exc:
            self._drop(parts.scheme, parts.netloc)
            raise ApiUnreachable(f"{type(exc).__name__}: {exc}") from exc


def _closed(sock) -> bool:
    """An idle keep-alive socket that reads as ready was closed by the server (end of
    stream) or holds garbage: either way it must not carry the next request."""
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True

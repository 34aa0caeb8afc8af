"""The twilio SDK's HTTP transport: libcurl (through pycurl) under the SDK's public
``twilio.http.HttpClient`` interface, a keep-alive connection per sender thread.

The SDK builds every request (``client.messages.create`` ...) and parses every answer;
only the transport under it is chosen here. A page's HTTP exchange is most of the CPU a
hub worker spends on it, so the transport is the one that costs least:

| transport under the SDK (``messages.create``, keep-alive, loopback) | CPU per page |
|---|---|
| ``requests`` (the SDK's default ``TwilioHttpClient``) | ~930 µs (4.4x) |
| ``urllib3`` connection pool | ~420 µs (2.0x) |
| the standard library's ``http.client``, bare | ~215 µs (1.0x) |
| libcurl through ``pycurl`` (this module) | ~180 µs (0.84x) |

(``bench/transport_bench.py``, medians of 5 interleaved rounds. This module drove
``http.client`` until December 2026, with a check of each idle connection on top: ~70 µs
more per page than libcurl. docs/performance.md has what that did to a 5,000-alarm burst.)

libcurl does the whole exchange: TLS (the system's CA certificates, as
``ssl.create_default_context`` finds them), HTTP/1.1, the ``HTTPS_PROXY`` / ``NO_PROXY``
settings of the environment (a CONNECT tunnel), and a connection the server closed while
idle is noticed before it is reused. Redirects are not followed (the SDK asks for none).
This module resends nothing: Twilio may have acted on a POST whose answer was lost, so
retries belong to the caller, under its page claim (hub.engine.pager). libcurl itself
sends a request once more only when a kept-alive connection was closed under it before
a single byte of answer came back (the server had hung up on an idle connection).

``api_base`` (``scheme://host:port``) sends every request there instead, path and query
kept, never through a proxy: a local fake of the REST API in tests and benchmarks (the
SDK's ``edge``/``region`` cannot point at one).

Wiring (hub.edges.notify): ``Client(sid, token, http_client=PooledHttpClient(timeout=3.0))``,
one client shared by the sender threads (each thread has its own curl handle, so its own
connection). Failures to reach the API raise :class:`ApiUnreachable`; ``timeout`` bounds
a whole exchange, connect included.
"""

from __future__ import annotations

import io
import json
import logging
import os
import ssl
import threading
from urllib.parse import urlencode, urlsplit, urlunsplit

import pycurl
from twilio.http import HttpClient
from twilio.http.response import Response

log = logging.getLogger("twilio.http_client")


class ApiUnreachable(Exception):
    """The API could not be reached or did not answer: refused, reset, timed out."""


class PooledHttpClient(HttpClient):
    """The SDK's transport on libcurl; ``timeout`` in seconds (a whole exchange)."""

    def __init__(self, *, timeout: float, api_base: str | None = None):
        super().__init__(logger=log, is_async=False, timeout=timeout)
        self._base = urlsplit(api_base) if api_base else None
        paths = ssl.get_default_verify_paths()  # honours SSL_CERT_FILE / SSL_CERT_DIR
        self._cafile, self._capath = paths.cafile, paths.capath
        self._local = threading.local()

    def request(self, method, uri, params=None, data=None, headers=None, auth=None,
                timeout=None, allow_redirects=False) -> Response:
        """One exchange, as ``HttpClient.request`` defines it: ``data`` form-encoded (or
        JSON when the SDK says so), ``auth`` as HTTP Basic."""
        parts = urlsplit(uri)
        if self._base is not None:
            parts = parts._replace(scheme=self._base.scheme, netloc=self._base.netloc)
        query = "&".join(q for q in (parts.query, urlencode(params or {}, doseq=True)) if q)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))
        headers = dict(headers or {})
        body = None
        if data is not None:
            if headers.get("Content-Type", "").endswith("json"):
                body = json.dumps(data).encode()
            else:
                body = urlencode(data, doseq=True).encode()
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        curl = self._curl()
        curl.reset()  # options back to defaults; the handle keeps its live connection
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.setopt(pycurl.NOSIGNAL, 1)  # timeouts without signals: sender threads
        curl.setopt(pycurl.TIMEOUT_MS, int((timeout or self.timeout) * 1000))
        if self._cafile:
            curl.setopt(pycurl.CAINFO, self._cafile)
        if self._capath:
            curl.setopt(pycurl.CAPATH, self._capath)
        if self._base is not None:
            curl.setopt(pycurl.PROXY, "")  # never through a proxy
        method = method.upper()
        if method == "POST":
            curl.setopt(pycurl.POSTFIELDS, body or b"")
        elif method != "GET":
            curl.setopt(pycurl.CUSTOMREQUEST, method)
            if body is not None:
                curl.setopt(pycurl.POSTFIELDS, body)
        if auth:
            curl.setopt(pycurl.HTTPAUTH, pycurl.HTTPAUTH_BASIC)
            curl.setopt(pycurl.USERNAME, auth[0])
            curl.setopt(pycurl.PASSWORD, auth[1])
        # "Expect:" off: a body is sent at once, not after a 100 Continue round trip
        curl.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in headers.items()] + ["Expect:"])
        answer, head = io.BytesIO(), []
        curl.setopt(pycurl.WRITEDATA, answer)
        curl.setopt(pycurl.HEADERFUNCTION, head.append)
        try:
            curl.perform()
        except pycurl.error as exc:
            code, message = exc.args if len(exc.args) == 2 else (None, str(exc))
            errno = curl.getinfo(pycurl.OS_ERRNO)  # the system's word, e.g. "Connection refused"
            cause = f"{os.strerror(errno)} (curl error {code}: {message})" if errno else \
                f"curl error {code}: {message}"
            raise ApiUnreachable(cause) from exc
        return Response(curl.getinfo(pycurl.RESPONSE_CODE), answer.getvalue().decode("utf-8"),
                        _fields(head))

    def _curl(self) -> pycurl.Curl:
        """This thread's curl handle (its connection cache is its own)."""
        curl = getattr(self._local, "curl", None)
        if curl is None:
            curl = self._local.curl = pycurl.Curl()
        return curl


def _fields(head: list[bytes]) -> dict[str, str]:
    """The header fields of the last response in ``head`` (libcurl's header lines: a
    proxy's answer to CONNECT, or an interim 1xx, comes before the final one's)."""
    fields: dict[str, str] = {}
    for raw in head:
        text = raw.decode("iso-8859-1").rstrip("\r\n")
        if text.startswith("HTTP/"):
            fields = {}
        elif ":" in text:
            name, _, value = text.partition(":")
            fields[name.strip()] = value.strip()
    return fields

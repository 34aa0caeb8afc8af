"""The twilio SDK's HTTP transport: urllib3's connection pool under the SDK's public
``twilio.http.HttpClient`` interface.

The SDK builds every request (``client.messages.create`` ...) and parses every answer;
only the transport under it is chosen here. Its default, ``TwilioHttpClient``, goes
through ``requests`` (request preparation, hooks, adapters), about 2 ms of client CPU per
page on the hub's machines, which put a step to 20 contacts and a burst of alarms behind
the peer systems' figures (docs/performance.md). :class:`PooledHttpClient` hands each
request to ``urllib3`` (the library ``requests`` itself uses, installed with the SDK):
keep-alive connections shared by the sender threads, TLS, an ``HTTPS_PROXY`` when one is
set, and nothing resent here (retries=False): Twilio may have acted on a POST whose
answer was lost, so retries belong to the caller, under its notification claim.

``api_base`` (``scheme://host:port``) sends every request there instead, path and query
kept, never through a proxy: a local fake of the REST API in tests and benchmarks (the
SDK's ``edge``/``region`` cannot point at one).

Wiring (hub.notify): ``Client(sid, token, http_client=PooledHttpClient(timeout=3.0,
connections=32))``, one SDK client per sender thread over one shared pool. Transport
failures (refused, reset, timed out) raise ``urllib3.exceptions.HTTPError``.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from urllib.parse import urlencode, urlsplit, urlunsplit

import urllib3
from twilio.http import HttpClient
from twilio.http.response import Response

log = logging.getLogger("twilio.http_client")


class PooledHttpClient(HttpClient):
    """The SDK's transport on a ``urllib3`` pool of ``connections`` keep-alive connections
    per host; ``timeout`` in seconds (connect and read)."""

    def __init__(self, *, timeout: float, connections: int = 32, api_base: str | None = None):
        super().__init__(logger=log, is_async=False, timeout=timeout)
        self._base = urlsplit(api_base) if api_base else None
        proxy = None if api_base else urllib.request.getproxies().get("https")
        pool_args = {"maxsize": connections, "retries": False}
        self._pool = (urllib3.ProxyManager(proxy, **pool_args) if proxy
                      else urllib3.PoolManager(**pool_args))

    def request(self, method, uri, params=None, data=None, headers=None, auth=None,
                timeout=None, allow_redirects=False) -> Response:
        """One exchange, as ``HttpClient.request`` defines it: ``data`` form-encoded (or
        JSON when the SDK says so), ``auth`` as HTTP Basic."""
        parts = urlsplit(uri)
        if self._base is not None:
            parts = parts._replace(scheme=self._base.scheme, netloc=self._base.netloc)
        query = "&".join(q for q in (parts.query, urlencode(params or {}, doseq=True)) if q)
        url = urlunsplit(parts._replace(query=query))
        headers = dict(headers or {})
        if auth:
            headers.update(urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
        body = None
        if data is not None:
            if headers.get("Content-Type", "").endswith("json"):
                body = json.dumps(data)
            else:
                body = urlencode(data, doseq=True)
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        answer = self._pool.request(method.upper(), url, body=body, headers=headers,
                                    timeout=timeout or self.timeout, retries=False,
                                    redirect=allow_redirects)
        return Response(answer.status, answer.data.decode("utf-8"), answer.headers)

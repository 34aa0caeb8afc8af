"""The twilio SDK's transports compared: hub CPU per page request, same run, same fake API.

    .venv/bin/python bench/transport_bench.py [--requests 1000] [--rounds 5]

One POST to Messages.json after another on a kept-alive connection, through the real
SDK (``client.messages.create``), to the peer harness's fake Twilio API
(../shared/peers/fake_twilio.py, asyncio engine) in a process of its own, so only the
client's work is counted: user and system CPU of the sending thread
(``RUSAGE_THREAD``), per request; the transports take turns, ``--rounds`` times, and each
one's median round is reported (a shared host's speed drifts within a run). Transports,
each under ``twilio.http.HttpClient``:

- ``requests``: the SDK's default, ``TwilioHttpClient``;
- ``urllib3``: a connection pool, under the same interface;
- ``http.client``: the standard library (Haven's transport until December 2026);
- ``pycurl``: libcurl, Haven's transport now (hub.edges.twilio_transport).

Ratios are against ``http.client`` measured in the same run. On loopback the kernel's
share (sys) is the same for all; user CPU is where they differ.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import resource
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twilio.http import HttpClient  # noqa: E402
from twilio.http.http_client import TwilioHttpClient  # noqa: E402
from twilio.http.response import Response  # noqa: E402
from twilio.rest import Client  # noqa: E402

from hub.edges.twilio_transport import PooledHttpClient  # noqa: E402

FAKE = ROOT.parent / "shared" / "peers" / "fake_twilio.py"
SID, TOKEN = "AC" + "1" * 32, "bench-token"
BODY = ("EMERGENCY at Main Library, Circulation desk (main-circ-01) pressed 19:02. "
        "Ref 86bce38e-1. Reply 1 if you are responding")


class _Rebased(HttpClient):
    """Sends the SDK's requests to the fake (path and query kept), through ``send``."""

    def __init__(self, base: str, send):
        super().__init__(logger=None, is_async=False, timeout=3.0)
        self.base, self.send = urlsplit(base), send

    def request(self, method, uri, params=None, data=None, headers=None, auth=None,
                timeout=None, allow_redirects=False):
        parts = urlsplit(uri)._replace(scheme=self.base.scheme, netloc=self.base.netloc)
        return self.send(method, parts.geturl(), data, dict(headers or {}), auth)


def _basic(auth) -> str:
    return "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()


def http_client_transport(base: str) -> HttpClient:
    conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=3.0)

    def send(method, url, data, headers, auth):
        headers["Authorization"] = _basic(auth)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        parts = urlsplit(url)
        conn.request(method, parts.path, body=urlencode(data or {}), headers=headers)
        answer = conn.getresponse()
        return Response(answer.status, answer.read().decode(), dict(answer.getheaders()))
    return _Rebased(base, send)


def urllib3_transport(base: str) -> HttpClient:
    import urllib3
    pool = urllib3.PoolManager(maxsize=1)

    def send(method, url, data, headers, auth):
        headers["Authorization"] = _basic(auth)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        answer = pool.request(method, url, body=urlencode(data or {}), headers=headers)
        return Response(answer.status, answer.data.decode(), dict(answer.headers))
    return _Rebased(base, send)


def requests_transport(base: str) -> HttpClient:
    default = TwilioHttpClient(timeout=3.0)

    def send(method, url, data, headers, auth):
        return default.request(method, url, data=data, headers=headers, auth=auth)
    return _Rebased(base, send)


TRANSPORTS = {
    "requests": requests_transport,
    "urllib3": urllib3_transport,
    "http.client": http_client_transport,
    "pycurl": lambda base: PooledHttpClient(timeout=3.0, api_base=base),
}


def measure(transport: HttpClient, n: int) -> tuple[float, float]:
    """(user µs, system µs) of this thread per ``messages.create``, over ``n`` of them."""
    client = Client(SID, TOKEN, http_client=transport)
    before = resource.getrusage(resource.RUSAGE_THREAD)
    for _ in range(n):
        client.messages.create(to="+12065550101", from_="+12065550000", body=BODY,
                               status_callback="https://hub.example/twilio/status?key=k")
    after = resource.getrusage(resource.RUSAGE_THREAD)
    return ((after.ru_utime - before.ru_utime) / n * 1e6,
            (after.ru_stime - before.ru_stime) / n * 1e6)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not FAKE.exists():
        print(f"transport_bench: no fake API at {FAKE} (../shared/peers)", file=sys.stderr)
        return 2
    fake = subprocess.Popen([sys.executable, str(FAKE), "--port", "0", "--engine", "asyncio"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = fake.stdout.readline().split()
        if len(ready) < 2 or ready[0] != "READY":
            print("transport_bench: the fake API did not start", file=sys.stderr)
            return 1
        base = ready[1]
        transports = {name: make(base) for name, make in TRANSPORTS.items()}
        for transport in transports.values():
            measure(transport, 100)  # connected, and the SDK's modules imported
        rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in transports}
        for _ in range(args.rounds):
            for name, transport in transports.items():
                rounds[name].append(measure(transport, args.requests))
        results = {name: sorted(got, key=sum)[len(got) // 2] for name, got in rounds.items()}
    finally:
        fake.terminate()
        fake.wait()
    reference = sum(results["http.client"])
    print(f"SDK messages.create, {args.rounds} rounds of {args.requests} requests each, "
          "CPU of the sending thread (median round)")
    print(f"{'transport':<12} {'user µs':>8} {'sys µs':>7} {'total µs':>9} "
          f"{'vs http.client':>15}")
    for name, (user, system) in results.items():
        print(f"{name:<12} {user:8.0f} {system:7.0f} {user + system:9.0f} "
              f"{(user + system) / reference:14.2f}x")
    print(json.dumps({name: round(sum(r), 1) for name, r in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

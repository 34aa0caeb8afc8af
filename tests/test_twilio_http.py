"""hub/twilio_http.py: the SDK's keep-alive transport, against local HTTP servers."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from hub.twilio_http import ApiUnreachable, PooledHttpClient


class Api:
    """A loopback server recording requests and the connections they came on."""

    def __init__(self, *, close_after_each=False, delay_s=0.0):
        api = self
        self.requests: list[tuple[str, str, dict, dict]] = []
        self.ports: set[int] = set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                api.requests.append((self.command, self.path, dict(self.headers),
                                     parse_qs(body)))
                api.ports.add(self.client_address[1])
                time.sleep(delay_s)
                reply = b'{"sid": "SM1"}'
                self.send_response(201)
                self.send_header("Content-Length", str(len(reply)))
                if close_after_each:
                    self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(reply)
                except OSError:
                    pass  # the client gave up waiting (the timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    server = Api()
    yield server
    server.close()


def post(client, n=1, **data):
    return client.request("POST", "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
                          data={"To": "+1", "Body": f"hi {n}", **data},
                          headers={"User-Agent": "twilio-python/9"}, auth=("AC1", "tok"))


def test_requests_are_rebased_form_encoded_authenticated_and_reuse_one_connection(api):
    client = PooledHttpClient(timeout_s=2, api_base=api.url)
    for n in range(5):
        reply = post(client, n, StatusCallbackEvent=["initiated", "answered"])
        assert reply.status_code == 201 and reply.text == '{"sid": "SM1"}'
    assert len(api.requests) == 5 and len(api.ports) == 1
    method, path, headers, form = api.requests[0]
    assert (method, path) == ("POST", "/2010-04-01/Accounts/AC1/Messages.json")
    assert headers["Authorization"] == "Basic QUMxOnRvaw=="
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form["StatusCallbackEvent"] == ["initiated", "answered"]  # lists repeat the key


def test_a_connection_the_server_closed_is_replaced_not_written_into():
    api = Api(close_after_each=True)
    try:
        client = PooledHttpClient(timeout_s=2, api_base=api.url)
        for n in range(3):
            assert post(client, n).status_code == 201
        assert len(api.requests) == 3 and len(api.ports) == 3
    finally:
        api.close()


def test_an_idle_connection_dropped_by_the_server_is_noticed_before_reuse(api):
    client = PooledHttpClient(timeout_s=2, api_base=api.url)
    assert post(client).status_code == 201
    conn = next(iter(client._connections().values()))
    # The server side goes away while idle (keep-alive timeout, a proxy restart...).
    conn.sock.shutdown(socket.SHUT_RD)
    assert post(client, 2).status_code == 201
    assert len(api.requests) == 2


def test_refused_and_slow_apis_raise_api_unreachable_naming_the_host():
    from hub.localservices import free_port
    port = free_port()
    with pytest.raises(ApiUnreachable, match=f"127.0.0.1:{port}"):
        post(PooledHttpClient(timeout_s=1, api_base=f"http://127.0.0.1:{port}"))
    slow = Api(delay_s=1.5)
    try:
        started = time.monotonic()
        with pytest.raises(ApiUnreachable, match="timed out"):
            post(PooledHttpClient(timeout_s=0.3, api_base=slow.url))
        assert time.monotonic() - started < 1.4
    finally:
        slow.close()


def test_each_thread_has_its_own_connection(api):
    client = PooledHttpClient(timeout_s=2, api_base=api.url)
    threads = [threading.Thread(target=lambda: [post(client, n) for n in range(3)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(api.requests) == 12 and len(api.ports) == 4

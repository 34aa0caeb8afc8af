"""hub.http11: the request bytes, and responses framed every way HTTP/1.1 allows."""

import pytest

from hub.http11 import HttpError, Reader, encode_request, read_reply


class Wire:
    """A socket whose ``recv`` returns ``data`` in pieces of ``step`` bytes, then EOF."""

    def __init__(self, data: bytes, step: int = 7):
        self.pieces = [data[i:i + step] for i in range(0, len(data), step)]

    def recv(self, _size):
        return self.pieces.pop(0) if self.pieces else b""


def reply(data: bytes, method="POST", step=7):
    return read_reply(Reader(Wire(data, step)), method)


def test_a_request_is_one_buffer_with_host_length_and_the_callers_headers():
    raw = encode_request("POST", "/2010-04-01/Accounts/AC1/Messages.json", "api.twilio.com",
                         {"Authorization": "Basic x", "Content-Type": "a/b",
                          "Content-Length": "999"}, b"To=%2B1&Body=hi")
    head, body = raw.split(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /2010-04-01/Accounts/AC1/Messages.json HTTP/1.1"
    assert "Host: api.twilio.com" in lines and "Authorization: Basic x" in lines
    assert "Content-Length: 15" in lines and "Content-Length: 999" not in lines
    assert body == b"To=%2B1&Body=hi"
    assert b"Content-Length" not in encode_request("GET", "/", "h", {}, None)
    assert b"Content-Length: 0" in encode_request("POST", "/", "h", {}, None)


@pytest.mark.parametrize("name,value", [("X-A", "v\r\nX-Forged: 1"), ("X\nB", "v"),
                                        ("X:B", "v")])
def test_a_header_that_would_forge_another_is_refused(name, value):
    with pytest.raises(ValueError, match="line break"):
        encode_request("POST", "/", "h", {name: value}, b"")


@pytest.mark.parametrize("step", [1, 5, 4096])
def test_content_length_framing_keeps_the_connection(step):
    got = reply(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                b"Content-Length: 13\r\n\r\n{\"sid\":\"SM1\"}", step=step)
    assert (got.status, got.body, got.reusable) == (201, b'{"sid":"SM1"}', True)
    assert got.headers["Content-Type"] == "application/json"


def test_chunked_framing_with_extensions_and_trailers():
    got = reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"4;x=y\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nX-Trailer: t\r\n\r\n")
    assert (got.status, got.body, got.reusable) == (200, b'{"a":1}', True)


def test_a_body_framed_by_the_end_of_the_connection_is_read_to_the_end():
    got = reply(b"HTTP/1.0 500 Oops\r\n\r\ninternal error")
    assert (got.status, got.body, got.reusable) == (500, b"internal error", False)


def test_interim_responses_are_skipped_and_204_has_no_body():
    got = reply(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", "DELETE")
    assert (got.status, got.body, got.reusable) == (204, b"", True)


def test_connection_close_or_extra_bytes_make_the_connection_unusable():
    assert not reply(b"HTTP/1.1 429 Too Many\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                     ).reusable
    assert not reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK", step=4096).reusable


def test_repeated_headers_are_joined():
    got = reply(b"HTTP/1.1 200 OK\r\nVary: a\r\nvary: b\r\nContent-Length: 0\r\n\r\n")
    assert got.headers == {"vary": "a, b", "Content-Length": "0"}


@pytest.mark.parametrize("data,match", [
    (b"SMTP ready\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed the connection"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "not a number"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n", "CRLF"),
    (b"", "closed the connection"),
])
def test_a_broken_answer_is_an_http_error_naming_what_broke(data, match):
    with pytest.raises(HttpError, match=match):
        reply(data)


from hypothesis import given, strategies as st  # noqa: E402


@given(st.dictionaries(st.text(min_size=1), st.one_of(
    st.text(), st.integers(), st.lists(st.text(), max_size=3))))
def test_form_encoding_matches_urllib(data):
    from urllib.parse import urlencode

    from hub.http11 import form_encode
    assert form_encode(data) == urlencode(data, doseq=True)

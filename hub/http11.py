"""One HTTP/1.1 exchange on an open keep-alive socket: the request written with one send,
the response read and parsed here.

``http.client`` did the same exchange for hub.twilio_http, but it writes headers and body
separately and parses response headers with the ``email`` package: together about a
third of a hub worker's CPU in a burst of alarms. This is the subset the Twilio REST API
needs: any method, a form or JSON body with its Content-Length, and responses framed by
Content-Length, chunked transfer coding or the end of the connection (1xx interim
responses skipped). TLS and proxy tunnels stay with ``http.client``'s connection setup.

Pure but for :class:`Reader`, which reads from a socket (``recv``; its timeout applies).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The longest status or header line accepted, in bytes, and the most header lines.
MAX_LINE, MAX_HEADERS = 65536, 200


#: Each byte as ``application/x-www-form-urlencoded`` writes it (urllib's quote_plus):
#: unreserved characters as they are, space as ``+``, the rest as ``%XX``.
_FORM = {b: "+" if b == 0x20 else chr(b) if chr(b).isascii() and (chr(b).isalnum()
         or chr(b) in "_.-~") else f"%{b:02X}" for b in range(256)}


def form_quote(text: str) -> str:
    """``urllib.parse.quote_plus(text)``, in C (``str.translate``) rather than a Python
    loop over every byte: an SMS body is ~200 of them, for every page."""
    return text.encode("utf-8").decode("latin-1").translate(_FORM)


def form_encode(data: dict) -> str:
    """``urllib.parse.urlencode(data, doseq=True)`` for str-able keys and values: a list
    or tuple value repeats its key."""
    parts = []
    for key, value in data.items():
        name = form_quote(str(key))
        for item in value if isinstance(value, (list, tuple)) else (value,):
            parts.append(f"{name}={form_quote(str(item))}")
    return "&".join(parts)


class HttpError(Exception):
    """The server's answer broke HTTP/1.1 (or it hung up mid-answer)."""


def encode_request(method: str, target: str, host: str, headers: dict[str, str],
                   body: bytes | None) -> bytes:
    """The request's bytes: request line, ``Host``, ``headers``, ``Content-Length`` (when
    there is a body, or for POST/PUT/PATCH), blank line, body. A header name or value
    with a line break is refused (``ValueError``): it would forge headers."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity"]
    for name, value in headers.items():
        value = str(value)
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
            raise ValueError(f"HTTP header {name!r} contains a line break or colon")
        if name.lower() not in ("host", "content-length", "accept-encoding"):
            lines.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class Reader:
    """Buffered reads from ``sock`` (anything with ``recv``)."""

    def __init__(self, sock):
        self._sock, self.buffer = sock, bytearray()

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise HttpError("the server closed the connection mid-answer")
        self.buffer += chunk

    def line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > MAX_LINE:
                raise HttpError(f"a response line longer than {MAX_LINE} bytes")
            self._fill()
        line = bytes(self.buffer[:end])
        del self.buffer[:end + 2]
        return line

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def until_closed(self) -> bytes:
        while chunk := self._sock.recv(65536):
            self.buffer += chunk
        data, self.buffer = bytes(self.buffer), bytearray()
        return data


@dataclass(frozen=True)
class Reply:
    status: int
    #: As the server spelled them (a repeated header's values joined with ", ").
    headers: dict[str, str]
    body: bytes
    #: The connection may carry another request.
    reusable: bool


def read_reply(reader: Reader, method: str) -> Reply:
    """Read one response (after skipping 1xx interim ones) for a request of ``method``."""
    while True:
        version, status = _status_line(reader.line())
        headers, lower = _headers(reader)
        if not 100 <= status < 200:
            break
    closed = False
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in lower.get("transfer-encoding", "").lower():
        body = _chunked(reader)
    elif "content-length" in lower:
        length = lower["content-length"].strip()
        if not length.isdigit():
            raise HttpError(f"Content-Length {length!r} is not a number")
        body = reader.exactly(int(length))
    else:  # framed by the end of the connection
        body, closed = reader.until_closed(), True
    reusable = (version == "HTTP/1.1" and not closed and not reader.buffer
                and "close" not in lower.get("connection", "").lower())
    return Reply(status, headers, body, reusable)


def _status_line(line: bytes) -> tuple[str, int]:
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.x status line: {line[:80]!r}")
    return parts[0], int(parts[1])


def _headers(reader: Reader) -> tuple[dict[str, str], dict[str, str]]:
    headers: dict[str, str] = {}
    lower: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        line = reader.line()
        if not line:
            return headers, lower
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(f"malformed response header line {line[:80]!r}")
        value = value.strip()
        key = name.lower()
        if key in lower:
            value = f"{lower[key]}, {value}"
            headers = {k: v for k, v in headers.items() if k.lower() != key}
        headers[name], lower[key] = value, value
    raise HttpError(f"more than {MAX_HEADERS} response header lines")


def _chunked(reader: Reader) -> bytes:
    parts = []
    while True:
        size_text = reader.line().split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            while reader.line():  # trailers, up to the blank line
                pass
            return b"".join(parts)
        parts.append(reader.exactly(size))
        if reader.exactly(2) != b"\r\n":
            raise HttpError("a chunk not followed by CRLF")

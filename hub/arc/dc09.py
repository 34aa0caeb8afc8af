"""SIA DC-09 messages, pure: building frames and reading the receiver's answers.

A frame (DC-09, "ANSI/SIA DC-09-2013")::

    <LF><crc><0LLL>"<id>"<seq>R<rcvr>L<line>#<acct>[<data>]<[x-data]>_<timestamp><CR>

- ``crc``: CRC-16 (polynomial 0x8005, reflected as 0xA001, initial value 0) of everything
  from the first ``"`` to the end of the timestamp, 4 upper-case hex digits;
- ``0LLL``: the length of that same span, ``0`` then 3 upper-case hex digits;
- ``id``: ``SIA-DCS`` (SIA DC-03 data), ``ADM-CID`` (Contact ID data) or ``NULL`` (a link
  test, no data); ``*`` before it when the data is encrypted;
- ``seq``: 0001-9999, the same for every resend of one message;
- ``timestamp``: ``_HH:MM:SS,MM-DD-YYYY`` in UTC;
- encrypted: everything after ``[`` up to the timestamp, padded in front to whole AES blocks
  with random characters and a ``|``, is AES-CBC with a zero IV, sent as upper-case hex.

The receiver answers ``"ACK"`` (same sequence), ``"NAK"`` (rejected; carries the
receiver's clock so the transmitter can correct its timestamps), ``"DUH"`` (not understood)
or ``"RSP"``. An answer to an encrypted message is encrypted too; we read only its header.
Times are Unix seconds (float).
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

#: What an ARC receives for each Haven event: SIA DC-03 code and Contact ID event code.
#: ``panic``/``holdup``/``duress`` are the alarm events a site's kinds map to.
EVENTS: dict[str, tuple[str, str, str, str]] = {
    # event: (SIA alarm code, SIA restore code, Contact ID event, description)
    "panic": ("PA", "PR", "120", "panic alarm"),
    "holdup": ("HA", "HR", "122", "hold-up (silent) alarm"),
    "duress": ("HA", "HR", "121", "duress alarm"),
}
#: Cancel (the alarm was false): SIA OC "cancel report", Contact ID 406 "cancel".
CANCEL = ("OC", "406")
#: A test: SIA RX "manual test", Contact ID 601 "manual trigger test report".
TEST = ("RX", "601")

FORMATS = ("sia-dcs", "adm-cid")
_TEXT_SAFE = re.compile(r"[^ -~]|[\[\]|]")  # printable ASCII but the frame's own brackets
_PAD = string.ascii_letters + string.digits
MAX_TEXT = 200  # characters of location text (DC-09 "I" data allows 256)


class Phase(StrEnum):
    """Which message of an alarm's life: the alarm, its restore, its cancel, or a test."""

    ALARM = "alarm"
    RESTORE = "restore"
    CANCEL = "cancel"
    TEST = "test"


class Dc09Error(ValueError):
    """A value that cannot go into a DC-09 frame."""


@dataclass(frozen=True)
class Event:
    """One event for an account: ``event`` is a key of :data:`EVENTS`, ``zone`` 0-999
    (the room), ``text`` the location (extended data ``I``, alarm text)."""

    account: str
    phase: Phase
    event: str
    zone: int
    text: str = ""


@dataclass(frozen=True)
class Address:
    """Where a frame goes: the receiver and line numbers the ARC assigned (hex, 1-6
    digits), the account, and the AES key (16/24/32 bytes) or ``None``."""

    receiver: str
    line: str
    key: bytes | None = None


@dataclass(frozen=True)
class Answer:
    """A receiver's answer. ``kind``: ACK, NAK, DUH or RSP; ``clock``: the receiver's time
    from a NAK (Unix s) or ``None``."""

    kind: str
    sequence: str
    encrypted: bool
    clock: float | None = None


def crc16(data: bytes) -> int:
    """CRC-16/ARC of ``data`` (polynomial 0x8005 reflected, initial 0), as DC-09 asks."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def timestamp(now: float) -> str:
    """DC-09's ``_HH:MM:SS,MM-DD-YYYY`` (UTC) for Unix time ``now``."""
    return datetime.fromtimestamp(now, timezone.utc).strftime("_%H:%M:%S,%m-%d-%Y")


def data(event: Event, fmt: str) -> str:
    """The event's data block, without its brackets: SIA DC-03 ``#acct|Nri1/PA003`` or
    Contact ID ``#acct|1120 01 003`` (qualifier 1 new event, 3 restore)."""
    if not 0 <= event.zone <= 999:
        raise Dc09Error(f"zone {event.zone} is not 0-999")
    if event.phase is Phase.TEST:
        sia, cid, qualifier = TEST[0], TEST[1], "1"
    elif event.phase is Phase.CANCEL:
        sia, cid, qualifier = CANCEL[0], CANCEL[1], "1"
    else:
        alarm, restore, cid, _ = EVENTS[event.event]
        sia = alarm if event.phase is Phase.ALARM else restore
        qualifier = "1" if event.phase is Phase.ALARM else "3"
    if fmt == "sia-dcs":
        return f"#{event.account}|Nri1/{sia}{event.zone:03d}"
    if fmt == "adm-cid":
        return f"#{event.account}|{qualifier}{cid} 01 {event.zone:03d}"
    raise Dc09Error(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def clean_text(text: str) -> str:
    """Location text as extended data may carry it: printable ASCII without ``[]|``."""
    return _TEXT_SAFE.sub("?", text)[:MAX_TEXT]


def frame(kind: str, sequence: int, address: Address, account: str, body: str,
          now: float, *, xdata: str = "", pad: str | None = None) -> bytes:
    """One framed message: ``kind`` ``SIA-DCS``/``ADM-CID``/``NULL``, ``body`` the data
    block without brackets (empty for NULL), ``xdata`` extended data (``I...``) or empty,
    ``now`` the time to stamp (Unix s, the receiver's clock as corrected by its NAKs).
    ``pad``: the padding to use when encrypting (tests); random otherwise."""
    if not 1 <= sequence <= 9999:
        raise Dc09Error(f"sequence {sequence} is not 1-9999")
    rest = f"{body}]" + (f"[{xdata}]" if xdata else "") + timestamp(now)
    if address.key is not None:
        size = (-(len(rest) + 1)) % 16 or 16
        pad = pad if pad is not None else "".join(secrets.choice(_PAD) for _ in range(size))
        plain = f"{pad}|{rest}".encode("ascii")
        if len(plain) % 16:
            raise Dc09Error("padding must fill whole AES blocks")
        encryptor = Cipher(algorithms.AES(address.key), modes.CBC(bytes(16))).encryptor()
        rest = (encryptor.update(plain) + encryptor.finalize()).hex().upper()
    star = "*" if address.key is not None else ""
    text = (f'"{star}{kind}"{sequence:04d}R{address.receiver}L{address.line}'
            f"#{account}[{rest}")
    raw = text.encode("ascii")
    return b"\n" + f"{crc16(raw):04X}0{len(raw):03X}".encode("ascii") + raw + b"\r"


def event_frame(event: Event, fmt: str, sequence: int, address: Address, now: float,
                *, pad: str | None = None) -> bytes:
    """The frame for ``event`` in ``fmt`` (``sia-dcs`` or ``adm-cid``); the location text
    goes in extended data ``I`` (alarm text)."""
    kind = "SIA-DCS" if fmt == "sia-dcs" else "ADM-CID"
    text = clean_text(event.text)
    return frame(kind, sequence, address, event.account, data(event, fmt), now,
                 xdata=f"I{text}" if text else "", pad=pad)


def null_frame(sequence: int, address: Address, account: str, now: float,
               *, pad: str | None = None) -> bytes:
    """A link test (DC-09 ``NULL``): the receiver answers ACK and nothing else happens."""
    return frame("NULL", sequence, address, account, "", now, pad=pad)


_ANSWER = re.compile(r'^(?P<crc>[0-9A-Fa-f]{4})(?P<len>[0-9A-Fa-f]{4})'
                     r'(?P<body>"(?P<star>\*?)(?P<kind>ACK|NAK|DUH|RSP)"(?P<seq>\d{4}).*)$',
                     re.S)
_NAK_CLOCK = re.compile(r"_(\d{2}:\d{2}:\d{2},\d{2}-\d{2}-\d{4})$")


def read_answer(raw: bytes) -> Answer | None:
    """A receiver's answer from the bytes it sent (LF ... CR), or ``None`` when they are
    not a DC-09 answer or fail their CRC or length (then it counts as no answer)."""
    text = raw.decode("ascii", "replace").strip("\r\n\x00 ")
    match = _ANSWER.match(text)
    if match is None:
        return None
    body = match["body"].encode("ascii", "replace")
    if int(match["crc"], 16) != crc16(body) or int(match["len"], 16) != len(body):
        return None
    clock = None
    if match["kind"] == "NAK":
        stamp = _NAK_CLOCK.search(match["body"])
        if stamp:
            try:
                clock = datetime.strptime(stamp[1], "%H:%M:%S,%m-%d-%Y").replace(
                    tzinfo=timezone.utc).timestamp()
            except ValueError:
                clock = None
    return Answer(match["kind"], match["seq"], bool(match["star"]), clock)


def answer_frame(kind: str, sequence: str, receiver: str, line: str, account: str,
                 now: float | None = None) -> bytes:
    """A receiver's unencrypted answer, as DC-09 writes it (tests' stand-in receivers):
    a NAK carries the receiver's clock ``now``."""
    if kind == "NAK":
        text = f'"NAK"0000R{receiver}L{line}A0[]' + timestamp(now or 0.0)
    else:
        text = f'"{kind}"{sequence}R{receiver}L{line}#{account}[]'
    raw = text.encode("ascii")
    return b"\n" + f"{crc16(raw):04X}0{len(raw):03X}".encode("ascii") + raw + b"\r"

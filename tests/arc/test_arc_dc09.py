"""DC-09 messages (hub.arc.dc09): frames, event data and answers, in tables; each frame is
also read back by pysiaalarm's receiver code, an implementation no one here wrote."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pysiaalarm import SIAAccount
from pysiaalarm.event import SIAEvent
from pysiaalarm.utils import ResponseType

from hub.arc.dc09 import (Address, Dc09Error, Event, Phase, answer_frame, crc16, data,
                          event_frame, null_frame, read_answer, timestamp)

NOW = datetime(2026, 12, 7, 13, 5, 9, tzinfo=timezone.utc).timestamp()
PLAIN = Address("1", "2")
KEY = b"0123456789ABCDEF"


def test_crc16_is_crc16_arc():
    assert crc16(b"123456789") == 0xBB3D  # the catalogued check value of CRC-16/ARC
    assert crc16(b"") == 0


def test_timestamp_is_utc_in_dc09_order():
    assert timestamp(NOW) == "_13:05:09,12-07-2026"


@pytest.mark.parametrize("phase, event, fmt, expected", [
    (Phase.ALARM, "panic", "sia-dcs", "#1234|Nri1/PA003"),
    (Phase.RESTORE, "panic", "sia-dcs", "#1234|Nri1/PR003"),
    (Phase.ALARM, "holdup", "sia-dcs", "#1234|Nri1/HA003"),
    (Phase.RESTORE, "holdup", "sia-dcs", "#1234|Nri1/HR003"),
    (Phase.CANCEL, "panic", "sia-dcs", "#1234|Nri1/OC003"),
    (Phase.TEST, "panic", "sia-dcs", "#1234|Nri1/RX003"),
    (Phase.ALARM, "panic", "adm-cid", "#1234|1120 01 003"),
    (Phase.RESTORE, "panic", "adm-cid", "#1234|3120 01 003"),
    (Phase.ALARM, "duress", "adm-cid", "#1234|1121 01 003"),
    (Phase.ALARM, "holdup", "adm-cid", "#1234|1122 01 003"),
    (Phase.CANCEL, "holdup", "adm-cid", "#1234|1406 01 003"),
    (Phase.TEST, "holdup", "adm-cid", "#1234|1601 01 003"),
])
def test_event_data(phase, event, fmt, expected):
    assert data(Event("1234", phase, event, 3), fmt) == expected


@pytest.mark.parametrize("bad", [
    lambda: data(Event("1234", Phase.ALARM, "panic", 1000), "sia-dcs"),
    lambda: data(Event("1234", Phase.ALARM, "panic", 1), "contact-id"),
    lambda: null_frame(0, PLAIN, "1234", NOW),
    lambda: null_frame(10000, PLAIN, "1234", NOW),
])
def test_values_a_frame_cannot_carry_are_refused(bad):
    with pytest.raises(Dc09Error):
        bad()


def test_plain_frame_layout():
    raw = event_frame(Event("1234", Phase.ALARM, "panic", 3, "Main, Circ [desk]|x"),
                      "sia-dcs", 42, PLAIN, NOW)
    body = b'"SIA-DCS"0042R1L2#1234[#1234|Nri1/PA003][IMain, Circ ?desk??x]_13:05:09,12-07-2026'
    assert raw == b"\n" + b"%04X0%03X" % (crc16(body), len(body)) + body + b"\r"


def test_encrypted_frame_decrypts_to_padded_data():
    raw = event_frame(Event("1234", Phase.ALARM, "panic", 3), "sia-dcs", 7,
                      Address("1", "2", KEY), NOW)
    assert raw.startswith(b"\n") and b'"*SIA-DCS"0007R1L2#1234[' in raw
    cipher = bytes.fromhex(raw.split(b"[", 1)[1].rstrip(b"\r").decode())
    decryptor = Cipher(algorithms.AES(KEY), modes.CBC(bytes(16))).decryptor()
    plain = (decryptor.update(cipher) + decryptor.finalize()).decode()
    pad, rest = plain.split("|", 1)
    assert 1 <= len(pad) <= 16 and "[" not in pad and "]" not in pad
    assert rest == "#1234|Nri1/PA003]_13:05:09,12-07-2026"


@pytest.mark.parametrize("fmt, code, zone_field", [("sia-dcs", "PA", "message"),
                                                    ("adm-cid", "PA", "ri")])
@pytest.mark.parametrize("key", [None, KEY])
def test_pysiaalarm_reads_and_acks_our_frames(fmt, code, zone_field, key):
    now = datetime.now(timezone.utc).timestamp()  # pysiaalarm checks the time against its own
    raw = event_frame(Event("1234", Phase.ALARM, "panic", 7, "Main: Circulation"), fmt, 9,
                      Address("1", "2", key), now)
    account = SIAAccount("1234", key.decode() if key else None)
    event = SIAEvent.from_line(raw.decode().strip(), {"1234": account})
    assert event.valid_message and event.response is ResponseType.ACK
    assert (event.account, event.code, event.sequence) == ("1234", code, "0009")
    assert int(getattr(event, zone_field)) == 7
    assert event.x_data == "IMain: Circulation"
    answer = read_answer(event.create_response())
    assert (answer.kind, answer.sequence, answer.encrypted) == ("ACK", "0009", bool(key))


def test_pysiaalarm_naks_a_stale_clock_and_the_nak_carries_its_clock():
    now = datetime.now(timezone.utc).timestamp()
    raw = null_frame(3, PLAIN, "1234", now - 600)
    event = SIAEvent.from_line(raw.decode().strip(), {"1234": SIAAccount("1234")})
    answer = read_answer(event.create_response())
    assert answer.kind == "NAK" and abs(answer.clock - now) < 5


@pytest.mark.parametrize("raw, expected", [
    (answer_frame("ACK", "0012", "1", "2", "1234"), ("ACK", "0012", None)),
    (answer_frame("DUH", "0012", "1", "2", "1234"), ("DUH", "0012", None)),
    (answer_frame("NAK", "0000", "1", "2", "1234", NOW), ("NAK", "0000", NOW)),
    (b'\n0000' + answer_frame("ACK", "0012", "1", "2", "1234")[5:], None),  # CRC wrong
    (answer_frame("ACK", "0012", "1", "2", "1234").replace(b"0012", b"0013"), None),
    (b'"ACK"', None),  # unframed
    (b"", None),
    (b"\xff\xfe garbage\r", None),
])
def test_read_answer(raw, expected):
    answer = read_answer(raw)
    got = None if answer is None else (answer.kind, answer.sequence, answer.clock)
    assert got == expected

"""hub.mqttread: paho's small reads served from one socket read, never across a
reconnect, with paho's own errors and EOF passed through."""

import pytest

from hub.mqttread import CHUNK, BufferedRecv


class FakeClient:
    """What BufferedRecv uses of a paho client: ``_sock`` and ``_sock_recv``."""

    def __init__(self):
        self._sock, self.chunks, self.asked = object(), [], []

    def _sock_recv(self, bufsize):
        self.asked.append(bufsize)
        chunk = self.chunks.pop(0)
        if isinstance(chunk, Exception):
            raise chunk
        return chunk


def test_small_reads_come_from_one_socket_read():
    client = FakeClient()
    recv = BufferedRecv(client)
    client.chunks = [b"\x30\x05hello\x30\x02hi"]
    assert [recv.recv(1), recv.recv(1), recv.recv(5)] == [b"\x30", b"\x05", b"hello"]
    assert recv.pending()
    assert [recv.recv(1), recv.recv(1), recv.recv(9)] == [b"\x30", b"\x02", b"hi"]
    assert not recv.pending() and client.asked == [CHUNK]


def test_a_read_larger_than_the_buffer_left_gets_only_what_is_there():
    client = FakeClient()
    recv = BufferedRecv(client)
    client.chunks = [b"abcdef", b"ghij"]
    assert recv.recv(4) == b"abcd"
    assert recv.recv(10) == b"ef"  # a partial body: paho asks again for the rest
    assert recv.recv(10) == b"ghij"
    assert client.asked == [CHUNK, CHUNK]


def test_nothing_waiting_and_eof_are_paho_s_own_answers():
    client = FakeClient()
    recv = BufferedRecv(client)
    client.chunks = [BlockingIOError(), b""]
    with pytest.raises(BlockingIOError):
        recv.recv(1)
    assert recv.recv(1) == b""


def test_bytes_of_an_old_connection_are_dropped_on_reconnect():
    client = FakeClient()
    recv = BufferedRecv(client)
    client.chunks = [b"old-connection-bytes", b"\x20"]
    assert recv.recv(3) == b"old"
    client._sock = object()  # paho reconnected
    assert not recv.pending()
    assert recv.recv(1) == b"\x20"


PROPERTY_SETS = [
    {},
    {"MessageExpiryInterval": 30},
    {"PayloadFormatIndicator": 1, "ContentType": "application/json",
     "ResponseTopic": "haven/dev/d1/cmd", "CorrelationData": b"\x00\x01"},
    {"UserProperty": [("a", "1"), ("b", "2")], "TopicAlias": 3},
]


@pytest.mark.parametrize("props", PROPERTY_SETS)
def test_shared_table_properties_pack_and_unpack_as_paho_s_own(props):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from hub.mqttread import SharedTableProperties
    original, shared = Properties(PacketTypes.PUBLISH), SharedTableProperties(PacketTypes.PUBLISH)
    for target in (original, shared):
        for name, value in props.items():
            for item in value if name == "UserProperty" else [value]:
                setattr(target, name, item)
    packed = original.pack()
    assert shared.pack() == packed
    read_original, read_shared = Properties(PacketTypes.PUBLISH), \
        SharedTableProperties(PacketTypes.PUBLISH)
    assert read_shared.unpack(packed + b"rest")[1] == read_original.unpack(packed + b"rest")[1]
    assert read_shared.json() == read_original.json() and str(read_shared) == str(read_original)
    read_shared.clear()
    assert read_shared.isEmpty() and read_shared.pack() == b"\x00"
    assert read_shared.names == read_original.names and read_shared.names is shared.names
    with pytest.raises(Exception):  # paho's own checks still apply
        shared.ServerKeepAlive = 5  # a CONNACK property, not a PUBLISH one


def test_paho_s_publish_decoder_uses_the_shared_tables():
    from paho.mqtt import _packet

    from hub.mqttread import SharedTableProperties, share_property_tables
    assert share_property_tables() is True
    assert _packet.Properties is SharedTableProperties

"""The hub's MQTT edge reads a burst in batches (hub.edges.mqtt.HubMqtt ``batch_handler``), on a
real mosquitto: every message handled once, in order, and acknowledged only after."""

import threading
import time

import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from device.protocol import Topics
from hub.edges.mqtt import READ_BATCH, BrokerAddress, HubMqtt

WAIT_S = 10
COUNT = 300


class Recorder:
    """A batch handler: records batches; the first call blocks until released (so the rest
    of the burst queues up on the socket), and may fail with a store error."""

    def __init__(self, fail_first: bool = False):
        self.batches: list[list[bytes]] = []
        self.singles: list[bytes] = []
        self.order: list[bytes] = []  # everything handled, in the order it was handled
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.fail_first = fail_first
        self.done = threading.Event()

    def batch(self, messages):
        self.release.wait(WAIT_S)
        if self.fail_first and not self.batches:
            self.batches.append([])
            raise redis.ConnectionError("store down (test)")
        with self.lock:
            self.batches.append([payload for _, payload, _ in messages])
            self.order.extend(payload for _, payload, _ in messages)
        self._check()

    def single(self, topic, payload, retained=False):
        with self.lock:
            self.singles.append(payload)
            self.order.append(payload)
        self._check()

    def handled(self) -> list[bytes]:
        with self.lock:
            return list(self.order)

    def _check(self):
        if len(self.handled()) >= COUNT + 1:
            self.done.set()


def _edge(mosquitto, recorder, client_id="hub-batch-test"):
    edge = HubMqtt(BrokerAddress("127.0.0.1", mosquitto.port), recorder.single,
                   client_id=client_id, batch_handler=recorder.batch)
    thread = threading.Thread(target=edge.run, daemon=True)
    thread.start()
    assert edge.ready.wait(WAIT_S)
    return edge, thread


def _publish_burst(mosquitto, count=COUNT):
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    topic = Topics().alarm("burst-01")
    infos = [pub.publish(topic, b"%d" % i, qos=1) for i in range(count + 1)]
    for info in infos:
        info.wait_for_publish(WAIT_S)
    pub.loop_stop()
    pub.disconnect()


@pytest.mark.parametrize("fail_first", [False, True], ids=["stored", "store-down-first"])
def test_a_burst_is_handled_in_batches_once_each_in_order(mosquitto, fail_first):
    recorder = Recorder(fail_first=fail_first)
    edge, thread = _edge(mosquitto, recorder)
    try:
        _publish_burst(mosquitto)
        time.sleep(0.3)  # the burst waits on the socket behind the blocked first batch
        recorder.release.set()
        assert recorder.done.wait(WAIT_S), f"handled {len(recorder.handled())}"
        assert recorder.handled() == [b"%d" % i for i in range(COUNT + 1)]
        sizes = [len(b) for b in recorder.batches]
        assert max(sizes) > 1 and max(sizes) <= READ_BATCH, sizes
        if fail_first:  # held by the store-retry thread, one by one, in order
            assert recorder.singles, "the failed batch was not retried"
        time.sleep(0.5)  # the last batch's acknowledgements leave after its handler returns
    finally:
        edge.stop()
        thread.join(5)
    # Everything was acknowledged: the same session, reconnected, gets nothing again.
    again = Recorder()
    again.release.set()
    edge, thread = _edge(mosquitto, again)
    try:
        time.sleep(1.0)
        assert again.handled() == []
    finally:
        edge.stop()
        thread.join(5)

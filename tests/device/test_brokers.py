"""A device's choice among its brokers (device.brokers) and the config that lists them."""

from __future__ import annotations

import pytest

from device.brokers import BrokerChoice, Endpoint
from device.config import DeviceConfigError, parse_device_config

A, B, C = Endpoint("hub-a", 8883), Endpoint("hub-b", 8883), Endpoint("hub-c", 1883)


def test_moves_to_the_next_broker_after_failed_connects_in_a_row_and_wraps_round():
    choice = BrokerChoice([A, B, C], fail_after=2)
    assert choice.current == A and choice.at_home
    assert choice.failed() is None                # one failure: try A again
    choice.connected()                            # A came back: its count starts over
    assert choice.failed() is None
    assert choice.failed() == B and choice.current == B and not choice.at_home
    assert choice.failed() is None and choice.failed() == C
    assert choice.failed() is None and choice.failed() == A   # the last wraps round


def test_one_broker_is_tried_again_for_ever():
    choice = BrokerChoice([A], fail_after=1)
    assert [choice.failed() for _ in range(5)] == [None] * 5 and choice.current == A


def test_returns_home_only_after_it_answered_every_probe_for_the_whole_window():
    choice = BrokerChoice([A, B], fail_after=1, home_after_s=30)
    assert choice.home_probed(0, True) is None    # at home: nothing to do
    assert choice.failed() == B
    assert choice.home_probed(100, True) is None
    assert choice.home_probed(120, True) is None
    assert choice.home_probed(125, False) is None  # a miss starts the window over
    assert choice.home_probed(130, True) is None
    assert choice.home_probed(159, True) is None
    assert choice.home_probed(160, True) == A and choice.at_home
    # a fresh away period needs a fresh window
    assert choice.failed() == B
    assert choice.home_probed(161, True) is None


def test_an_unreachable_home_never_pulls_the_device_back():
    choice = BrokerChoice([A, B], fail_after=1, home_after_s=30)
    choice.failed()
    assert all(choice.home_probed(t, False) is None for t in range(0, 300, 5))
    assert choice.current == B


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at least one broker"):
        BrokerChoice([])
    with pytest.raises(ValueError, match="fail_after"):
        BrokerChoice([A], fail_after=0)


def _config(broker: dict):
    return parse_device_config({"device": {"id": "main-circ-01"}, "broker": broker},
                               "device.toml")


def test_config_lists_brokers_in_order_and_keeps_the_single_host():
    assert _config({"host": "hub", "port": 8883}).broker.endpoints == (Endpoint("hub", 8883),)
    broker = _config({"brokers": ["hub-a:8883", "hub-b"], "port": 1884}).broker
    assert broker.endpoints == (Endpoint("hub-a", 8883), Endpoint("hub-b", 1884))
    assert (broker.host, broker.port) == ("hub-a", 8883)


@pytest.mark.parametrize("broker, message", [
    ({"host": "hub", "brokers": ["hub-b"]}, "broker.host: give either host"),
    ({"brokers": []}, "broker.brokers: must be a non-empty list"),
    ({"brokers": "hub-a,hub-b"}, "broker.brokers: must be a non-empty list"),
    ({"brokers": ["hub-a:0"]}, "'hub-a:0' is not host or host:port"),
    ({"brokers": ["hub a"]}, "'hub a' is not host or host:port"),
    ({"brokers": ["hub-a:1883", "hub-a"]}, "'hub-a' is listed twice"),
    ({}, "broker.host: missing"),
])
def test_config_refuses_a_bad_broker_list_by_name(broker, message):
    with pytest.raises(DeviceConfigError, match=message):
        _config(broker)

"""hub.settings: the environment validated once, each mistake named."""

import pytest

from hub.errors import ConfigError
from hub.settings import API_CONNECTIONS, hub_settings


def test_a_worker_has_32_api_connections_unless_told_otherwise():
    assert hub_settings(env={}).api_connections == API_CONNECTIONS == 32
    assert hub_settings(env={"HAVEN_API_CONNECTIONS": "16"}).api_connections == 16


@pytest.mark.parametrize("raw", ["0", "-4", "16.5", "lots", "257"])
def test_a_bad_api_connection_count_is_refused_by_name(raw):
    with pytest.raises(ConfigError) as err:
        hub_settings(env={"HAVEN_API_CONNECTIONS": raw})
    assert "HAVEN_API_CONNECTIONS" in str(err.value) and "1 to 256" in str(err.value)

"""hub.config.settings: the environment validated once, each mistake named."""

import pytest

from hub.errors import ConfigError
from hub.config.settings import API_CONNECTIONS, hub_settings


def test_a_worker_has_32_api_connections_unless_told_otherwise():
    assert hub_settings(env={}).api_connections == API_CONNECTIONS == 32
    assert hub_settings(env={"HAVEN_API_CONNECTIONS": "16"}).api_connections == 16


@pytest.mark.parametrize("raw", ["0", "-4", "16.5", "lots", "257"])
def test_a_bad_api_connection_count_is_refused_by_name(raw):
    with pytest.raises(ConfigError) as err:
        hub_settings(env={"HAVEN_API_CONNECTIONS": raw})
    assert "HAVEN_API_CONNECTIONS" in str(err.value) and "1 to 256" in str(err.value)


def test_links_go_to_the_dashboard_url_else_the_public_one():
    """HAVEN_DASHBOARD_URL is where staff open the dashboard (the demo's loopback one);
    HAVEN_PUBLIC_URL stays the one Twilio calls back."""
    public = "https://haven.example.org"
    assert hub_settings(env={}).dashboard_url is None
    assert hub_settings(env={"HAVEN_PUBLIC_URL": public}).dashboard_url == public
    both = hub_settings(env={"HAVEN_PUBLIC_URL": public,
                             "HAVEN_DASHBOARD_URL": "http://127.0.0.1:8080/"})
    assert (both.public_url, both.dashboard_url) == (public, "http://127.0.0.1:8080")
    demo = hub_settings(env={"HAVEN_DASHBOARD_URL": "http://127.0.0.1:8080"})
    assert demo.public_url is None  # no callbacks to loopback, no "Reply 1" invitation


def test_a_bad_dashboard_url_is_refused_by_name():
    with pytest.raises(ConfigError) as err:
        hub_settings(env={"HAVEN_DASHBOARD_URL": "haven.local"})
    assert "HAVEN_DASHBOARD_URL" in str(err.value) and "https://haven.example.org" in \
        str(err.value)

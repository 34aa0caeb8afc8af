"""``haven provision redis-ha``: replica and Sentinel configs IT does not hand-write."""

from __future__ import annotations

import stat

from hub.app.cli import main
from hub.provision.files import SiteDir
from tests.deploy.test_provision_commands import init


def test_redis_ha_writes_replica_sentinel_and_env_files_with_the_site_password(tmp_path,
                                                                               capsys):
    root = tmp_path / "site"
    assert init(root) == 0
    site = SiteDir(root)
    password = next(line.split()[1] for line in site.redis_conf.read_text().splitlines()
                    if line.startswith("requirepass "))
    capsys.readouterr()
    assert main(["provision", "redis-ha", "--site", str(root), "--primary", "10.0.0.10",
                 "--replica", "10.0.0.11", "--replica", "10.0.0.12:6380",
                 "--sentinel", "10.0.0.10", "--sentinel", "10.0.0.11",
                 "--sentinel", "10.0.0.12:26380"]) == 0
    out = capsys.readouterr().out
    assert password not in out
    conf = site.redis_conf.parent
    replica = (conf / "replica.conf").read_text()
    assert "replicaof 10.0.0.10 6379" in replica and f"masterauth {password}" in replica
    sentinel = (conf / "sentinel.conf").read_text()
    assert "sentinel monitor haven 10.0.0.10 6379 2" in sentinel
    assert f"sentinel auth-pass haven {password}" in sentinel
    env = (conf / "sentinel.env").read_text()
    assert "HAVEN_REDIS_SENTINELS=10.0.0.10:26379,10.0.0.11:26379,10.0.0.12:26380" in env
    for name in ("replica.conf", "sentinel.conf", "sentinel.env"):
        assert stat.S_IMODE((conf / name).stat().st_mode) & 0o007 == 0, name


def test_redis_ha_refuses_an_even_number_of_sentinels_and_writes_nothing(tmp_path, capsys):
    root = tmp_path / "site"
    assert init(root) == 0
    assert main(["provision", "redis-ha", "--site", str(root), "--primary", "a",
                 "--replica", "b", "--sentinel", "a", "--sentinel", "b"]) == 2
    assert "odd number, at least 3" in capsys.readouterr().err
    assert not (SiteDir(root).redis_conf.parent / "sentinel.conf").exists()

"""Options and failures shared by the ``haven`` subcommands.

``--redis`` is accepted where people put it: ``haven --redis URL alarm list``,
``haven alarm --redis URL list`` and ``haven alarm list --redis URL`` are the same,
and each subcommand's ``--help`` shows it.
"""

from __future__ import annotations

import argparse

REDIS_HELP = "Redis URL (env HAVEN_REDIS_URL, default redis://127.0.0.1:6379/0)"


def add_redis_option(parser: argparse.ArgumentParser, text: str = REDIS_HELP) -> None:
    """``--redis URL`` on ``parser``. Left unset unless given (``SUPPRESS``), so a
    subcommand's copy never blanks a URL given before the subcommand; the top-level
    parser's default (``None``: the environment's or the built-in URL) fills the gap."""
    parser.add_argument("--redis", metavar="URL", default=argparse.SUPPRESS, help=text)


def unreachable(exc: BaseException) -> str | None:
    """One line naming the dependency ``exc`` says is unreachable and how to fix it, or
    ``None`` if ``exc`` is not about reaching one."""
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeout
    except ImportError:  # a Pi with only the device extra never talks to Redis
        return None
    if isinstance(exc, (RedisConnectionError, RedisTimeout)):
        return (f"cannot reach Redis ({exc}): start it (sudo systemctl start redis-server), "
                "or give its URL with --redis URL or HAVEN_REDIS_URL")
    return None

"""``haven user``: dashboard users, managed from the shell of the hub host.

    haven user add NAME [--role operator|admin]    asks for the password twice
    haven user passwd NAME                         a new password; ends their sessions
    haven user remove NAME                         ends their sessions too
    haven user list

A password is never an argument (it would sit in the shell history and in
``ps``): it is asked for without echo, or read as the first line of standard
input with ``--password-stdin`` (for scripts: ``printf '%s\\n' "$PW" | haven user
add dana --password-stdin``). Users live in the Redis the dashboard uses
(``--redis`` or ``HAVEN_REDIS_URL``).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from hub.app.cliopts import add_redis_option

EXIT_USAGE = 2


class PasswordError(Exception):
    """No usable password was given; the message says how to give one."""


def read_password(*, from_stdin: bool, stdin: TextIO | None = None,
                  prompt=getpass.getpass) -> str:
    """The new password: the first line of ``stdin``, or asked twice on the terminal."""
    if from_stdin:
        line = (stdin or sys.stdin).readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise PasswordError("--password-stdin: standard input gave no password; "
                                "write it as the first line")
        return password
    if not (stdin or sys.stdin).isatty():
        raise PasswordError("no terminal to ask for the password on; pipe it in with "
                            "--password-stdin")
    first = prompt("New password: ")
    if prompt("Again: ") != first:
        raise PasswordError("the two passwords differ; nothing was changed")
    return first


def cmd_user(args: argparse.Namespace) -> int:
    import redis

    from dashboard.users import UserError, Users

    from hub.config.settings import hub_settings
    from hub.store.alarms import Store
    store = Store.from_url(hub_settings(redis_url=args.redis).redis)
    users = Users(store)
    try:
        if args.user_command == "list":
            listed = users.list()
            for user in listed:
                print(f"{user.name:<24} {user.role}")
            if not listed:
                print("no users yet: add one with 'haven user add NAME --role admin'")
            return 0
        if args.user_command == "remove":
            if not users.remove(args.name):
                print(f"haven user remove: no user {args.name!r}; 'haven user list' "
                      "shows them", file=sys.stderr)
                return 1
            print(f"removed {args.name}; their open sessions have ended")
            return 0
        password = read_password(from_stdin=args.password_stdin)
        if args.user_command == "add":
            user = users.add(args.name, password, args.role)
            print(f"added {user.name} ({user.role})")
        else:
            user = users.passwd(args.name, password)
            print(f"new password for {user.name}; their open sessions have ended")
        return 0
    except (UserError, PasswordError) as exc:
        print(f"haven user {args.user_command}: {exc}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:
        print(f"haven user {args.user_command}: cannot reach Redis ({exc}); give the "
              "dashboard's Redis with --redis or HAVEN_REDIS_URL", file=sys.stderr)
        return 1
    finally:
        store.r.close()


def add_parser(sub) -> None:
    """Register ``haven user`` on the CLI's subparsers."""
    user = sub.add_parser("user", help="dashboard users: add, remove, passwd, list")
    add_redis_option(user)
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="a new dashboard user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--role", choices=["operator", "admin"], default="operator",
                     help="admins also switch drills and lone-worker mode (default operator)")
    passwd = user_sub.add_parser("passwd", help="set a new password (ends their sessions)")
    passwd.add_argument("name")
    for parser in (add, passwd):
        parser.add_argument("--password-stdin", action="store_true",
                            help="read the password from the first line of standard input")
    remove = user_sub.add_parser("remove", help="remove a user (ends their sessions)")
    remove.add_argument("name")
    listing = user_sub.add_parser("list", help="every user and their role")
    for parser in (add, passwd, remove, listing):
        add_redis_option(parser)
    user.set_defaults(func=cmd_user)

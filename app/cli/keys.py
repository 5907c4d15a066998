"""`attrib keys`: create (with a role), list, revoke, set-role. Every change is audited with the
actor `cli`."""

from __future__ import annotations

import argparse

from app.settings import Settings

ROLES = ("admin", "reviewer", "ingest")  # index.auth.ROLES, without importing the database at start-up


def add_keys_parser(commands) -> None:
    keys = commands.add_parser("keys", help="manage API keys and their roles (admin, reviewer, ingest)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("name", nargs="?", help="what the key is for (or --name)")
    create.add_argument("--name", dest="name_option", default=None, help=argparse.SUPPRESS)
    create.add_argument("--role", choices=ROLES, default="admin",
                        help="admin (everything), reviewer (cases and decisions) or ingest (source writes); "
                        "default admin")
    key_commands.add_parser("list", help="list keys with their roles (never the keys themselves)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id", type=int)
    set_role = key_commands.add_parser("set-role", help="change a key's role")
    set_role.add_argument("key_id", type=int)
    set_role.add_argument("role", choices=ROLES)
    keys.set_defaults(handler=cmd_keys)


def cmd_keys(args, _rest) -> int:
    from app.services import open_database
    from index.auth import create_key, list_keys, revoke_key, set_role

    engine, sessions = open_database(Settings())
    try:
        if args.keys_command == "create":
            row, key = create_key(sessions, args.name or args.name_option or "default", args.role)
            print(f"created key {row.id} ({row.name}, role {row.role}); store it now, it is not shown again:\n{key}")
        elif args.keys_command == "list":
            for row in list_keys(sessions):
                state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
                print(f"{row.id:>4}  {row.prefix}…  {row.name:<24} role {row.role or 'none':<8} "
                      f"created {row.created_at:%Y-%m-%d %H:%M}  {state}")
        elif args.keys_command == "set-role":
            row = set_role(sessions, args.key_id, args.role)
            print(f"key {row.id} ({row.name}) now has the role {row.role}")
        else:
            row = revoke_key(sessions, args.key_id)
            print(f"revoked key {row.id} ({row.name})")
    finally:
        engine.dispose()
    return 0

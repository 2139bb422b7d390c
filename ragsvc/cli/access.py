"""`ragsvc keys` (create, list, revoke API keys) and `ragsvc audit` (the audit log)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import msgspec

from ragsvc.cli.common import (
    EXIT_OK,
    AuditedCommand,
    CommandError,
    print_listing,
    table,
)
from ragsvc.security.audit import AuditLog
from ragsvc.security.keys import SCOPES, KeyStore
from ragsvc.settings import Settings


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    keys = KeyStore.open(settings.data_path)
    try:
        if args.keys_command == "create":
            _create_key(settings, keys, args)
        elif args.keys_command == "list":
            _list_keys(keys, args)
        else:
            with AuditedCommand(settings, "key.revoke", f"key {args.key_id}"):
                key = keys.revoke(args.key_id)
            print(f"revoked key {key.id} ({key.name})")
    finally:
        keys.close()
    return EXIT_OK


def _create_key(settings: Settings, keys: KeyStore, args: argparse.Namespace) -> None:
    collections = ", ".join(args.collections or []) or "every collection"
    with AuditedCommand(settings, "key.create", f"a {args.scope} key") as audit:
        try:
            secret = keys.create(
                args.name,
                args.scope,
                args.collections,
                rate_limit=args.rate,
                upload_quota=args.upload_quota,
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        key_id = secret.split("_")[1]
        audit.target = f"key {key_id} ({args.scope}, {collections})"
    print(f"created {args.scope} key {key_id} for {args.name} ({collections}); shown once:")
    print(secret)


def _list_keys(keys: KeyStore, args: argparse.Namespace) -> None:
    listed = keys.list()
    if args.json:
        for key in listed:
            print(msgspec.json.encode(key).decode())
    elif not listed:
        print("no keys: the server serves loopback only, to anyone on this machine")
    else:
        rows = [
            [
                key.id,
                key.name,
                key.scope,
                ", ".join(key.collections) or "(all)",
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(key.created_at)),
                "revoked" if key.revoked_at is not None else "active",
            ]
            for key in listed
        ]
        print(table(["id", "name", "scope", "collections", "created", "state"], rows))


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    if args.n < 1:
        raise CommandError("-n must be at least 1")
    audit = AuditLog.open(settings.data_path)
    try:
        entries = audit.tail(args.n)
    finally:
        audit.close()
    if print_listing(entries, args.json, "nothing audited yet"):
        return EXIT_OK
    rows = [
        [e.at[:19], e.actor, e.action, e.target[:60], e.client, e.outcome[:60]] for e in entries
    ]
    print(table(["at", "actor", "action", "target", "client", "outcome"], rows))
    return EXIT_OK


def add_parsers(commands: Any) -> None:
    """This module's commands, on the `ragsvc` parser's subparsers."""
    keys = commands.add_parser(
        "keys",
        help="API keys: create, list, revoke",
        description="Once a key exists, every route but /health needs one (Authorization: "
        "Bearer KEY or X-API-Key: KEY). Without keys the server serves loopback only.",
    )
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    create = key_commands.add_parser("create", help="a new key, shown once")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--scope", choices=SCOPES, required=True, help="read < write < admin")
    create.add_argument(
        "--collection",
        action="append",
        dest="collections",
        metavar="C",
        help="limit the key to this collection (repeat for several; default: all)",
    )
    create.add_argument(
        "--rate", type=float, help="requests per second (default: setting key_rate_limit; 0: none)"
    )
    create.add_argument(
        "--upload-quota",
        type=int,
        metavar="BYTES",
        help="bytes uploaded per UTC day (default: setting key_upload_bytes_per_day; 0: none)",
    )
    key_list = key_commands.add_parser("list", help="keys, without their secrets")
    key_list.add_argument("--json", action="store_true", help="one JSON object per line")
    revoke = key_commands.add_parser("revoke", help="revoke a key (from its next request)")
    revoke.add_argument("key_id", metavar="KEY_ID")

    audit = commands.add_parser("audit", help="the audit log of writes and key changes")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="WHAT")
    audit_tail = audit_commands.add_parser("tail", help="the latest entries, oldest first")
    audit_tail.add_argument("-n", type=int, default=20, help="how many (default 20)")
    audit_tail.add_argument("--json", action="store_true", help="one JSON object per line")
    keys.set_defaults(handler=cmd_keys)
    audit.set_defaults(handler=cmd_audit)

"""The `ragsvc` entry point: the parser, assembled from each command module's own subparsers,
and the mapping of every refusal to exit status 2."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ingest.embed import show_export_progress
from ragsvc.cli import access, agents, documents, evaluation, exports, index, keeping, serve
from ragsvc.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    REFUSALS,
)
from ragsvc.settings import Settings, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragsvc",
        description="Retrieval-augmented generation over your documents, on an embedded "
        "SQLite + FAISS index.",
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (or $RAGSVC_CONFIG)")
    parser.add_argument("--data-dir", help="data folder (setting data_dir, default ./data)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (documents, index, keeping, serve, agents, evaluation, exports, access):
        group.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = {
            "data_dir": args.data_dir,
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
        }
        settings = load_settings(args.config, overrides=overrides)
        _configure_logging(settings)
        handler: Callable[[Settings, argparse.Namespace], int] = args.handler
        return handler(settings, args)
    except REFUSALS as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    if settings.log_level != "debug":
        # pypdf logs every repair it makes to a malformed file; failures are reported anyway.
        logging.getLogger("pypdf").setLevel(logging.ERROR)
    show_export_progress(settings.log_level)

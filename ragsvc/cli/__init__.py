"""The `ragsvc` command line, one module per group of commands, each adding its own subparsers
beside its handlers: `documents` (ingest, search, delete, sync), `index` (rebuild, stats),
`serve`, `agents` (mcp), `evaluation` (eval), `exports` (export, log) and `access` (keys,
audit); `main` assembles the parser.

Exit codes: 0 success; 1 the command ran but some documents failed; 2 the request was refused
(bad arguments or settings, a missing path, an unknown collection or document, a busy or
mismatched store) and nothing was changed; 130 interrupted.
"""

from ragsvc.cli.main import main

__all__ = ["main"]

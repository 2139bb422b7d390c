"""The manual's settings page, generated from the settings' own descriptions:
`python -m ragsvc.settings.table > docs/settings.md` (a test fails when the page is stale)."""

from __future__ import annotations

from typing import get_type_hints

import msgspec

from ragsvc.settings import ENV_PREFIX, Settings

PAGE_HEAD = """# Settings

Every setting has a default; set it in a TOML file (`--config FILE` or `$RAGSVC_CONFIG`), as
an environment variable, or (some) as a command-line flag, each overriding the one before:
`data_dir = "/srv/ragsvc"` in the file, `RAGSVC_DATA_DIR=/srv/ragsvc` in the environment,
`--data-dir /srv/ragsvc` on the command line. List settings take comma-separated values in the
environment. A setting that is unknown, of the wrong type or out of range stops the command
or the server with a message naming it.

This page is generated from the settings' descriptions (`ragsvc/settings/`):
`python -m ragsvc.settings.table > docs/settings.md`.

"""


def description(name: str) -> str | None:
    """A setting's meaning, as its field declares it."""
    hint = get_type_hints(Settings, include_extras=True)[name]
    for meta in getattr(hint, "__metadata__", ()):
        if isinstance(meta, msgspec.Meta) and meta.description:
            return meta.description
    return None


def format_default(value: object) -> str:
    """A default as the manual shows it (lists comma-separated)."""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def settings_table() -> str:
    """The settings table, in Markdown: setting, environment variable, default, meaning."""
    lines = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    for field in msgspec.structs.fields(Settings):
        lines.append(
            f"| `{field.name}` | `{ENV_PREFIX}{field.name.upper()}` | "
            f"`{format_default(field.default)}` | {description(field.name)} |"
        )
    return "\n".join(lines)


def page() -> str:
    """The whole settings page."""
    return PAGE_HEAD + settings_table() + "\n"


if __name__ == "__main__":
    print(page(), end="")

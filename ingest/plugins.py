"""Plug-ins named `package.module:Class` (embedders, rerankers): the one place that imports
them, with an error that names what to install."""

from __future__ import annotations

import importlib
from typing import Any


def plugin_class(spec: str, kind: str, error: type[Exception]) -> Any:
    """The class `spec` ("package.module:Class") names; raises `error` saying which package
    to install when the module or the class cannot be found."""
    module_name, _, class_name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as cause:
        raise error(
            f"cannot import {kind} {spec!r} ({cause}); install the package that provides "
            f"{module_name!r}"
        ) from None

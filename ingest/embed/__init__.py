"""Embedders: a registry keyed by name, a `package.module:Class` escape hatch, and the two
factories every command and the service use.

    load_embedder(config)        the embedder for documents (batches): sentence-transformers,
                                 in bf16 where the CPU has it; loaded once per process
    load_query_embedder(config)  the embedder for one short text at a time: the same model
                                 exported once to ONNX in a child process and cached
                                 (`onnx_cache`), run by OpenVINO (bf16 where the CPU has it)
                                 or ONNX Runtime, whichever is installed first in that order;
                                 or the document embedder where none is possible (another
                                 architecture, a custom embedder, a failed export check)
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import msgspec

from ingest.embed.base import Embedder, SentenceEmbedder
from ingest.embed.sentence_transformer import (
    DEFAULT_MODEL,
    Precision,
    SentenceTransformerEmbedder,
    mean_pooled_model,
    resolve_model,
)
from ingest.errors import EmbedderUnavailable
from ingest.plugins import plugin_class

EMBEDDERS: dict[str, type] = {"sentence-transformers": SentenceTransformerEmbedder}
QueryRuntime = Literal["auto", "openvino", "onnx", "torch"]
AUTO_RUNTIMES = ("openvino", "onnx")
"""What `query_runtime = "auto"` tries, in order, before torch."""
EXPORT_TIMEOUT = 900.0
EXPORT_NICE = 10
logger = logging.getLogger(__name__)
EXPORT_LOGGER = "ingest.embed.export"
export_log = logging.getLogger(EXPORT_LOGGER)
"""The one-time export's two lines: information, shown at the default level (see
`show_export_progress`)."""


def show_export_progress(level: str) -> None:
    """Let the export's information through when the log level is `warning` or lower."""
    if logging.getLevelName(level.upper()) <= logging.WARNING:
        export_log.setLevel(logging.INFO)


class EmbedderConfig(msgspec.Struct, frozen=True):
    backend: str = "sentence-transformers"
    model: str = DEFAULT_MODEL
    device: str = "cpu"
    batch_size: int = 32
    precision: Precision = "auto"
    query_runtime: QueryRuntime = "auto"
    query_threads: int = 0
    """Threads of the query runtime (OpenVINO, ONNX Runtime); 0 lets it use every core."""
    onnx_cache: str = ""
    """Folder where ONNX exports are kept (one subfolder per model); empty: no export."""


DEFAULT_CONFIG = EmbedderConfig()


@functools.lru_cache(maxsize=4)
def load_embedder(config: EmbedderConfig = DEFAULT_CONFIG) -> Embedder:
    """Construct the embedder `config.backend` names: a registry key or "package.module:Class".
    Loading a model takes seconds; a process asking twice gets the same one."""
    if config.backend in EMBEDDERS:
        embedder: Embedder = EMBEDDERS[config.backend](
            config.model,
            device=config.device,
            batch_size=config.batch_size,
            precision=config.precision,
        )
        return embedder
    if ":" not in config.backend:
        known = ", ".join(sorted(EMBEDDERS))
        raise EmbedderUnavailable(
            f"unknown embedder {config.backend!r}; use one of: {known}, or 'package.module:Class'"
        )
    cls = plugin_class(config.backend, "embedder", EmbedderUnavailable)
    custom: Embedder = cls(config.model, device=config.device, batch_size=config.batch_size)
    return custom


@functools.lru_cache(maxsize=4)
def load_query_embedder(config: EmbedderConfig = DEFAULT_CONFIG) -> Embedder:
    """The embedder for queries (see the module docstring); never imports torch when an ONNX
    export is cached or can be made."""
    if config.query_runtime == "torch" or config.backend != "sentence-transformers":
        return load_embedder(config)
    required = config.query_runtime != "auto"
    folder = onnx_folder(config)
    if folder is None:
        if required:
            raise EmbedderUnavailable(
                f"model {config.model!r} cannot be exported to ONNX (a local mean-pooled "
                "sentence-transformers folder is needed)"
            )
        return load_embedder(config)
    from ingest.embed.exported import load_export

    try:
        if not _export_is_current(folder, config):
            _export(config, folder)
    except (OSError, ValueError, KeyError) as error:
        if required:
            raise EmbedderUnavailable(f"ONNX export unavailable: {error}") from None
        logger.warning("ONNX export unavailable (%s); using torch for queries", error)
        return load_embedder(config)
    problems = []
    for runtime in AUTO_RUNTIMES if config.query_runtime == "auto" else (config.query_runtime,):
        try:
            return load_export(
                folder, runtime=runtime, threads=config.query_threads, precision=config.precision
            )
        except (EmbedderUnavailable, OSError, ValueError, KeyError) as error:
            problems.append(f"{runtime}: {error}")
    if required:
        raise EmbedderUnavailable(f"query runtime unavailable ({'; '.join(problems)})")
    logger.warning("no query runtime for the export (%s); using torch", "; ".join(problems))
    return load_embedder(config)


def onnx_folder(config: EmbedderConfig) -> Path | None:
    """Where the ONNX export of `config.model` lives, or None when it cannot have one."""
    if not config.onnx_cache or config.device != "cpu":
        return None
    source, model_id = resolve_model(config.model)
    if not Path(source).is_dir() or not mean_pooled_model(source):
        return None
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id).strip("_")
    return Path(config.onnx_cache).expanduser() / slug[-120:]


def _export_is_current(folder: Path, config: EmbedderConfig) -> bool:
    from ingest.embed.onnx_export import EXPORT_FORMAT, weights_identity

    try:
        manifest = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    source, model_id = resolve_model(config.model)
    return (
        manifest.get("format") == EXPORT_FORMAT
        and manifest.get("model_id") == model_id
        and manifest.get("weights") == weights_identity(source)
    )


def _export(config: EmbedderConfig, folder: Path) -> None:
    export_log.info(
        "preparing %s for queries: a one-time ONNX export (about 15 s on two cores), kept in %s",
        config.model,
        folder,
    )
    started = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest.embed.onnx_export",
            "--model",
            config.model,
            "--out",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=EXPORT_TIMEOUT,
        check=False,
        # Below queries: a running server exports a re-embedded store's model while it serves.
        preexec_fn=lambda: os.nice(EXPORT_NICE),
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"export failed: {last}")
    export_log.info("%s ready for queries in %.1f s", config.model, time.perf_counter() - started)


__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDERS",
    "Embedder",
    "EmbedderConfig",
    "SentenceEmbedder",
    "SentenceTransformerEmbedder",
    "load_embedder",
    "load_query_embedder",
]

"""Settings: one frozen struct with defaults, read from an optional TOML file, then `RAGSVC_*`
environment variables, then command-line flags (each overriding the one before).

The fields live in this package by theme, each with its meaning (`embedding.py`, `retrieval.py`,
`service.py`, `answering.py`); `Settings` adds what is derived from them (the vector index's
parameters, the embedder's configuration, ...). `table.py` writes the manual's settings page
from the fields' descriptions; a test fails when one has none or the page is stale.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_origin

import msgspec

from indexes.fusion import FusionParams
from indexes.vectors import VectorParams
from ingest.embed import EmbedderConfig
from ingest.extract.base import ExtractionLimits
from ingest.ray_engine import RayOptions
from ragsvc.errors import ConfigurationError
from ragsvc.settings.answering import AnsweringSettings

ENV_PREFIX = "RAGSVC_"
CONFIG_ENV = "RAGSVC_CONFIG"


class SettingsError(ConfigurationError):
    """A setting is unknown or has a value of the wrong type or range."""


class Settings(AnsweringSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The settings of one process: the fields, and the configurations derived from them."""

    def __repr__(self) -> str:
        # The API key never reaches a log line through repr().
        fields = msgspec.structs.asdict(self)
        for secret in ("llm_api_key", "milvus_token"):
            if fields[secret]:
                fields[secret] = "***"
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"

    @property
    def templates_path(self) -> Path | None:
        return Path(self.prompt_templates_dir).expanduser() if self.prompt_templates_dir else None

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def vector_params(self) -> VectorParams:
        return VectorParams(
            auto_threshold=self.index_auto_threshold,
            auto_compress_threshold=self.index_compress_threshold,
            hnsw_m=self.index_hnsw_m,
            hnsw_ef_construction=self.index_hnsw_ef_construction,
            hnsw_ef_search=self.index_hnsw_ef_search,
            ivf_nlist=self.index_ivf_nlist,
            ivf_nprobe=self.index_ivf_nprobe,
            backend=self.vector_backend,
            milvus_uri=self.milvus_uri,
            milvus_token=self.milvus_token,
        )

    @property
    def fusion_params(self) -> FusionParams:
        return FusionParams(
            method=self.fusion,
            rrf_k=self.fusion_rrf_k,
            dense_weight=self.fusion_dense_weight,
            normalisation=self.fusion_normalisation,
            candidates=self.fusion_candidates,
        )

    @property
    def ray_options(self) -> RayOptions:
        return RayOptions(
            address=self.ray_address,
            actors=self.ray_actors,
            actor_cpus=self.ray_actor_cpus,
            batch_documents=self.ray_batch_documents,
            commit_chunks=self.ray_commit_chunks,
        )

    @property
    def extraction_limits(self) -> ExtractionLimits:
        return ExtractionLimits(
            timeout=self.extract_timeout,
            max_memory=self.extract_max_memory,
            max_pages=self.extract_max_pages,
            max_stream_bytes=self.extract_max_stream_bytes,
            max_decompressed_bytes=self.extract_max_decompressed_bytes,
            max_chars=self.extract_max_chars,
            ocr=self.ocr,
        )

    @property
    def embedder_config(self) -> EmbedderConfig:
        """What `ingest.embed.load_embedder` and `load_query_embedder` need."""
        return EmbedderConfig(
            backend=self.embedder,
            model=self.embedding_model,
            device=self.embedding_device,
            batch_size=self.embedding_batch_size,
            precision=self.embedding_precision,
            query_runtime=self.query_runtime,
            query_threads=self.query_threads,
            onnx_cache=str(
                Path(self.model_cache_dir).expanduser()
                if self.model_cache_dir
                else self.data_path / "models"
            ),
        )


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults < TOML file (`config_file` or `$RAGSVC_CONFIG`) < environment < `overrides`."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = config_file or (Path(environ[CONFIG_ENV]) if environ.get(CONFIG_ENV) else None)
    if config_file is not None:
        try:
            with open(config_file, "rb") as handle:
                values.update(tomllib.load(handle))
        except FileNotFoundError:
            raise SettingsError(f"config file not found: {config_file}") from None
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(f"config file {config_file} is not valid TOML: {error}") from None
    for field in msgspec.structs.fields(Settings):
        variable = ENV_PREFIX + field.name.upper()
        if variable in environ:
            raw = environ[variable]
            if get_origin(field.type) is tuple:
                values[field.name] = [item.strip() for item in raw.split(",") if item.strip()]
            else:
                values[field.name] = raw
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as error:
        raise SettingsError(f"invalid setting: {_describe(error)}") from None


def _describe(error: msgspec.ValidationError) -> str:
    # msgspec says "... - at `$.field`"; name the field the way the user wrote it.
    message = str(error)
    if " - at `$." in message:
        text, _, where = message.partition(" - at `$.")
        field = where.rstrip("`")
        return f"{field} (env {ENV_PREFIX}{field.upper()}): {text}"
    return message

"""Settings: precedence, validation, and every field described, on the generated page."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from ragsvc.settings import Settings, SettingsError, load_settings
from ragsvc.settings.table import description, format_default, page

SETTINGS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_defaults_need_no_configuration() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.data_dir == "./data"
    assert settings.embedding_model == "all-MiniLM-L6-v2"


def test_toml_then_environment_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "ragsvc.toml"
    config.write_text('data_dir = "/from/toml"\nembedding_batch_size = 8\nindex_type = "hnsw"\n')
    settings = load_settings(
        config,
        environ={"RAGSVC_EMBEDDING_BATCH_SIZE": "16", "RAGSVC_DATA_DIR": "/from/env"},
        overrides={"data_dir": "/from/flag", "index_type": None},
    )
    assert settings.data_dir == "/from/flag"
    assert settings.embedding_batch_size == 16
    assert settings.index_type == "hnsw"


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("chunk_overlap_tokens = 0\n")
    assert load_settings(environ={"RAGSVC_CONFIG": str(config)}).chunk_overlap_tokens == 0


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"RAGSVC_EMBEDDING_BATCH_SIZE": "0"}, "embedding_batch_size"),
        ({"RAGSVC_EMBEDDING_BATCH_SIZE": "many"}, "embedding_batch_size"),
        ({"RAGSVC_INDEX_TYPE": "annoy"}, "index_type"),
    ],
)
def test_invalid_values_name_the_setting(environ: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        load_settings(environ=environ)


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("data_dri = 'typo'\n")
    with pytest.raises(SettingsError, match="data_dri"):
        load_settings(config, environ={})


def test_missing_and_malformed_config_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "absent.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("data_dir = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(broken, environ={})


def test_every_setting_has_a_description() -> None:
    missing = [f.name for f in msgspec.structs.fields(Settings) if not description(f.name)]
    assert not missing, f"settings without a description (Meta(description=...)): {missing}"


def test_the_settings_page_is_generated_from_the_descriptions() -> None:
    """docs/settings.md is what `python -m ragsvc.settings.table` writes, so a new field, a
    changed default or a changed description shows on the page or fails here."""
    stale = SETTINGS_PAGE.read_text(encoding="utf-8") != page()
    assert not stale, (
        "docs/settings.md is stale: python -m ragsvc.settings.table > docs/settings.md"
    )
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"^\| `([a-z0-9_]+)` \| `RAGSVC_[A-Z0-9_]+` \|.*$", page(), re.M)
    }
    for field in msgspec.structs.fields(Settings):
        assert f"`{format_default(field.default)}`" in rows[field.name]

"""Storage URLs, password masking, and the [hpo] config section."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpfctl.config import Override, resolve
from mlpfctl.config.loader import to_toml
from mlpfctl.errors import ConfigError
from mlpfctl.hpo.storage import default_url, parse_url


def test_url_kinds() -> None:
    assert parse_url("sqlite:////abs/s.db").path == Path("/abs/s.db")
    journal = parse_url("journal:///shared/hpo/s.log")
    assert journal.kind == "journal" and journal.path == Path("/shared/hpo/s.log")
    pg = parse_url("postgresql://u:secret@db:5432/hpo")
    assert pg.kind == "postgresql" and pg.url.startswith("postgresql+psycopg://")
    assert "secret" not in pg.masked and pg.masked == "postgresql+psycopg://u:***@db:5432/hpo"
    assert default_url("/runs", "st").endswith("/runs/hpo/st.db")


def test_unsupported_url_is_a_usage_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        parse_url("mysql://root:hunter2@db/hpo")
    assert "hunter2" not in info.value.message
    assert "postgresql+psycopg://" in (info.value.hint or "")


def test_hpo_section_masks_the_storage_password(tmp_path: Path) -> None:
    resolved = resolve(
        None, [Override("hpo.storage", "postgresql+psycopg://u:pw123@h/db", "test")], env={}, cwd=tmp_path
    )
    assert resolved.config.hpo.storage == "postgresql+psycopg://u:pw123@h/db"
    assert "pw123" not in to_toml(resolved.config)
    assert resolved.as_dict()["hpo"]["storage"] == "postgresql+psycopg://u:***@h/db"


def test_hpo_section_validates_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        resolve(None, [Override("hpo.scheduler", "bohb", "test")], env={}, cwd=tmp_path)
    with pytest.raises(ConfigError):
        resolve(None, [Override("hpo.reduction_factor", "1", "test")], env={}, cwd=tmp_path)


def test_study_settings_never_store_a_password(tmp_path: Path) -> None:
    """The settings travel in the study (readable by anyone with the storage, optuna-dashboard)."""
    import json

    from mlpfctl.config.loader import schema_fields
    from mlpfctl.hpo.settings import StudySettings

    url = "postgresql+psycopg://u:pw123@h/db"
    overrides = [
        Override(key, url, "test") for key, info in schema_fields().items() if info.meta.get("secret")
    ]
    overrides += [
        Override("hpo.objective", f"{Path(__file__)}:test_url_kinds", "test"),
        Override("hpo.space", "quadratic", "test"),
    ]
    config = resolve(None, overrides, env={}, cwd=tmp_path).config
    assert "pw123" not in json.dumps(StudySettings.from_config(config, "s").to_dict())

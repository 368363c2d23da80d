from __future__ import annotations

from pathlib import Path

import pytest

from mlpfctl.config import Override, parse_set, resolve, to_toml
from mlpfctl.config.loader import mask_secret, read_toml, schema_fields
from mlpfctl.errors import ConfigError


def test_defaults_have_docs_and_default_source() -> None:
    resolved = resolve(env={})
    assert resolved.config.run.backend == "auto"
    assert all(src == "default" for src in resolved.sources.values())
    assert all(info.doc for info in schema_fields().values()), "every config field documents itself"


def test_precedence_default_file_env_flag_set(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[run]\nseed = 1\nout_dir = 'from-file'\n[data]\nnum_workers = 3\n")
    env = {"MLPFCTL_RUN__SEED": "2", "MLPFCTL_DATA__NUM_WORKERS": "4"}
    overrides = [Override("run.seed", 3, "flag --seed"), *parse_set(["run.seed=4"])]
    resolved = resolve(cfg, overrides, env=env)
    assert resolved.config.run.seed == 4
    assert resolved.sources["run.seed"] == "--set run.seed"
    assert resolved.config.run.out_dir == "from-file"
    assert resolved.sources["run.out_dir"] == f"file {cfg}"
    assert resolved.config.data.num_workers == 4
    assert resolved.sources["data.num_workers"] == "env MLPFCTL_DATA__NUM_WORKERS"


def test_default_file_in_cwd_is_used(tmp_path: Path) -> None:
    (tmp_path / "mlpfctl.toml").write_text("[run]\nseed = 9\n")
    resolved = resolve(env={}, cwd=tmp_path)
    assert resolved.config.run.seed == 9


def test_unknown_key_suggests_close_match() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(overrides=parse_set(["run.sed=1"]), env={})
    assert "run.sed" in info.value.message
    assert "run.seed" in (info.value.hint or "")


def test_unknown_section_lists_sections(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[rnu]\nseed = 1\n")
    with pytest.raises(ConfigError) as info:
        resolve(cfg, env={})
    assert "rnu" in info.value.message and str(cfg) in info.value.message
    assert "run" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("run.seed=abc", "not an integer"),
        ("run.seed=-1", "must be >= 0"),
        ("data.valid_fraction=1.5", "must be < 1.0"),
        ("run.backend=cdua", "not allowed"),
    ],
)
def test_bad_values_name_key_value_and_rule(item: str, fragment: str) -> None:
    key, _, value = item.partition("=")
    with pytest.raises(ConfigError) as info:
        resolve(overrides=parse_set([item]), env={})
    assert key in info.value.message and value in info.value.message and fragment in info.value.message
    assert info.value.hint


def test_choices_error_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(overrides=parse_set(["run.backend=cdua"]), env={})
    assert "cuda" in (info.value.hint or "")


def test_bad_env_value_names_variable() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(env={"MLPFCTL_RUN__SEED": "x"})
    assert "MLPFCTL_RUN__SEED" in info.value.message


def test_wrong_type_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[run]\nseed = 'one'\n")
    with pytest.raises(ConfigError, match="not an integer"):
        resolve(cfg, env={})


def test_bool_and_none_parsing() -> None:
    resolved = resolve(overrides=parse_set(["run.name=none"]), env={})
    assert resolved.config.run.name is None
    resolved = resolve(overrides=parse_set(["run.name=myrun"]), env={})
    assert resolved.config.run.name == "myrun"


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_toml(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nseed=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve(bad, env={})


def test_set_syntax_error() -> None:
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_set(["seed=1"])


def test_toml_round_trip(tmp_path: Path) -> None:
    resolved = resolve(overrides=parse_set(["run.seed=5", "data.num_workers=2"]), env={})
    path = tmp_path / "out.toml"
    path.write_text(to_toml(resolved.config))
    again = resolve(path, env={})
    assert again.config == resolved.config


def test_mask_secret() -> None:
    assert mask_secret("postgresql+psycopg://u:hunter2@db:5432/x") == "postgresql+psycopg://u:***@db:5432/x"
    assert "hunter2" not in mask_secret("hunter2")

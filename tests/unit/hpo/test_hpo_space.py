"""Search spaces: TOML parsing and its errors, conditionals, grids, presets."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from mlpfctl.errors import ConfigError
from mlpfctl.hpo.space import PRESETS, SearchSpace, config_key, load_space, same_config

SPACE = """
[params."train.optimizer"]
type = "categorical"
choices = ["adamw", "sgd"]

[params."train.lr"]
type = "float"
low = 1e-4
high = 1e-2
log = true
grid = [1e-4, 1e-3]

[params."train.momentum"]
type = "float"
low = 0.8
high = 0.95
step = 0.05
when = { "train.optimizer" = ["sgd"] }

[params."model.num_layers"]
type = "int"
low = 1
high = 3
"""


def test_toml_space_samples_conditionals_only_when_active(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text(SPACE)
    space = load_space(str(path))
    assert space.name == "space"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        params = space.suggest(trial)
        study.tell(trial, 0.0)
        assert ("train.momentum" in params) == (params["train.optimizer"] == "sgd")
        assert 1e-4 <= params["train.lr"] <= 1e-2 and params["model.num_layers"] in (1, 2, 3)
        seen.add(params["train.optimizer"])
    assert seen == {"adamw", "sgd"}


def test_grid_expands_conditionals_only_under_their_parent(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text(SPACE)
    points = load_space(str(path)).grid()
    # adamw: 2 lr x 3 layers; sgd: 2 lr x 4 momenta x 3 layers
    assert len(points) == 6 + 24
    assert len({config_key(p) for p in points}) == len(points)
    assert all("train.momentum" not in p for p in points if p["train.optimizer"] == "adamw")


def test_round_trip_through_dict(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text(SPACE)
    space = load_space(str(path))
    assert SearchSpace.from_dict(space.to_dict()) == space


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('[params.x]\ntype = "float"\nlow = 1\nhigh = 0', "must be < high"),
        ('[params.x]\ntype = "float"\nlow = 0\nhigh = 1\nlog = true', "log scale needs low > 0"),
        ('[params.x]\ntype = "float"\nlow = 1\nhigh = 2\nlog = true\nstep = 0.1', "cannot be combined"),
        ('[params.x]\ntype = "choice"', "is not one of"),
        ('[params.x]\ntype = "categorical"\nchoices = []', "non-empty"),
        ('[params.x]\ntype = "int"\nlow = 0.5\nhigh = 3', "integer"),
        ('[params.x]\ntype = "int"\nlow = 0\nhigh = 3\nwhen = { y = 1 }', "not declared before"),
        ('[params.x]\ntype = "int"\nlow = 0\nhigh = 3\nlow_ = 2', "unknown keys"),
        ("name = 'empty'", "no [params"),
    ],
)
def test_bad_spaces_are_config_errors_with_hints(tmp_path: Path, body: str, fragment: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_space(str(path))
    assert fragment in info.value.message
    assert info.value.hint


def test_continuous_float_cannot_be_gridded() -> None:
    space = load_space("quadratic")
    with pytest.raises(ConfigError, match="grid sampler cannot enumerate"):
        space.grid()


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(ConfigError) as info:
        load_space("nope")
    assert all(name in (info.value.hint or "") for name in PRESETS)


def test_mlpf_preset_covers_the_issue_list_and_never_samples_budgets() -> None:
    names = {p.name for p in load_space("mlpf").params}
    assert {
        "train.optimizer",
        "train.lr",
        "model.num_layers",
        "model.num_heads",
        "model.head_dim",
        "model.dropout",
        "model.activation",
        "data.max_elements_per_batch",
        "train.weight_decay",
        "train.lr_scaling",
        "train.warmup_steps",
    } <= names
    assert not names & {"train.steps", "train.val_every", "train.schedule_steps"}


def test_same_config_tolerates_float_noise() -> None:
    assert same_config({"a": 0.1 + 0.2, "b": "x"}, {"a": 0.3, "b": "x"})
    assert not same_config({"a": 0.3}, {"a": 0.31})
    assert not same_config({"a": 1}, {"a": 1, "b": 2})

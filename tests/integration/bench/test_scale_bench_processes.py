"""No device held by a parent: every scale-bench point, world size 1 included, runs in children."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from mlpfctl.bench.train_scaling import PointRequest, point_config, run_point
from mlpfctl.config import Override, resolve
from tests.integration.train.conftest import tiny_sets


def _config(data: Path, tmp_path: Path) -> object:
    overrides = []
    for item in tiny_sets(data, "data.max_elements_per_batch=2048"):
        key, _, value = item.partition("=")
        overrides.append(Override(key, value, "test"))
    return resolve(None, overrides, env={}, cwd=tmp_path).config


@pytest.mark.slow
def test_world_size_1_runs_in_a_child_process(ttbar_dir: Path, tmp_path: Path) -> None:
    """The whole point's work is done by a child: this process's own CPU time barely moves while
    its children's grows by the training. (The parent used to train world size 1 itself, keeping
    that device's context and cache for every later point.)"""
    config = point_config(_config(ttbar_dir, tmp_path), 1, "strong")  # type: ignore[arg-type]
    before_self = resource.getrusage(resource.RUSAGE_SELF)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    metrics = run_point(PointRequest(config, 1, "strong", steps=6, warmup=1, comm_steps=0))
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert metrics["world_size"] == 1 and metrics["events_per_s"] > 0
    children = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    parent = (after_self.ru_utime - before_self.ru_utime) + (after_self.ru_stime - before_self.ru_stime)
    assert children > 1.0 and parent < children / 2, (parent, children)

"""Real multi-process launch with gloo (the same path --nproc N takes)."""

from __future__ import annotations

import os

import pytest

from mlpfctl.errors import RuntimeFailure, UsageError
from mlpfctl.launch.local import launch_local
from mlpfctl.launch.runenv import RunEnv


def _all_reduce(offset: float) -> tuple[float, dict[str, object]]:
    import torch
    import torch.distributed as dist

    env = RunEnv.from_env()
    dist.init_process_group("gloo", rank=env.rank, world_size=env.world_size)
    value = torch.tensor([float(env.rank) + offset])
    dist.all_reduce(value)
    dist.destroy_process_group()
    return float(value.item()), env.as_dict()


def _fail_on_rank_one() -> None:
    if os.environ["RANK"] == "1":
        raise UsageError("rank one is unhappy", "fix rank one")
    import time

    time.sleep(60)


def _crash_on_rank_one() -> None:
    if os.environ["RANK"] == "1":
        os._exit(9)
    import time

    time.sleep(60)


def test_two_rank_gloo_all_reduce() -> None:
    total, env = launch_local(_all_reduce, 2, (1.0,))
    assert total == pytest.approx(0 + 1 + 2 * 1.0)
    assert env["world_size"] == 2 and env["rank"] == 0 and env["source"] == "torchrun"


def test_failing_rank_stops_the_others_and_keeps_error_type() -> None:
    with pytest.raises(UsageError, match="rank one is unhappy"):
        launch_local(_fail_on_rank_one, 2)


def test_crashing_rank_is_reported() -> None:
    with pytest.raises(RuntimeFailure, match="rank 1 exited with code 9"):
        launch_local(_crash_on_rank_one, 2)


def test_bad_nproc() -> None:
    with pytest.raises(UsageError):
        launch_local(_fail_on_rank_one, 0)


def _threads() -> tuple[str, int]:
    import torch

    return os.environ["OMP_NUM_THREADS"], torch.get_num_threads()


def test_ranks_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    expected = max(1, cores // 2)
    assert launch_local(_threads, 2) == (str(expected), expected)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert launch_local(_threads, 2) == ("1", 1)

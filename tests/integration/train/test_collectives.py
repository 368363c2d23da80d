"""Collectives on every backend: the process group is device-qualified, so the loop's host-side
bookkeeping never reaches a library that reduces only accelerator tensors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mlpfctl.backends import get_backend
from mlpfctl.config.schema import Config
from mlpfctl.launch.local import launch_local
from mlpfctl.launch.process_group import group_backend
from mlpfctl.train.types import TrainRequest
from tests.integration.train import standin
from tests.integration.train.test_training import config


def on_standin(cfg: Config) -> Config:
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, backend="standin"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cpu", "gloo"),
        ("cuda", "cpu:gloo,cuda:nccl"),
        ("rocm", "cpu:gloo,cuda:nccl"),  # ROCm builds serve RCCL under the nccl name
        ("hpu", "cpu:gloo,hpu:hccl"),
        ("xpu", "cpu:gloo,xpu:{xpu}"),  # xccl, or ccl on stacks without it
    ],
)
def test_every_adapter_gets_a_device_qualified_group(name: str, expected: str) -> None:
    adapter = get_backend(name)
    assert group_backend(adapter) == expected.format(xpu=get_backend("xpu").dist_backend)
    if name != "cpu":  # a build without gloo: the library alone, host collectives on the device
        assert group_backend(adapter, gloo=False) == adapter.dist_backend


def test_bookkeeping_never_reaches_an_accelerator_only_library(ttbar_dir: Path, tmp_path: Path) -> None:
    """Two ranks whose library reduces only accelerator tensors (like NCCL) train, validate and
    checkpoint: counts, stop flag, losses, validation sums and objects all go elsewhere."""
    cfg = on_standin(config(ttbar_dir, "train.steps=4", "train.val_every=2", "train.batch_events=4"))
    request = TrainRequest(cfg, tmp_path / "run", hooks=standin.Observe(), quiet=True)
    result, seen = launch_local(standin.rank_main, 2, (request,))
    assert result.status == "completed" and result.step == 4 and len(result.history) == 2
    assert seen == {"backend": "cpu:gloo,cuda:standin", "cpu_is_standin": False, "cuda_is_standin": True}
    info = json.loads((tmp_path / "run" / "model.json").read_text())
    assert info["world_size"] == 2 and info["process_group"] == "cpu:gloo,cuda:standin"


def test_forced_group_of_one_runs_the_collectives(ttbar_dir: Path, tmp_path: Path) -> None:
    """run.force_process_group: one process, yet a real group (and DDP) through the library."""
    cfg = on_standin(
        config(
            ttbar_dir,
            "train.steps=2",
            "train.val_every=2",
            "train.batch_events=4",
            "run.force_process_group=true",
        )
    )
    request = TrainRequest(cfg, tmp_path / "one", hooks=standin.Observe(), quiet=True)
    result, seen = launch_local(standin.rank_main, 1, (request,))
    assert result.status == "completed" and result.step == 2
    assert seen["backend"] == "cpu:gloo,cuda:standin" and seen["cuda_is_standin"] is True
    info = json.loads((tmp_path / "one" / "model.json").read_text())
    assert info["world_size"] == 1 and info["process_group"] == "cpu:gloo,cuda:standin"


def test_forced_group_in_a_single_process(ttbar_dir: Path, tmp_path: Path) -> None:
    """Without a launcher a forced group of one needs no port: an in-process store (gloo here)."""
    from mlpfctl.train.api import train

    cfg = config(ttbar_dir, "train.steps=2", "train.val_every=2", "train.batch_events=4")
    forced = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, force_process_group=True))
    plain = train(TrainRequest(cfg, tmp_path / "plain", quiet=True))
    grouped = train(TrainRequest(forced, tmp_path / "grouped", quiet=True))
    info = json.loads((tmp_path / "grouped" / "model.json").read_text())
    assert info["process_group"] == "gloo" and grouped.step == 2
    assert grouped.val_loss == plain.val_loss  # a group of one changes no number


LEFTOVER_THREADS = """
import dataclasses, json, os, sys
from pathlib import Path
from mlpfctl.train.api import train
from mlpfctl.train.types import TrainRequest
from tests.integration.train.test_training import config

data, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = config(data, "train.steps=2", "train.val_every=2", "train.batch_events=4")
forced = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, force_process_group=True))
def threads() -> int:
    return len(os.listdir("/proc/self/task"))
train(TrainRequest(cfg, out / "plain", quiet=True))  # every thread pool torch keeps is up now
before = threads()
train(TrainRequest(forced, out / "grouped", quiet=True))
print(json.dumps({"before": before, "after": threads()}))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc (Linux)")
def test_a_finished_group_leaves_no_thread_behind(ttbar_dir: Path, tmp_path: Path) -> None:
    """The group's worker threads are joined when the run ends, not at interpreter exit (where a
    gloo thread that needs the GIL aborts the process after a finished run)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", LEFTOVER_THREADS, str(ttbar_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).parents[3],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["after"] == counts["before"], counts

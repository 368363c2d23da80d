"""Peak memory stays within the budget plus a documented constant on data many times the budget.

Each case runs in a fresh process and measures the growth of its peak RSS (VmHWM, reset after
start-up) over a streaming epoch, and over one batch of events from every shard on both
random-access paths (the loader, and ``ds[i]`` + ``collate_events``). Before the fix, a batch of
events viewing many shards kept all of them decoded: +300 MB here with a 4 MB budget.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlpfctl.data.loader import MEMORY_CONSTANT_BYTES, MEMORY_SHARDS_IN_FLIGHT
from tests.unit.data.fixtures import write_key4hep_synthetic

BUDGET = 4 << 20

PROBE = r"""
import json, sys
import numpy as np
from mlpfctl.data.batching import sampler_for
from mlpfctl.data.collate import collate_events, make_loader
from mlpfctl.data.dataset import open_dataset

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

path, budget, mode, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ds = open_dataset(path, cache_bytes=budget)
next(iter(make_loader(ds, [[0, 1]])))  # start-up: imports, first decode, torch
ds.cache.clear()
# a batch as random access makes them: events from every shard
spread = [np.flatnonzero(np.diff(ds.shard_ids(), prepend=-1)).tolist()]
if mode == "stream":
    batches = make_loader(ds, sampler_for(ds, max_elements=2048, batch_events=None, loader="stream"))
elif mode == "random":
    batches = make_loader(ds, spread)
else:
    batches = (collate_events([(i, ds[i]) for i in b]) for b in spread)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) restarts from the current RSS
base = status("VmRSS:")
n = 0
for n, _ in enumerate(batches, 1):
    if n >= limit:
        break
print(json.dumps({"growth": status("VmHWM:") - base, "batches": n}))
"""


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """32 shards of 100 events: 58 MB decoded, ~14x the budget; returns the largest shard's size."""
    from mlpfctl.data.dataset import open_dataset

    directory = tmp_path_factory.mktemp("big")
    for i in range(32):
        write_key4hep_synthetic(directory / f"s{i:02d}.parquet", 100, seed=i)
    ds = open_dataset(directory)
    return directory, max(ds.read_shard(s).nbytes for s in range(len(ds.sources)))


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc (VmHWM reset)")
@pytest.mark.parametrize(("mode", "batches"), [("stream", 10_000), ("random", 1), ("getitem", 1)])
def test_peak_rss_growth_is_bounded_by_the_budget(big: tuple[Path, int], mode: str, batches: int) -> None:
    directory, shard = big
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(directory), str(BUDGET), mode, str(batches)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["batches"] >= 1
    bound = BUDGET + MEMORY_CONSTANT_BYTES + MEMORY_SHARDS_IN_FLIGHT * shard
    assert result["growth"] <= bound, f"{mode}: peak RSS grew {result['growth'] / 2**20:.0f} MB"

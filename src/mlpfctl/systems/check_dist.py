"""``python -m mlpfctl.systems.check_dist``: prove that a job's ranks find each other.

What ``mlpfctl submit -- check`` runs under the rendered training launcher: every rank
initialises torch.distributed from ``RunEnv`` (gloo), all-reduces its rank + 1 and prints one
line; the sum must be world * (world + 1) / 2. Exit 1 if it is not.
"""

from __future__ import annotations

import os
import socket
import sys


def main() -> int:
    import torch
    import torch.distributed as dist

    from mlpfctl.launch.runenv import RunEnv

    env = RunEnv.from_env()
    os.environ.update(env.torch_env())
    dist.init_process_group("gloo", rank=env.rank, world_size=env.world_size)
    try:
        value = torch.tensor([float(env.rank + 1)])
        dist.all_reduce(value)
        expected = env.world_size * (env.world_size + 1) / 2
        ok = value.item() == expected
        print(
            f"check_dist rank {env.rank}/{env.world_size} local {env.local_rank} on {socket.gethostname()} "
            f"source {env.source} master {env.master_addr}:{env.master_port} sum {value.item():g} "
            f"{'OK' if ok else f'WRONG (expected {expected:g})'}",
            flush=True,
        )
    finally:
        dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

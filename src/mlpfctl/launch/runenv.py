"""Who am I in a distributed job: rank, local rank, world size, rendezvous address and port.

Sources, first match wins:
    1. torchrun / torch.distributed.run: RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT
    2. SLURM (srun, one task per device): SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS, the node list
       (SLURM_JOB_NODELIST / SLURM_STEP_NODELIST / SLURM_NODELIST) and a port derived from the job id;
       MASTER_ADDR/MASTER_PORT from the environment win (a job script may set the JSC 'i' host name).
    3. a single process (rank 0 of 1)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mlpfctl.errors import UsageError
from mlpfctl.launch.hostlist import expand_hostlist

# Ports 29500 + (job id mod 1000): unprivileged, away from the torchrun default so that two jobs
# sharing a node (the particleflow #258 failure) almost never collide.
_PORT_BASE = 29500
_PORT_SPAN = 1000


@dataclass(frozen=True)
class RunEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = _PORT_BASE
    node_rank: int = 0
    num_nodes: int = 1
    source: str = "single"

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def torch_env(self) -> dict[str, str]:
        """The torchrun-style variables for ``torch.distributed.init_process_group('env://')``."""
        return {
            "RANK": str(self.rank),
            "LOCAL_RANK": str(self.local_rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_WORLD_SIZE": str(self.local_world_size),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RunEnv:
        env = os.environ if env is None else env
        if "RANK" in env and "WORLD_SIZE" in env:
            return _from_torchrun(env)
        if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
            return _from_slurm(env)
        return cls()


def _int(env: Mapping[str, str], name: str, minimum: int = 0) -> int:
    raw = env.get(name, "")
    try:
        value = int(raw.strip())
    except ValueError:
        raise UsageError(
            f"environment variable {name}={raw!r} is not an integer",
            "unset it or fix the launcher that sets it",
        ) from None
    if value < minimum:
        raise UsageError(
            f"environment variable {name}={value} must be >= {minimum}",
            "unset it or fix the launcher that sets it",
        )
    return value


def _port(env: Mapping[str, str], name: str) -> int:
    port = _int(env, name, 1)
    if port > 65535:
        raise UsageError(f"environment variable {name}={port} is not a TCP port", "use 1024-65535")
    return port


def _check(rank: int, world: int, what: str) -> None:
    if world < 1:
        raise UsageError(f"{what}: world size {world} must be >= 1", "fix the launcher variables")
    if rank >= world:
        raise UsageError(
            f"{what}: rank {rank} is not below the world size {world}", "fix the launcher variables"
        )


def _from_torchrun(env: Mapping[str, str]) -> RunEnv:
    rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE", 1)
    _check(rank, world, "torchrun")
    local_rank = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    local_world = _int(env, "LOCAL_WORLD_SIZE", 1) if "LOCAL_WORLD_SIZE" in env else world
    _check(local_rank, local_world, "torchrun local")
    port = _port(env, "MASTER_PORT") if "MASTER_PORT" in env else _PORT_BASE
    node_rank = _int(env, "GROUP_RANK") if "GROUP_RANK" in env else rank // local_world
    return RunEnv(
        rank,
        local_rank,
        world,
        local_world,
        env.get("MASTER_ADDR", "127.0.0.1"),
        port,
        node_rank,
        max(1, world // local_world),
        "torchrun",
    )


def _tasks_per_node(text: str) -> list[int]:
    """SLURM_TASKS_PER_NODE like '4(x2),3' -> [4, 4, 3]."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "(x" in part:
            count, _, rep = part.partition("(x")
            out.extend([int(count)] * int(rep.rstrip(")")))
        else:
            out.append(int(part))
    return out


def _from_slurm(env: Mapping[str, str]) -> RunEnv:
    rank, world = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS", 1)
    _check(rank, world, "SLURM")
    local_rank = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    hosts = expand_hostlist(nodelist) if nodelist else ["127.0.0.1"]
    per_node_text = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    local_world = 1
    if per_node_text:
        try:
            per_node = _tasks_per_node(per_node_text)
        except ValueError:
            raise UsageError(
                f"malformed SLURM_TASKS_PER_NODE={per_node_text!r}", "expected e.g. 4(x2) or 4,4"
            ) from None
        node_rank = _int(env, "SLURM_NODEID") if "SLURM_NODEID" in env else 0
        local_world = per_node[min(node_rank, len(per_node) - 1)]
    else:
        local_world = max(1, world // max(1, len(hosts)))
    node_rank = _int(env, "SLURM_NODEID") if "SLURM_NODEID" in env else rank // max(1, local_world)
    if "MASTER_PORT" in env:
        port = _port(env, "MASTER_PORT")
    else:
        job = _int(env, "SLURM_JOB_ID") if "SLURM_JOB_ID" in env else 0
        port = _PORT_BASE + job % _PORT_SPAN
    addr = env.get("MASTER_ADDR") or hosts[0]
    return RunEnv(rank, local_rank, world, local_world, addr, port, node_rank, len(hosts), "slurm")

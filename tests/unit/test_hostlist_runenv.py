from __future__ import annotations

import pytest

from mlpfctl.errors import UsageError
from mlpfctl.launch.hostlist import expand_hostlist
from mlpfctl.launch.runenv import RunEnv


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("node1", ["node1"]),
        ("node1,node2", ["node1", "node2"]),
        ("nid[001-004,010]", ["nid001", "nid002", "nid003", "nid004", "nid010"]),
        ("jwb[0098-0099]i", ["jwb0098i", "jwb0099i"]),
        ("a[1-2]b[3-4]", ["a1b3", "a1b4", "a2b3", "a2b4"]),
        ("x[7],y[08-09]", ["x7", "y08", "y09"]),
    ],
)
def test_expand_hostlist(text: str, hosts: list[str]) -> None:
    assert expand_hostlist(text) == hosts


@pytest.mark.parametrize("text", ["", "nid[001-004", "nid001-004]", "nid[]", "nid[4-1]", "nid[a-b]", "a,,b"])
def test_malformed_hostlist(text: str) -> None:
    with pytest.raises(UsageError):
        expand_hostlist(text)


CASES = [
    ("single", {}, RunEnv()),
    (
        "torchrun",
        {
            "RANK": "3",
            "LOCAL_RANK": "1",
            "WORLD_SIZE": "8",
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "h0",
            "MASTER_PORT": "1234",
            "GROUP_RANK": "1",
        },
        RunEnv(3, 1, 8, 2, "h0", 1234, 1, 4, "torchrun"),
    ),
    (
        "slurm",
        {
            "SLURM_PROCID": "5",
            "SLURM_LOCALID": "1",
            "SLURM_NTASKS": "8",
            "SLURM_NODEID": "1",
            "SLURM_JOB_NODELIST": "nid[001-004]",
            "SLURM_TASKS_PER_NODE": "2(x4)",
            "SLURM_JOB_ID": "123456",
        },
        RunEnv(5, 1, 8, 2, "nid001", 29500 + 456, 1, 4, "slurm"),
    ),
    (
        "slurm with explicit master (JSC 'i' suffix)",
        {
            "SLURM_PROCID": "0",
            "SLURM_LOCALID": "0",
            "SLURM_NTASKS": "4",
            "SLURM_NODEID": "0",
            "SLURM_JOB_NODELIST": "jrc[0001-0002]",
            "SLURM_TASKS_PER_NODE": "2(x2)",
            "SLURM_JOB_ID": "7",
            "MASTER_ADDR": "jrc0001i",
            "MASTER_PORT": "29999",
        },
        RunEnv(0, 0, 4, 2, "jrc0001i", 29999, 0, 2, "slurm"),
    ),
    (
        "torchrun wins over slurm",
        {"RANK": "0", "WORLD_SIZE": "2", "SLURM_PROCID": "1", "SLURM_NTASKS": "4"},
        RunEnv(0, 0, 2, 2, "127.0.0.1", 29500, 0, 1, "torchrun"),
    ),
]


@pytest.mark.parametrize(("name", "env", "expected"), CASES, ids=[c[0] for c in CASES])
def test_runenv_sources(name: str, env: dict[str, str], expected: RunEnv) -> None:
    assert RunEnv.from_env(env) == expected


@pytest.mark.parametrize(
    "env",
    [
        {"RANK": "x", "WORLD_SIZE": "2"},
        {"RANK": "2", "WORLD_SIZE": "2"},
        {"RANK": "0", "WORLD_SIZE": "0"},
        {"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "70000"},
        {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "nid[1-"},
        {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_TASKS_PER_NODE": "2(xx)"},
        {"SLURM_PROCID": "-1", "SLURM_NTASKS": "2"},
    ],
)
def test_runenv_malformed_values_are_clear_errors(env: dict[str, str]) -> None:
    with pytest.raises(UsageError) as info:
        RunEnv.from_env(env)
    assert info.value.hint


def test_torch_env_round_trip() -> None:
    env = RunEnv(1, 1, 2, 2, "h", 1111, 0, 1, "x").torch_env()
    again = RunEnv.from_env(env)
    assert (again.rank, again.world_size, again.master_port) == (1, 2, 1111)

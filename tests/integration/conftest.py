"""The local SLURM cluster for the ``slurm`` tests: started once per test session when root.

``scripts/local-slurm.sh setup`` installs the Debian packages if needed and starts a one-node
cluster with fake GPUs and every partition name of the shipped system profiles (so each profile's
scripts pass ``sbatch --test-only``). The script takes ``flock /tmp/mlpfctl-local-slurm.lock``,
so parallel pytest workers wait for each other instead of starting two clusters; a re-run with
the same settings only checks that the node is idle. The cluster is left running afterwards
(``sudo scripts/local-slurm.sh stop`` stops it).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO


def _partition_names() -> str:
    from mlpfctl.systems.profiles import load_all

    names = {
        p.sbatch_partition
        for profile in load_all({})
        for p in profile.partitions.values()
        if p.sbatch_partition
    }
    return " ".join(sorted(names))


@pytest.fixture(scope="session")
def local_slurm() -> str:
    """Node state line of the running local cluster; skips when this machine cannot run one."""
    if os.geteuid() != 0:
        pytest.skip(
            "the local SLURM cluster needs root (slurmd runs as root): run the tests as root or in CI"
        )
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("no SLURM installed and no apt-get to install it (Debian/Ubuntu only)")
    env = {**os.environ, "MLPFCTL_SLURM_PARTITIONS": _partition_names()}
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "local-slurm.sh"), "setup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        if "apt-get install failed" in proc.stderr:
            pytest.skip(f"cannot install the SLURM packages here: {proc.stderr.strip()[-300:]}")
        pytest.fail(f"scripts/local-slurm.sh setup failed:\n{proc.stderr}")
    return proc.stderr.strip().splitlines()[-1]

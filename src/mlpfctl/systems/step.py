"""``python -m mlpfctl.systems.step [--torchrun [--local-addr HOST]] -- COMMAND...``: how every
job step of an mlpfctl SLURM job starts its command.

1. It blocks SIGUSR1, the job's time-limit warning, then execs COMMAND, which inherits the blocked
   mask (see ``mlpfctl.train.signals``). ``scancel --signal=USR1`` reaches every process of a step;
   blocked, the warning stays pending in the processes that do not act on it (torchrun's agent, an
   HPO driver, DataLoader workers) instead of killing them, and waits for the training processes
   that are still starting up instead of being lost.
2. With ``--torchrun`` (one task per node) it sets torchrun's per-node options from SLURM:
   ``PET_NODE_RANK``; ``PET_RDZV_CONF=is_host=1`` on the first node only, so that the node that
   hosts the rendezvous does not depend on torchrun matching host names (pytorch/pytorch#73656);
   and, with ``--local-addr HOST``, ``PET_LOCAL_ADDR=HOST`` on that node, so that PyTorch >= 2.5
   advertises the rendezvous under the name the other nodes use (the InfiniBand name on JSC
   systems; HelmholtzAI-FZJ/torchrun_jsc). Older torchruns ignore the variable.

Kept free of heavy imports: it runs once per task before the real program starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

USAGE = "usage: python -m mlpfctl.systems.step [--torchrun [--local-addr HOST]] -- COMMAND [ARGS...]"


def torchrun_env(env: Mapping[str, str], local_addr: str | None) -> dict[str, str]:
    """The torchrun variables for this node of the step."""
    node = env.get("SLURM_NODEID", "0")
    is_host = node == "0"
    out = {"PET_NODE_RANK": node, "PET_RDZV_CONF": f"is_host={1 if is_host else 0}"}
    if local_addr and is_host:
        out["PET_LOCAL_ADDR"] = local_addr
    return out


def parse(argv: Sequence[str]) -> tuple[bool, str | None, list[str]]:
    """(torchrun mode, local address, command) from the arguments; ValueError when malformed."""
    torchrun, local_addr = False, None
    args = list(argv)
    while args and args[0] != "--":
        option = args.pop(0)
        if option == "--torchrun":
            torchrun = True
        elif option == "--local-addr" and args:
            local_addr = args.pop(0)
        else:
            raise ValueError(f"unknown option {option!r}")
    if not args or len(args) < 2:
        raise ValueError("no command after --")
    if local_addr is not None and not torchrun:
        raise ValueError("--local-addr needs --torchrun")
    return torchrun, local_addr, args[1:]


def main(argv: Sequence[str] | None = None) -> int:
    from mlpfctl.train.signals import block_warning_signal

    try:
        torchrun, local_addr, command = parse(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        sys.stderr.write(f"error: mlpfctl.systems.step: {exc}\nhint: {USAGE}\n")
        return 2
    block_warning_signal()
    if torchrun:
        os.environ.update(torchrun_env(os.environ, local_addr))
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(
            f"error: cannot start {command[0]!r}: {exc.strerror}\n"
            "hint: check submit.venv / the container (the job's python must exist on the compute node)\n"
        )
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())

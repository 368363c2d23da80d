"""Check a job's own command line before anything is written or queued, exactly as the node runs it.

A job runs an mlpfctl command (``train``, ``hpo run``, ``scale-bench train`` ...). ``check_job``
parses the job's arguments with that command's own parser (the Click command object the node
uses, with its option types and ranges) and runs the command in its ``--dry-run`` mode, which
resolves the configuration (config file, ``MLPFCTL_*`` environment, ``--set`` keys and their value
ranges) with the same code, in the same directory (``request.workdir``) and with the environment
the job script sets (the run directory as ``run.out_dir``). A bad job fails here with the command's
own error (exit 2 for usage and configuration errors), minutes or days before the queue would have
started it.

What cannot be checked here is what only exists on the compute node: its devices (the check runs
with device probing off) and files that appear there only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlpfctl.errors import MlpfctlError, UsageError
from mlpfctl.systems.request import JobRequest

# variables the job script exports that change how the command resolves its configuration
_DEVICE_VARS = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")


@dataclass(frozen=True)
class CheckedJob:
    """What the check learnt about the job's command."""

    command_path: str  # e.g. "mlpfctl hpo run"
    defaulted: frozenset[str]  # parameters the job leaves at their defaults
    plan: Mapping[str, Any] = field(default_factory=dict)  # the command's --dry-run --json plan


def node_argv(request: JobRequest) -> list[str] | None:
    """The mlpfctl arguments the job's (first) step runs; None for the check job (no CLI)."""
    if request.entry_module != "mlpfctl":
        return None
    if request.hpo is not None:
        return list(request.hpo.driver_command)  # the workers take their settings from the study
    return list(request.command)


@contextlib.contextmanager
def _job_environment(request: JobRequest) -> Iterator[None]:
    updates: Mapping[str, str | None] = {
        "MLPFCTL_RUN__OUT_DIR": str(request.run_dir),  # what the job script exports
        # the login node's devices are not the job's: describe the plan without probing them
        "MLPFCTL_HPO_NO_DEVICE_PROBE": "1",
        **dict.fromkeys(_DEVICE_VARS),
    }
    saved = {key: os.environ.get(key) for key in updates}
    try:
        for key, value in updates.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _usage(kind: str, exc: Any, fallback: str) -> UsageError:
    path = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else fallback
    return UsageError(f"{kind} job: {exc.format_message()}", f"run '{path} --help' for the job's options")


def check_job(request: JobRequest) -> CheckedJob | None:
    """Parse and dry-run the job's command; raise its own error (prefixed by the job kind)."""
    argv = node_argv(request)
    if argv is None:
        return None
    import typer
    import typer.core
    import typer.main
    from typer._click import core as click_core
    from typer._click import exceptions as click_exceptions

    from mlpfctl.cli.app import app

    kind = request.kind
    command: Any = typer.main.get_command(app)
    ctx = click_core.Context(command, info_name="mlpfctl")
    args = argv
    name: str | None = "mlpfctl"
    # help or usage text that a parser prints goes nowhere: the error says what is wrong; the plan
    # a command prints in its --dry-run --json mode is kept
    captured = io.StringIO()
    with _job_environment(request), contextlib.redirect_stdout(captured):
        try:
            while isinstance(command, typer.core.TyperGroup):
                name, sub, args = command.resolve_command(ctx, args)
                if sub is None or name is None:
                    raise UsageError(f"{kind} job: no command in {' '.join(argv)!r}", "see mlpfctl --help")
                command = sub
                if isinstance(command, typer.core.TyperGroup):
                    ctx = click_core.Context(command, info_name=name, parent=ctx)
            path = f"{ctx.command_path} {name}"
            if "dry_run" not in {param.name for param in command.params}:
                raise UsageError(f"`{path}` cannot run as a {kind} job", "see: mlpfctl submit --help")
            leaf = command.make_context(name, list(args), parent=ctx)
        except click_exceptions.UsageError as exc:
            raise _usage(kind, exc, f"mlpfctl {' '.join(argv[:2])}") from None
        except typer.Exit:
            raise UsageError(
                f"{kind} job: `mlpfctl {' '.join(argv)}` would only print and exit (--help?)",
                "leave --help and --version out of the job's arguments",
            ) from None
        defaulted = frozenset(
            param
            for param in leaf.params
            if leaf.get_parameter_source(param) in (click_core.ParameterSource.DEFAULT, None)
        )
        leaf.params["dry_run"] = True
        if "as_json" in leaf.params:
            leaf.params["as_json"] = True  # the plan goes to the captured stdout
        try:
            with leaf:
                command.invoke(leaf)
        except MlpfctlError as exc:
            prefixed = type(exc)(f"{kind} job: {exc.message}", exc.hint)
            prefixed.exit_code = exc.exit_code
            raise prefixed from None
        except click_exceptions.UsageError as exc:
            raise _usage(kind, exc, path) from None
    return CheckedJob(path, defaulted, _plan(captured.getvalue()))


def _plan(text: str) -> dict[str, Any]:
    try:
        plan = json.loads(text)
    except ValueError:
        return {}
    return plan if isinstance(plan, dict) else {}

"""The ``mlpfctl`` root command.

Start-up must stay fast (``mlpfctl --help`` under 0.3 s): command modules import only Typer and
light internals at module level; torch, optuna, numpy-heavy code are imported inside commands.
"""

from __future__ import annotations

import contextlib
import faulthandler
import sys
from collections.abc import Sequence

import typer

# Typer >= 0.29 vendors Click; its usage errors are what a bad flag or argument raises.
from typer._click.exceptions import UsageError

from mlpfctl import __version__
from mlpfctl.cli import config_cmd, container, data, devices, hpo, jobs, scale_bench, submit, systems
from mlpfctl.cli import evaluate as evaluate_cmd
from mlpfctl.cli import export as export_cmd
from mlpfctl.cli import train as train_cmd
from mlpfctl.errors import EXIT_FAILURE, EXIT_USAGE, MlpfctlError, os_error

app = typer.Typer(
    name="mlpfctl",
    help="Train, tune (HPO), scale-test and SLURM-submit MLPF particle-flow models on any HPC machine.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlpfctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train, tune (HPO), scale-test and SLURM-submit MLPF particle-flow models on any HPC machine."""


app.command("devices")(devices.devices)
app.add_typer(config_cmd.app, name="config")
app.add_typer(hpo.app, name="hpo")
app.add_typer(scale_bench.app, name="scale-bench")
app.add_typer(data.app, name="data")
app.command("submit")(submit.submit)
app.add_typer(systems.app, name="systems")
app.add_typer(container.app, name="container")
jobs.register(app)
app.command("train")(train_cmd.train)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("export")(export_cmd.export)


def _one_line(text: str) -> str:
    # Exception texts of libraries (SQLAlchemy, TOML, Arrow) span several lines; the promise is
    # exactly one error: line and one hint: line.
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _print_error(message: str, hint: str | None) -> None:
    # Plain writes (no Rich markup parsing): messages may contain brackets such as nid[001-004].
    sys.stderr.write(f"error: {_one_line(message)}\n")
    if hint:
        sys.stderr.write(f"hint: {_one_line(hint)}\n")
    sys.stderr.flush()


def _usage_hint(exc: UsageError) -> str:
    ctx = exc.ctx
    path = ctx.command_path if ctx is not None else "mlpfctl"
    return f"run '{path} --help' for the usage"


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code (errors become one error:/hint: pair on stderr)."""
    try:
        result = app(
            args=list(argv) if argv is not None else None, prog_name="mlpfctl", standalone_mode=False
        )
    except UsageError as exc:
        _print_error(exc.format_message(), _usage_hint(exc))
        return EXIT_USAGE
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        _print_error("aborted", None)
        return 130
    except MlpfctlError as exc:
        _print_error(exc.message, exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        _print_error("interrupted", None)
        return 130
    except BrokenPipeError:
        return EXIT_FAILURE
    # The safety net for what no command checked up front: a file operation the environment
    # refused (read-only or full disk, a file where a directory belongs) or a file that is not
    # text. Both are the user's to fix, so they print like any usage error, without a traceback.
    except OSError as exc:
        error = os_error(exc)
        _print_error(error.message, error.hint)
        return EXIT_USAGE
    except UnicodeDecodeError as exc:
        _print_error(
            f"an input file is not UTF-8 text ({exc.reason} at byte {exc.start})",
            "pass a text file (TOML, JSON) where text is expected",
        )
        return EXIT_USAGE
    return int(result) if isinstance(result, int) else 0


def main() -> None:
    # A crash in native code (NCCL, gloo, a driver) prints every thread's Python stack to stderr,
    # which lands in the job's log: the one clue a user has after a SIGSEGV/SIGABRT at hour 20.
    with contextlib.suppress(OSError, ValueError, AttributeError):  # stderr without a descriptor
        faulthandler.enable()
    sys.exit(run())

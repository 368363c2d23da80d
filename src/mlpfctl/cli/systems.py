"""``mlpfctl systems``: the SLURM system profiles (shipped ones and the user's own)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlpfctl.cli.common import JsonOpt

app = typer.Typer(help="List and show SLURM system profiles.", invoke_without_command=True)


@app.callback()
def systems(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the system profiles (add your own: ~/.config/mlpfctl/systems/NAME.toml)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from mlpfctl.console import out, print_json
    from mlpfctl.systems.profiles import load_all
    from mlpfctl.systems.slurmtime import format_time

    profiles = load_all()
    if as_json:
        print_json([p.as_dict() for p in profiles])
        return
    table = Table(title="SLURM system profiles")
    for column in ("name", "system", "partitions (GPUs/node, max time)", "account", "source"):
        table.add_column(column)
    for p in profiles:
        parts = ", ".join(
            f"{q.name}{'*' if q.name == p.default_partition else ''} "
            f"({q.gpus_per_node}, {format_time(q.max_time_s)})"
            for q in p.partitions.values()
        )
        table.add_row(p.name, p.title, parts, "required" if p.account_required else "optional", str(p.source))
    out.print(table)


def _without_none(data: dict[str, Any]) -> dict[str, Any]:
    # TOML has no null: leave unset values out
    return {k: _without_none(v) if isinstance(v, dict) else v for k, v in data.items() if v is not None}


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Profile name.")],
    script: Annotated[
        str | None,
        typer.Option(
            "--script",
            help="Print an example job script of this kind (train, hpo, scale-bench, check, data).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print one system profile (or, with --script, an example job script for it)."""
    import tomli_w

    from mlpfctl.console import out, print_json
    from mlpfctl.systems.profiles import load_profile

    profile = load_profile(name)
    if script is not None:
        from mlpfctl.systems.examples import example_request
        from mlpfctl.systems.render import render
        from mlpfctl.systems.request import check_kind

        check_kind(script)
        out.file.write(render(profile, example_request(profile, script)))
        out.file.flush()
        return
    data = profile.as_dict()
    if as_json:
        print_json(data)
        return
    out.file.write(f"# {data.pop('title')}\n# {data.pop('source')}\n")
    out.file.write(tomli_w.dumps(_without_none(data)))
    out.file.flush()

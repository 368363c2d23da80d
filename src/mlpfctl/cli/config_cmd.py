"""``mlpfctl config show``: the resolved configuration and where each value came from."""

from __future__ import annotations

from typing import Annotated

import typer

from mlpfctl.cli.common import ConfigOpt, JsonOpt, SetOpt, load_config

app = typer.Typer(help="Inspect the layered configuration.", no_args_is_help=True)


@app.command("show")
def show(
    config: ConfigOpt = None,
    sets: SetOpt = None,
    sources: Annotated[bool, typer.Option("--sources", help="Show where each value came from.")] = False,
    docs: Annotated[bool, typer.Option("--docs", help="Show each key's documentation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the resolved configuration (defaults < file < MLPFCTL_* env < flags/--set)."""
    from mlpfctl.config.loader import schema_fields
    from mlpfctl.console import out, print_json

    resolved = load_config(config, sets)
    data = resolved.as_dict()
    fields = schema_fields()
    if as_json:
        if sources or docs:
            print_json(
                {
                    s: {
                        k: {
                            "value": v,
                            **({"source": resolved.sources[f"{s}.{k}"]} if sources else {}),
                            **({"doc": fields[f"{s}.{k}"].doc} if docs else {}),
                        }
                        for k, v in body.items()
                    }
                    for s, body in data.items()
                }
            )
        else:
            print_json(data)
        return

    from rich.table import Table

    table = Table(title="mlpfctl configuration", show_lines=False)
    table.add_column("key", style="cyan", no_wrap=True)
    table.add_column("value")
    if sources:
        table.add_column("source", style="magenta")
    if docs:
        table.add_column("doc", style="dim")
    for section, body in data.items():
        for name, value in body.items():
            key = f"{section}.{name}"
            row = [key, repr(value) if isinstance(value, str) else str(value)]
            if sources:
                row.append(resolved.sources[key])
            if docs:
                row.append(fields[key].doc)
            table.add_row(*row)
    out.print(table)

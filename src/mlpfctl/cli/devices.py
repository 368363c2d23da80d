"""``mlpfctl devices``: what each backend finds here, and which one ``--backend auto`` picks."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlpfctl.cli.common import JsonOpt


def devices(
    backend: Annotated[
        str, typer.Option("--backend", "-b", help="Show one backend (auto, cpu, cuda, rocm, hpu, xpu).")
    ] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Probe every device backend (CPU, CUDA, ROCm, Habana HPU, Intel XPU) and the host."""
    from mlpfctl.backends.hostinfo import host_summary
    from mlpfctl.backends.registry import PRIORITY, auto_choice, get_backend

    names = list(PRIORITY) if backend == "auto" else [get_backend(backend).name]
    results = {name: get_backend(name).probe() for name in names}
    all_results = results if backend == "auto" else {n: get_backend(n).probe() for n in PRIORITY}
    choice = auto_choice(all_results)
    import torch

    report: dict[str, Any] = {
        "auto": choice,
        "torch": torch.__version__,
        "host": host_summary(),
        "backends": {
            name: {
                **res.as_dict(),
                "dist_backend": get_backend(name).dist_backend,
                "autocast_dtype": _autocast_name(name),
            }
            for name, res in results.items()
        },
    }
    if as_json:
        from mlpfctl.console import print_json

        print_json(report)
        return
    _print_table(report)


def _fmt_bytes(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def _print_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    from mlpfctl.console import out

    table = Table(title="mlpfctl devices")
    for col in ("backend", "available", "devices", "dist", "amp", "versions / reason"):
        table.add_column(col)
    for name, info in report["backends"].items():
        devs = "\n".join(
            f"{d['index']}: {d['name']} ({_fmt_bytes(d['memory_bytes'])})" for d in info["devices"]
        )
        versions = ", ".join(
            f"{k.split('_')[0]} {v}"
            for k, v in (
                ("driver_version", info["driver_version"]),
                ("runtime_version", info["runtime_version"]),
            )
            if v
        )
        problem = info["details"].get("ipex_error")
        if problem and info["available"]:  # usable without IPEX, but the user installed it for a reason
            versions = f"{versions}; {problem}" if versions else problem
        mark = "[green]yes[/]" if info["available"] else "[red]no[/]"
        label = f"{name} [bold](auto)[/]" if name == report["auto"] else name
        table.add_row(
            label,
            mark,
            devs or "-",
            info["dist_backend"],
            info["autocast_dtype"],
            versions if info["available"] else (info["reason"] or ""),
        )
    out.print(table)
    host = report["host"]
    numa = ", ".join(f"node{n['node']}: {n['cpus']}" for n in host["numa_nodes"]) or "-"
    out.print(
        f"host: {host['hostname']}  cpu: {host['cpu_model']}  cores: {host['physical_cores']} physical / "
        f"{host['logical_cores']} logical ({host['usable_cores']} usable)  memory: "
        f"{_fmt_bytes(host['memory_bytes'])}  NUMA: {numa}"
    )
    out.print(f"torch {report['torch']}; --backend auto picks [bold]{report['auto']}[/]")


def _autocast_name(backend: str) -> str:
    """The descriptor's dtype; for the host CPU the effective one (it depends on the CPU's flags,
    and asking creates no device context)."""
    from mlpfctl.backends.registry import get_backend

    adapter = get_backend(backend)
    if backend != "cpu":
        return adapter.descriptor.autocast_dtype
    dtype = adapter.autocast_dtype()
    return "none" if dtype is None else str(dtype).removeprefix("torch.")

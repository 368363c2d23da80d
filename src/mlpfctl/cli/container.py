"""``mlpfctl container recipe``: an Apptainer definition file for a centre's PyTorch image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlpfctl.cli.common import ConfigOpt, DryRunOpt, JsonOpt, SetOpt, load_config

app = typer.Typer(help="Container images with mlpfctl for the centres (Apptainer/Singularity).")


@app.command("recipe")
def recipe(
    system: Annotated[
        str | None, typer.Option("--system", "-s", help="System profile (mlpfctl systems).")
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for mlpfctl.def and the wheel it installs.")
    ] = Path("container"),
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Base image instead of the centre's recommended one: docker://IMAGE or a .sif file.",
            show_default=False,
        ),
    ] = None,
    extras: Annotated[str, typer.Option("--extras", help="mlpfctl extras to add, e.g. postgres,onnx.")] = "",
    config: ConfigOpt = None,
    sets: SetOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write an Apptainer definition file: this mlpfctl on the centre's PyTorch image.

    The base is the image the centre recommends (LUMI: its AI container; JSC, Leonardo, Karolina,
    VEGA: NGC PyTorch); the checkout's wheel is installed without replacing the image's torch:

    mlpfctl container recipe --system jureca --out img && cd img && apptainer build mlpfctl.sif mlpfctl.def
    """
    import shutil

    from mlpfctl.atomic import atomic_write_text
    from mlpfctl.console import log, out, print_json
    from mlpfctl.systems import recipe as service
    from mlpfctl.systems.profiles import load_profile

    resolved = load_config(config, sets, {"submit.system": ("--system", system)})
    profile = load_profile(resolved.config.submit.system)
    chosen = tuple(e.strip() for e in extras.split(",") if e.strip())
    planned = service.plan(profile, base, chosen)
    definition = out_dir / service.DEFINITION_FILE
    if dry_run:
        if planned.wheel_name:
            log(f"would build {out_dir / planned.wheel_name} from {service.checkout_root()}")
        if as_json:
            print_json({"dry_run": True, "definition": str(definition), "text": planned.definition})
        else:
            out.file.write(planned.definition)
            out.file.flush()
        return
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel: Path | None = None
    try:
        if planned.wheel_name:
            wheel = service.build_wheel(out_dir)
            planned = service.plan(profile, base, chosen, wheel.name)
        atomic_write_text(definition, planned.definition)
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    log(f"wrote {definition}" + (f" and {wheel}" if wheel else "") + f" (base {planned.base})")
    log(f"build the image: cd {out_dir} && {planned.build_command}")
    if as_json:
        print_json(
            {
                "definition": str(definition),
                "wheel": str(wheel) if wheel else None,
                "base": planned.base,
                "build": planned.build_command,
            }
        )
    else:
        out.print(str(definition))

"""``mlpfctl container recipe``: definition files per centre (golden files), the checks, and the
recipe's install steps run for real in a Python that has no mlpfctl (Apptainer itself cannot be
installed here: see docs/submit.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from mlpfctl import __version__
from mlpfctl.cli.app import run
from mlpfctl.errors import UsageError
from mlpfctl.systems import recipe
from mlpfctl.systems.profiles import load_profile
from tests.unit.systems.golden import assert_golden

ENV = {"XDG_CONFIG_HOME": "/nonexistent-mlpfctl-test"}
GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "containers"
SYSTEMS = ["jureca", "juwels", "karolina", "leonardo", "lumi", "vega"]
WHEEL = "mlpfctl-0.1.0-py3-none-any.whl"


def golden_text(system: str) -> str:
    profile = load_profile(system, ENV)
    base = recipe.base_image(profile, None)
    return recipe.definition(profile, base, recipe.requirements(("postgres",)), WHEEL, "0.1.0", "")


@pytest.mark.parametrize("system", SYSTEMS)
def test_golden(system: str) -> None:
    assert_golden(GOLDEN / f"{system}.def", golden_text(system))


def test_bases_are_the_centres_recommended_images() -> None:
    lumi = golden_text("lumi")
    assert lumi.startswith("Bootstrap: localimage\nFrom: /appl/local/laifs/containers/")
    assert "module load systools && singularity build mlpfctl.sif mlpfctl.def" in lumi
    for system in ("jureca", "juwels", "karolina", "leonardo", "vega"):
        text = golden_text(system)
        assert text.startswith("Bootstrap: docker\nFrom: nvcr.io/nvidia/pytorch:"), system
    # the image's torch is never replaced; the extras asked for are added
    text = golden_text("jureca")
    assert "--no-deps /opt/mlpfctl/" + WHEEL in text and "'torch" not in text
    assert "'psycopg[binary]>=3.1'" in text and "'pytest" not in text
    assert 'test "$(python3 -m mlpfctl --version)" = "mlpfctl 0.1.0"' in text


def test_centres_without_apptainer_and_bad_bases() -> None:
    with pytest.raises(UsageError, match="names no recommended PyTorch image") as info:
        recipe.plan(load_profile("perlmutter", ENV), None, ())
    assert "--base" in (info.value.hint or "")
    with pytest.raises(UsageError, match=r"neither docker://IMAGE nor a \.sif file"):
        recipe.plan(load_profile("jureca", ENV), "nvcr.io/nvidia/pytorch:25.01-py3", ())
    with pytest.raises(UsageError, match="unknown extra"):
        recipe.plan(load_profile("jureca", ENV), None, ("gpu",))
    local = recipe.plan(load_profile("local", ENV), "/images/pytorch.sif", ())
    assert local.definition.startswith("Bootstrap: localimage\nFrom: /images/pytorch.sif\n")


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "img"
    assert run(["container", "recipe", "-s", "leonardo", "--out", str(out), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["text"].startswith("Bootstrap: docker") and not out.exists()
    assert run(["container", "recipe", "-s", "perlmutter", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: system 'perlmutter' names no") and "\nhint: " in err and not out.exists()


def _section(text: str, name: str) -> str:
    match = re.search(rf"^%{name}\n(.*?)(?=^%|\Z)", text, re.S | re.M)
    assert match is not None, name
    return match.group(1)


@pytest.mark.slow
def test_recipe_installs_this_checkout_into_a_python_without_mlpfctl(tmp_path: Path) -> None:
    """What Apptainer would do with the recipe, minus the container: build the wheel (the
    command's real output), copy it where %files says, run %post with /bin/sh -e in a fresh Python
    environment standing in for the image (it has pip, no mlpfctl and no torch), then %test."""
    out = tmp_path / "img"
    proc = subprocess.run(
        [sys.executable, "-m", "mlpfctl", "container", "recipe", "-s", "jureca", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0 and "hatchling" in proc.stderr:
        pytest.skip("hatchling is not reachable from this machine's package index")
    assert proc.returncode == 0, proc.stderr
    written = json.loads(proc.stdout)
    definition = Path(written["definition"]).read_text()
    wheel = Path(written["wheel"])
    assert wheel.name in _section(definition, "files")

    image = tmp_path / "image"  # stands in for /opt/mlpfctl and the image's Python
    venv.EnvBuilder(with_pip=True).create(image / "python")
    (image / "opt-mlpfctl").mkdir()
    (image / "opt-mlpfctl" / wheel.name).write_bytes(wheel.read_bytes())
    post = _section(definition, "post").replace(recipe.WHEEL_DIR, str(image / "opt-mlpfctl"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = f"{image / 'python' / 'bin'}{os.pathsep}{env['PATH']}"
    done = subprocess.run(["/bin/sh", "-ec", post], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (image / "opt-mlpfctl").exists()  # the wheel does not stay in the image
    test = subprocess.run(
        ["/bin/sh", "-ec", _section(definition, "test")], env=env, capture_output=True, text=True
    )
    assert test.returncode == 0, test.stderr
    version = subprocess.run(["mlpfctl", "--version"], env=env, capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"mlpfctl {__version__}"
    python = str(image / "python" / "bin" / "python")
    where = subprocess.run(
        [python, "-c", "import mlpfctl; print(mlpfctl.__file__)"], env=env, capture_output=True, text=True
    )
    assert where.stdout.startswith(str(image)), where.stdout  # the wheel's copy, not this checkout
    torch = subprocess.run([python, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert torch.returncode != 0  # the recipe never installs torch: the image brings its own

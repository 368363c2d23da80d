"""``mlpfctl container recipe``: an Apptainer/Singularity definition file that puts this mlpfctl
on a centre's recommended PyTorch image (LUMI's AI container, NVIDIA's NGC PyTorch elsewhere).

The image's own torch (built for the centre's GPUs and network) is never replaced: mlpfctl is
installed without dependencies, then only the dependencies the image lacks, torch excluded. From a
checkout the recipe ships a wheel of the working tree (the checkout's version, uncommitted changes
included); from an installed release it installs that release by version.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from mlpfctl import __version__
from mlpfctl.errors import RuntimeFailure, UsageError
from mlpfctl.systems.profiles import SystemProfile

DEFINITION_FILE = "mlpfctl.def"
IMAGE_FILE = "mlpfctl.sif"
WHEEL_DIR = "/opt/mlpfctl"  # where %files puts the wheel inside the image during the build
# the image provides these: its builds match the centre's GPUs, drivers and network
PROVIDED_BY_IMAGE = {"torch"}


@dataclass(frozen=True)
class Recipe:
    system: str
    base: str
    definition: str
    wheel_name: str | None  # the checkout's wheel (copied next to the definition), or None
    build_command: str


def checkout_root() -> Path | None:
    """The source checkout this mlpfctl runs from (an editable install), or None."""
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "mlpfctl"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def bootstrap(base: str) -> tuple[str, str]:
    """``Bootstrap:`` and ``From:`` for a base image: ``docker://...`` or a local ``.sif`` file."""
    if base.startswith("docker://"):
        return "docker", base.removeprefix("docker://")
    if base.startswith("localimage://"):
        return "localimage", base.removeprefix("localimage://")
    if base.startswith("/") or base.endswith(".sif"):
        return "localimage", base
    raise UsageError(
        f"base image {base!r} is neither docker://IMAGE nor a .sif file",
        "e.g. --base docker://nvcr.io/nvidia/pytorch:25.01-py3 or --base /path/to/pytorch.sif",
    )


def requirements(extras: tuple[str, ...]) -> list[str]:
    """mlpfctl's dependencies (and those of ``extras``) that the image must add, as pip specifiers
    with their environment markers; the image's torch stays."""
    try:
        requires = metadata.requires("mlpfctl") or []
    except metadata.PackageNotFoundError:
        raise RuntimeFailure(
            "mlpfctl's package metadata is missing", "reinstall it: pip install -e . (or the wheel)"
        ) from None
    known = set(metadata.metadata("mlpfctl").get_all("Provides-Extra") or [])
    unknown = sorted(set(extras) - known)
    if unknown:
        raise UsageError(f"unknown extra(s) {', '.join(unknown)}", f"choose from: {', '.join(sorted(known))}")
    chosen: list[str] = []
    for requirement in requires:
        spec, _, marker = (part.strip() for part in requirement.partition(";"))
        name = spec.split("[")[0].split("=")[0].split(">")[0].split("<")[0].split("!")[0].split("~")[0]
        if name.strip().lower() in PROVIDED_BY_IMAGE:
            continue
        if "extra ==" in marker:
            extra = marker.split("extra ==", 1)[1].strip().strip("'\"")
            if extra not in extras:
                continue
            marker = ""
        # double quotes inside the marker: the shell quotes the whole specifier with single ones
        chosen.append(f"{spec}; {marker.replace(chr(39), chr(34))}" if marker else spec)
    return chosen


def _git_label(root: Path | None) -> str:
    if root is None:
        return ""
    try:
        sha = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout.strip()
    except OSError:
        return ""
    return sha


def definition(
    profile: SystemProfile,
    base: str,
    requirements: list[str],
    wheel_name: str | None,
    version: str = __version__,
    git: str = "",
) -> str:
    """The definition file text (a pure function of its inputs: golden-file tested)."""
    kind, source = bootstrap(base)
    tool = profile.software.container_exec.split()[0]
    quoted = "".join(f" \\\n        {shlex.quote(r)}" for r in requirements)
    install = (
        f"python3 -m pip install --no-cache-dir --no-deps {WHEEL_DIR}/{wheel_name}"
        if wheel_name
        else f"python3 -m pip install --no-cache-dir --no-deps mlpfctl=={version}"
    )
    lines = [
        f"Bootstrap: {kind}",
        f"From: {source}",
        "",
        f"# mlpfctl {version}{f' ({git})' if git else ''} on the PyTorch image {profile.name} recommends.",
        f"# Written by `mlpfctl container recipe --system {profile.name}`; build it where {tool} runs:",
        f"#   {build_command(profile, DEFINITION_FILE, IMAGE_FILE)}",
        "# and run jobs in it (its own python runs mlpfctl, no host venv):",
        f"#   mlpfctl submit --system {profile.name} --set submit.container=$PWD/{IMAGE_FILE} -- train ...",
        "",
    ]
    if wheel_name:
        lines += ["%files", f"    {wheel_name} {WHEEL_DIR}/{wheel_name}", ""]
    lines += [
        "%post",
        "    set -eu",
        "    # Debian/Ubuntu-based images mark their Python as externally managed (PEP 668); this",
        "    # image is built for one program, so pip installs into it directly",
        "    export PIP_BREAK_SYSTEM_PACKAGES=1",
        "    # mlpfctl without dependencies, then what the image lacks: the image's torch stays",
        f"    {install}",
        f"    python3 -m pip install --no-cache-dir{quoted}",
    ]
    if wheel_name:
        lines.append(f"    rm -rf {WHEEL_DIR}")
    lines += [
        "",
        "%environment",
        "    # packages in the user's ~/.local (home is bound in) must not shadow the image's",
        "    export PYTHONNOUSERSITE=1",
        "",
        "%test",
        f'    test "$(python3 -m mlpfctl --version)" = "mlpfctl {version}"',
        "",
        "%labels",
        f"    org.mlpfctl.version {version}",
    ]
    if git:
        lines.append(f"    org.mlpfctl.git {git}")
    lines += [f"    org.mlpfctl.base {base}", f"    org.mlpfctl.system {profile.name}", ""]
    return "\n".join(lines)


def build_command(profile: SystemProfile, definition_file: str, image: str) -> str:
    template = profile.software.container_build or (
        f"{profile.software.container_exec.split()[0]} build {{image}} {{definition}}"
    )
    return template.format(image=image, definition=definition_file)


def base_image(profile: SystemProfile, base: str | None) -> str:
    if base:
        return base
    if profile.software.container_base:
        return profile.software.container_base
    raise UsageError(
        f"system '{profile.name}' names no recommended PyTorch image for Apptainer/Singularity "
        f"({profile.source.name} has no software.container_base)",
        "pass --base docker://IMAGE or --base /path/to/image.sif",
    )


def plan(
    profile: SystemProfile, base: str | None, extras: tuple[str, ...], wheel_name: str | None = None
) -> Recipe:
    """The recipe, without building or writing anything; from a checkout it ships ``wheel_name``
    (default: the name pip gives this version's pure-Python wheel)."""
    chosen = base_image(profile, base)
    root = checkout_root()
    wheel = (wheel_name or f"mlpfctl-{__version__}-py3-none-any.whl") if root is not None else None
    text = definition(profile, chosen, requirements(extras), wheel, __version__, _git_label(root))
    return Recipe(profile.name, chosen, text, wheel, build_command(profile, DEFINITION_FILE, IMAGE_FILE))


def build_wheel(out_dir: Path) -> Path:
    """A wheel of the checkout's working tree in ``out_dir`` (pip wheel, isolated build)."""
    root = checkout_root()
    assert root is not None
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out_dir), str(root)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    wheels = sorted(out_dir.glob(f"mlpfctl-{__version__}-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel was written"])[-1]
        raise RuntimeFailure(
            f"building the wheel of {root} failed: {last}",
            "pip needs hatchling from its package index (pip wheel --no-deps . shows the whole error)",
        )
    return wheels[-1]

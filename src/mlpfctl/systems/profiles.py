"""SLURM system profiles: one TOML file per machine, loaded into typed, validated objects.

Profiles are data. The shipped ones live in ``templates/systems/<name>.toml``; users add or
override profiles without touching code by dropping ``<name>.toml`` into
``$MLPFCTL_SYSTEMS_PATH`` (``os.pathsep``-separated directories) or
``~/.config/mlpfctl/systems/`` (``$XDG_CONFIG_HOME``). The first directory that has a name wins:
``MLPFCTL_SYSTEMS_PATH``, then the user directory, then the shipped profiles.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpfctl.compat import tomllib
from mlpfctl.errors import ConfigError, UsageError
from mlpfctl.resources import resource_dir
from mlpfctl.systems.slurmtime import format_time, parse_time

GPU_REQUESTS = ("gpus-per-node", "gres", "both")
LAUNCHERS = ("srun", "torchrun")
SYSTEMS_PATH_ENV = "MLPFCTL_SYSTEMS_PATH"


@dataclass(frozen=True)
class Partition:
    """One pool of nodes a job can ask for (a Slurm partition, or a QOS on one)."""

    name: str
    gpus_per_node: int
    cpus_per_node: int
    max_time_s: int | None  # None: no limit
    mem: str | None = None  # --mem for whole-node jobs, e.g. "480G"
    max_nodes: int | None = None
    dev: bool = False
    exclusive: bool = False
    qos: str | None = None
    # the value for --partition; differs from ``name`` where a QOS selects the pool ("" = none)
    slurm_partition: str | None = None
    # sub-node jobs on shared GPU partitions: CPU cores and memory that go with each GPU (billing)
    cpus_per_gpu: int | None = None
    mem_per_gpu: str | None = None
    # a GPU partition that bills GPUs whatever a job uses: a CPU-only job there is refused
    require_gpus: bool = False

    @property
    def sbatch_partition(self) -> str:
        return self.name if self.slurm_partition is None else self.slurm_partition


@dataclass(frozen=True)
class Software:
    module_purge: bool = False
    module_use: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    container: str | None = None
    container_exec: str = "singularity exec"
    setup: tuple[str, ...] = ()
    # modules for jobs in a container (None: ``modules``); a host Python/PyTorch module would put
    # the host's site-packages on PYTHONPATH inside the image
    container_modules: tuple[str, ...] | None = None
    # the image `mlpfctl container recipe` builds on: the centre's recommended PyTorch image
    # (docker://... or a local .sif path); "" when the centre runs no Apptainer/Singularity
    container_base: str = ""
    # how to build the recipe's image there ({image}, {definition}); default: "<exec tool> build"
    container_build: str = ""


@dataclass(frozen=True)
class SystemProfile:
    name: str
    title: str
    source: Path
    account_required: bool
    default_partition: str
    partitions: Mapping[str, Partition]
    gpu_request: str = "gpus-per-node"
    gpu_env: str = "CUDA_VISIBLE_DEVICES"
    launcher: str = "srun"
    master_addr_suffix: str = ""
    cpu_bind: str = ""
    constraint: str = ""
    account_example: str = ""
    storage_dir: str = ""
    discover: bool = False
    sbatch: tuple[str, ...] = ()
    srun: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    software: Software = field(default_factory=Software)
    node_local_cache: str = ""
    miopen_cache: bool = False
    # hardware threads per core when SLURM counts threads as CPUs: OpenMP gets one thread per core
    threads_per_core: int = 1
    # torchrun on the rendezvous node advertises MASTER_ADDR (PyTorch >= 2.5 needs it on JSC)
    rdzv_local_addr: bool = False

    def partition(self, name: str | None) -> Partition:
        key = name or self.default_partition
        if key in self.partitions:
            return self.partitions[key]
        raise UsageError(
            f"system '{self.name}' has no partition '{key}'",
            f"{did_you_mean(key, self.partitions)}use one of: {', '.join(self.partitions)} "
            f"(--partition NAME; limits: mlpfctl systems show {self.name})",
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "source": str(self.source),
            "account_required": self.account_required,
            "account_example": self.account_example,
            "default_partition": self.default_partition,
            "gpu_request": self.gpu_request,
            "gpu_env": self.gpu_env,
            "launcher": self.launcher,
            "master_addr_suffix": self.master_addr_suffix,
            "cpu_bind": self.cpu_bind,
            "constraint": self.constraint,
            "storage_dir": self.storage_dir,
            "discover": self.discover,
            "threads_per_core": self.threads_per_core,
            "rdzv_local_addr": self.rdzv_local_addr,
            "sbatch": list(self.sbatch),
            "srun": list(self.srun),
            "env": dict(self.env),
            "software": {
                "module_purge": self.software.module_purge,
                "module_use": list(self.software.module_use),
                "modules": list(self.software.modules),
                "container": self.software.container,
                "container_exec": self.software.container_exec,
                "setup": list(self.software.setup),
                "container_modules": (
                    None if self.software.container_modules is None else list(self.software.container_modules)
                ),
                "container_base": self.software.container_base,
                "container_build": self.software.container_build,
            },
            "cache": {"node_local": self.node_local_cache, "miopen": self.miopen_cache},
            "partitions": {
                p.name: {
                    "gpus_per_node": p.gpus_per_node,
                    "cpus_per_node": p.cpus_per_node,
                    "max_time": format_time(p.max_time_s),
                    "max_time_s": p.max_time_s,
                    "mem": p.mem,
                    "max_nodes": p.max_nodes,
                    "dev": p.dev,
                    "exclusive": p.exclusive,
                    "qos": p.qos,
                    "slurm_partition": p.sbatch_partition,
                    "cpus_per_gpu": p.cpus_per_gpu,
                    "mem_per_gpu": p.mem_per_gpu,
                    "require_gpus": p.require_gpus,
                }
                for p in self.partitions.values()
            },
        }


def did_you_mean(name: str, options: Mapping[str, Any] | Sequence[str]) -> str:
    """``"did you mean 'x'? "`` for the closest of ``options`` (case-insensitive), or ``""``."""
    by_folded = {str(option).lower(): str(option) for option in options}
    guess = difflib.get_close_matches(name.lower(), list(by_folded), n=1, cutoff=0.6)
    return f"did you mean '{by_folded[guess[0]]}'? " if guess else ""


def search_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """Profile directories, highest precedence first."""
    env = os.environ if env is None else env
    dirs = [Path(p).expanduser() for p in env.get(SYSTEMS_PATH_ENV, "").split(os.pathsep) if p]
    config_home = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    dirs.append(config_home / "mlpfctl" / "systems")
    dirs.append(resource_dir("templates") / "systems")
    return dirs


def profile_files(env: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Every known profile name and the file that defines it (earlier directories win)."""
    found: dict[str, Path] = {}
    for directory in search_dirs(env):
        if directory.is_dir():
            for path in sorted(directory.glob("*.toml")):
                found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def load_profile(name: str, env: Mapping[str, str] | None = None) -> SystemProfile:
    files = profile_files(env)
    if name not in files:
        # system names are lower case; a user may well type LUMI or Jureca
        folded = [known for known in files if known.lower() == name.lower()]
        if len(folded) == 1:
            name = folded[0]
    if name not in files:
        raise UsageError(
            f"unknown system '{name}'",
            f"{did_you_mean(name, files)}known systems: {', '.join(files)} (mlpfctl systems); "
            f"add your own as ~/.config/mlpfctl/systems/{name}.toml",
        )
    return read_profile(files[name])


def load_all(env: Mapping[str, str] | None = None) -> list[SystemProfile]:
    return [read_profile(path) for path in profile_files(env).values()]


def read_profile(path: Path) -> SystemProfile:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"system profile '{path}' is not valid TOML: {exc}", "fix the syntax") from None
    except OSError as exc:
        raise ConfigError(f"system profile '{path}' cannot be read: {exc.strerror}", "check it") from None
    return _Reader(path, data).profile()


_TOP_KEYS = {
    "title": str,
    "account_required": bool,
    "account_example": str,
    "default_partition": str,
    "gpu_request": str,
    "gpu_env": str,
    "launcher": str,
    "master_addr_suffix": str,
    "cpu_bind": str,
    "constraint": str,
    "storage_dir": str,
    "discover": bool,
    "threads_per_core": int,
    "rdzv_local_addr": bool,
    "sbatch": list,
    "srun": list,
    "env": dict,
    "software": dict,
    "cache": dict,
    "partitions": dict,
}
_REQUIRED = ("title", "account_required", "default_partition", "partitions")
_PARTITION_KEYS = {
    "gpus_per_node": int,
    "cpus_per_node": int,
    "max_time": str,
    "mem": str,
    "max_nodes": int,
    "dev": bool,
    "exclusive": bool,
    "qos": str,
    "slurm_partition": str,
    "cpus_per_gpu": int,
    "mem_per_gpu": str,
    "require_gpus": bool,
}
_SOFTWARE_KEYS = {
    "module_purge": bool,
    "module_use": list,
    "modules": list,
    "container": str,
    "container_exec": str,
    "setup": list,
    "container_modules": list,
    "container_base": str,
    "container_build": str,
}
_CACHE_KEYS = {"node_local": str, "miopen": bool}
_TYPE_NAMES = {str: "a string", bool: "true/false", int: "an integer", list: "a list", dict: "a table"}


class _Reader:
    """Validates one profile file; every error names the file, the key and the fix."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def error(self, what: str, hint: str) -> ConfigError:
        return ConfigError(f"system profile '{self.path}': {what}", hint)

    def table(self, data: Mapping[str, Any], schema: Mapping[str, type], where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            expected = schema.get(key)
            if expected is None:
                raise self.error(
                    f"unknown key '{where}{key}'",
                    f"{did_you_mean(key, list(schema))}allowed: {', '.join(schema)}",
                )
            ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
            if not ok:
                raise self.error(
                    f"'{where}{key}' = {value!r} is not {_TYPE_NAMES[expected]}",
                    "see templates/systems/lumi.toml for a complete example",
                )
            if expected is list and not all(isinstance(item, str) for item in value):
                raise self.error(f"'{where}{key}' must be a list of strings", f'e.g. {key} = ["..."]')
            out[key] = value
        return out

    def choice(self, key: str, value: str, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise self.error(
                f"'{key}' = {value!r} is not allowed", f"{did_you_mean(value, list(allowed))}use {allowed}"
            )
        return value

    def positive(self, key: str, value: int) -> int:
        if value < 1:
            raise self.error(f"'{key}' = {value} is out of range", "use a count >= 1")
        return value

    def partition(self, name: str, body: Any) -> Partition:
        if not isinstance(body, dict):
            raise self.error(f"'partitions.{name}' must be a table", f"write it as [partitions.{name}]")
        raw = self.table(body, _PARTITION_KEYS, f"partitions.{name}.")
        for key in ("gpus_per_node", "cpus_per_node", "max_time"):
            if key not in raw:
                raise self.error(
                    f"partition '{name}' lacks '{key}'", f"add {key} = ... to [partitions.{name}]"
                )
        for key in ("gpus_per_node", "cpus_per_node", "max_nodes", "cpus_per_gpu"):
            if key in raw and raw[key] < (0 if key == "gpus_per_node" else 1):
                raise self.error(
                    f"'partitions.{name}.{key}' = {raw[key]} is out of range", "use a count >= 1"
                )
        try:
            max_time = parse_time(raw["max_time"], allow_unlimited=True)
        except UsageError as exc:
            raise self.error(f"'partitions.{name}.max_time': {exc.message}", exc.hint or "") from None
        return Partition(
            name=name,
            gpus_per_node=raw["gpus_per_node"],
            cpus_per_node=raw["cpus_per_node"],
            max_time_s=max_time,
            mem=raw.get("mem"),
            max_nodes=raw.get("max_nodes"),
            dev=raw.get("dev", False),
            exclusive=raw.get("exclusive", False),
            qos=raw.get("qos"),
            slurm_partition=raw.get("slurm_partition"),
            cpus_per_gpu=raw.get("cpus_per_gpu"),
            mem_per_gpu=raw.get("mem_per_gpu"),
            require_gpus=raw.get("require_gpus", False),
        )

    def profile(self) -> SystemProfile:
        top = self.table(self.data, _TOP_KEYS, "")
        for key in _REQUIRED:
            if key not in top:
                raise self.error(f"missing key '{key}'", f"add {key} = ... (see templates/systems/lumi.toml)")
        partitions = {name: self.partition(name, body) for name, body in top["partitions"].items()}
        if not partitions:
            raise self.error("no partitions", "add at least one [partitions.NAME] table")
        default = top["default_partition"]
        if default not in partitions:
            raise self.error(
                f"default_partition '{default}' is not one of the partitions",
                f"{did_you_mean(default, partitions)}partitions: {', '.join(partitions)}",
            )
        env = top.get("env", {})
        for key, value in env.items():
            if not isinstance(value, str) or not key.replace("_", "a").isalnum() or key[0].isdigit():
                raise self.error(f"env '{key}' must be NAME = \"string\"", "quote the value")
        software = self.table(top.get("software", {}), _SOFTWARE_KEYS, "software.")
        cache = self.table(top.get("cache", {}), _CACHE_KEYS, "cache.")
        return SystemProfile(
            name=self.path.stem,
            title=top["title"],
            source=self.path,
            account_required=top["account_required"],
            default_partition=default,
            partitions=partitions,
            gpu_request=self.choice("gpu_request", top.get("gpu_request", "gpus-per-node"), GPU_REQUESTS),
            gpu_env=top.get("gpu_env", "CUDA_VISIBLE_DEVICES"),
            launcher=self.choice("launcher", top.get("launcher", "srun"), LAUNCHERS),
            master_addr_suffix=top.get("master_addr_suffix", ""),
            cpu_bind=top.get("cpu_bind", ""),
            constraint=top.get("constraint", ""),
            account_example=top.get("account_example", ""),
            storage_dir=top.get("storage_dir", ""),
            discover=top.get("discover", False),
            sbatch=tuple(top.get("sbatch", ())),
            srun=tuple(top.get("srun", ())),
            env=dict(env),
            software=Software(
                module_purge=software.get("module_purge", False),
                module_use=tuple(software.get("module_use", ())),
                modules=tuple(software.get("modules", ())),
                container=software.get("container"),
                container_exec=software.get("container_exec", "singularity exec"),
                setup=tuple(software.get("setup", ())),
                container_modules=(
                    tuple(software["container_modules"]) if "container_modules" in software else None
                ),
                container_base=software.get("container_base", ""),
                container_build=software.get("container_build", ""),
            ),
            node_local_cache=cache.get("node_local", ""),
            miopen_cache=cache.get("miopen", False),
            threads_per_core=self.positive("threads_per_core", top.get("threads_per_core", 1)),
            rdzv_local_addr=top.get("rdzv_local_addr", False),
        )

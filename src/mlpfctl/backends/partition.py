"""One device partition for every place that starts processes on a node.

HPO workers, scale-bench points and local launches all ask their backend adapter for the pool of
devices they may use (``BackendAdapter.device_pool``: the innermost visible-devices variable
already set, else the devices its probe counts) and hand out disjoint slices of it through that
one variable. A slice is the same string for every rank of one launch; each rank then takes the
device at its local-rank position (torch.cuda / torch.xpu indices, Gaudi's module assignment).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlpfctl.errors import ConfigError

if TYPE_CHECKING:
    from mlpfctl.backends.base import BackendAdapter

SHARE_ENV = "MLPFCTL_SHARE_DEVICES"


@dataclass(frozen=True)
class DevicePool:
    """The devices a group of processes may use, as the variable ``var`` spells them."""

    backend: str
    var: str | None  # None: host processes, nothing to pin
    ids: tuple[str, ...]
    source: str

    def slices(self, workers: int, per_worker: int, *, share: bool = False) -> list[dict[str, str]]:
        """Environment updates giving worker i the devices ``[i*per_worker, (i+1)*per_worker)``.

        With ``share`` (allowed only where several processes may use one device) workers beyond
        the pool reuse its slices round-robin; one worker's ranks never share a device.
        """
        if self.var is None:
            return [{} for _ in range(workers)]
        need = workers * per_worker
        have = len(self.ids)
        if per_worker > have or (need > have and not share):
            raise ConfigError(
                f"{workers} worker(s) x {per_worker} rank(s) need {need} {self.backend} device(s), "
                f"{have} available ({self.source})",
                f"use fewer workers or ranks, request more devices from SLURM, or set {SHARE_ENV}=1 "
                "to let workers (never the ranks of one run) share devices",
            )
        blocks = have // per_worker
        return [
            {self.var: ",".join(self.ids[(i % blocks) * per_worker : (i % blocks + 1) * per_worker])}
            for i in range(workers)
        ]

    def describe(self) -> dict[str, object]:
        return {"backend": self.backend, "variable": self.var, "devices": list(self.ids), "from": self.source}


def partition(
    adapter: BackendAdapter, workers: int, per_worker: int, env: Mapping[str, str]
) -> list[dict[str, str]]:
    """Per-worker environment updates from ``adapter``'s pool in ``env`` (see the module doc)."""
    share = env.get(SHARE_ENV, "") not in ("", "0")
    if share and not adapter.shares_devices:
        raise ConfigError(
            f"{SHARE_ENV} is set, but {adapter.name} devices cannot be shared by processes",
            "Intel Gaudi runs one process per device: use as many devices as workers x ranks",
        )
    return adapter.device_pool(env).slices(workers, per_worker, share=share)

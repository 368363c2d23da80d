"""One rank's data: the train/validation/test splits, their batch plans and loaders, and the
position in the training stream that a checkpoint records."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mlpfctl.config.schema import Config
from mlpfctl.data.plan import BatchPlan
from mlpfctl.errors import DataError

if TYPE_CHECKING:
    from mlpfctl.launch.process_group import Collectives


@dataclass(frozen=True)
class Position:
    """Where the training stream stands: the epoch and the batches of it already consumed."""

    epoch: int = 0
    batch: int = 0

    def advanced(self, batches: int = 1) -> Position:
        """The position after ``batches`` batches from this one have been trained on."""
        return Position(self.epoch, self.batch + batches)

    def rescaled(self, saved_world: int, world: int) -> Position:
        """Another rank count (RASDA, rescaled jobs): keep the number of global batches consumed."""
        if saved_world == world:
            return self
        return Position(self.epoch, self.batch * saved_world // world)


def rng_neutral(iterable: Iterable[Any]) -> Iterator[Any]:
    """Iterate ``iterable`` without touching the global torch RNG.

    A DataLoader draws a base seed from the global RNG when its iterator starts. A resumed run
    starts a fresh iterator mid-epoch where the uninterrupted run did not, so without this the
    dropout masks after a resume would differ from the uninterrupted run's.
    """
    iterator: Iterator[Any] | None = None
    while True:
        state = torch.get_rng_state()
        try:
            if iterator is None:
                iterator = iter(iterable)
            item = next(iterator)
        except StopIteration:
            return
        finally:
            torch.set_rng_state(state)
        yield item


class DataStreams:
    """Train/validation splits, their samplers and loaders for one rank."""

    def __init__(
        self,
        cfg: Config,
        dist: Collectives,
        *,
        pin_memory: bool = False,
        pad_buckets: tuple[int, ...] = (),
    ) -> None:
        """``pin_memory``: pinned host batches make the non-blocking copy to an accelerator really
        asynchronous; ``pad_buckets``: fixed batch widths for graph-compiling devices."""
        from mlpfctl.data.dataset import open_dataset, split_dataset

        self.cfg = cfg
        self.dist = dist
        self.pin_memory = pin_memory and dist.device.type != "cpu"
        self.pad_buckets = pad_buckets
        dataset = open_dataset(cfg.data.path, format=cfg.data.format, cache_bytes=cfg.data.cache_mb * 2**20)
        self.schema = dataset.schema
        self.train, self.valid, self.test = split_dataset(
            dataset, cfg.data.valid_fraction, cfg.data.test_fraction, cfg.run.seed
        )
        limit = cfg.data.max_train_events
        if limit is not None:
            if limit > len(self.train):
                raise DataError(
                    f"data.max_train_events={limit} exceeds the {len(self.train)} events of the training "
                    f"split of {cfg.data.path}",
                    "generate more events or lower data.max_train_events",
                )
            self.train = self.train.view(np.arange(limit))
        if len(self.train) == 0 or len(self.valid) == 0:
            raise DataError(
                f"dataset {cfg.data.path} has {len(self.train)} training and "
                f"{len(self.valid)} validation events",
                "use a larger dataset or change data.valid_fraction / data.test_fraction",
            )
        self.train_sampler = self._sampler(self.train, shuffle=cfg.train.shuffle, drop_last=True)

    def _sampler(self, dataset: Any, *, shuffle: bool, drop_last: bool) -> Any:
        from mlpfctl.data.batching import sampler_for_config

        return sampler_for_config(
            self.cfg,
            dataset,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            shuffle=shuffle,
            drop_last=drop_last,
        )

    def epoch_batches(self, epoch: int) -> Sequence[list[int]]:
        """This rank's batches of ``epoch``, trimmed to the count every rank has (DDP steps together)."""
        self.train_sampler.set_epoch(epoch)
        batches: BatchPlan = self.train_sampler.plan()
        count = self.dist.reduce_int(len(batches), "min")
        if count == 0:
            raise DataError(
                f"the training split ({len(self.train)} events) yields no full batch per rank",
                "lower train.batch_events / data.max_elements_per_batch or use more events",
            )
        return batches[:count]

    def training(self, start: Position) -> Iterator[tuple[list[Any], Position]]:
        """The batches of each optimiser step from ``start`` on, epoch after epoch: ``(its
        micro-batches, the position after it)``. A step takes ``train.grad_accum`` batches and never
        spans two epochs (an epoch's last step may take fewer), so a checkpoint's position is always
        a step boundary and a resumed run groups the batches as the uninterrupted one did."""
        accum = self.cfg.train.grad_accum
        pos = start
        while True:
            batches = self.epoch_batches(pos.epoch)
            if pos.batch >= len(batches):
                pos = Position(pos.epoch + 1, 0)
                continue
            group: list[Any] = []
            for batch in self.loader(self.train, batches[pos.batch :]):
                group.append(batch)
                if len(group) == accum or pos.batch + len(group) == len(batches):
                    pos = pos.advanced(len(group))
                    yield group, pos
                    group = []
            pos = Position(pos.epoch + 1, 0)

    def loader(self, dataset: Any, batches: Sequence[list[int]]) -> Iterator[Any]:
        from mlpfctl.data.collate import make_loader

        return rng_neutral(
            make_loader(
                dataset,
                batches,
                self.cfg.data.num_workers,
                pin_memory=self.pin_memory,
                pad_buckets=self.pad_buckets,
            )
        )

    def valid_batches(self, dataset: Any, max_events: int | None) -> Sequence[list[int]]:
        batches: BatchPlan = self._sampler(dataset, shuffle=False, drop_last=False).plan()
        if max_events is None:
            return batches
        per_rank = max(1, max_events // self.dist.world_size)
        seen = np.cumsum(batches.sizes())  # events up to and including each batch
        return batches[: int(np.searchsorted(seen, per_rank)) + 1]

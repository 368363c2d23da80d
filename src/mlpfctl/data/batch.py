"""The padded, masked tensor batch that models, losses and metrics consume."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class Batch:
    """A batch of B events padded to N elements (see ``mlpfctl.data.collate``).

    X:            [B, N, F] float32, zero rows for padding
    mask:         [B, N] bool, True for real elements
    target_cls:   [B, N] int64 class index (0 = no particle; padding is 0)
    target_charge:[B, N] float32 in {-1, 0, 1}
    target_p4:    [B, N, 5] float32 raw target (pt, eta, sin_phi, cos_phi, energy) in GeV
    cand_cls, cand_charge, cand_p4: the same for the rule-based baseline (ycand)
    event_index:  [B] int64 index of each event in its dataset
    """

    X: torch.Tensor
    mask: torch.Tensor
    target_cls: torch.Tensor
    target_charge: torch.Tensor
    target_p4: torch.Tensor
    cand_cls: torch.Tensor
    cand_charge: torch.Tensor
    cand_p4: torch.Tensor
    event_index: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)}
        )

    def pin_memory(self) -> Batch:
        """The batch in page-locked host memory (DataLoader ``pin_memory=True`` calls this), so
        that ``to(device, non_blocking=True)`` really overlaps the copy with compute."""
        return Batch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})

    @property
    def num_events(self) -> int:
        return int(self.X.shape[0])

    @property
    def num_elements(self) -> int:
        """Real (unpadded) elements in the batch."""
        return int(self.mask.sum().item())

    @property
    def padded_elements(self) -> int:
        return int(self.mask.numel())

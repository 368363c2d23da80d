"""Analytic FLOPs of an MLPF forward/backward pass, for model FLOPs utilisation (MFU).

Counted: every matrix multiply (2 FLOPs per multiply-add). Every ``nn.Linear`` acts once per
element (the readouts' single query projection is per event and left out: it is negligible);
attention adds ``QK^T`` and ``AV`` (2 x N^2 x heads x head_dim multiply-adds per layer, N keys per
readout query); GNN-LSH adds the in-bin distance and message products. Elementwise work
(activations, norms, softmax) is not counted, as usual for MFU. Training = 3 x forward
(backward costs two forward passes). Counts use the real elements of each event, never padding,
so padding shows up as lower MFU.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from mlpfctl.models.spec import ModelSpec


def linear_macs_per_element(model: nn.Module) -> int:
    return sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))


def forward_flops(model: nn.Module, spec: ModelSpec, num_elements: int) -> float:
    """Forward FLOPs for one event of ``num_elements`` elements."""
    n = float(num_elements)
    macs = n * linear_macs_per_element(model)
    inner = spec.num_heads * spec.head_dim
    if spec.type == "attention":
        macs += spec.num_layers * 2 * n * n * inner  # QK^T and AV in every self-attention layer
        macs += 2 * 2 * n * inner  # two task-query readouts: one query over n keys
    else:
        bin_n = min(spec.bin_size, max(num_elements, 1))
        macs += spec.num_layers * n * bin_n * (spec.distance_dim + spec.embed_dim)
    return 2.0 * macs


def train_flops(model: nn.Module, spec: ModelSpec, lengths: Iterable[int]) -> float:
    """Training FLOPs (forward + backward) for a batch of events with these element counts."""
    return 3.0 * sum(forward_flops(model, spec, n) for n in lengths)

"""Analytic FLOPs of an MLPF forward/backward pass, and model FLOPs utilisation (MFU).

Counted: every matrix multiply (2 FLOPs per multiply-add). An ``nn.Linear`` acts once per
element, except the per-event ones: a task-query readout's query and output projections see its
one learned query per event, whatever the event's size. Attention adds ``QK^T`` and ``AV``
(2 x N^2 x heads x head_dim multiply-adds per layer; N keys per readout query); GNN-LSH adds the
in-bin distance and message products. Elementwise work (activations, norms, softmax) is not
counted, as usual for MFU. Training = 3 x forward (backward costs two forward passes). Counts use
the real elements of each event, never padding, so padding shows up as lower MFU.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from mlpfctl.models.spec import ModelSpec


def _readouts(model: nn.Module) -> list[tuple[nn.Parameter, nn.Module]]:
    """(query, attention) of every task-query readout, recognised by shape, not class name: a
    module with a learned ``query`` parameter (its rows are per event) and an ``attn`` submodule."""
    out = []
    for module in model.modules():
        query, attn = getattr(module, "query", None), getattr(module, "attn", None)
        if isinstance(query, nn.Parameter) and isinstance(attn, nn.Module):
            out.append((query, attn))
    return out


def per_event_linears(model: nn.Module) -> set[nn.Linear]:
    """Linears applied once per event: the query and output projections of the readouts."""
    found: set[nn.Linear] = set()
    for _query, attn in _readouts(model):
        for name in ("q", "out"):
            layer = getattr(attn, name, None)
            if isinstance(layer, nn.Linear):
                found.add(layer)
    return found


def readout_queries(model: nn.Module) -> int:
    """Learned queries per event over all readouts (each attends over the event's N elements)."""
    return sum(int(query.shape[-2]) for query, _attn in _readouts(model))


def linear_macs(model: nn.Module) -> tuple[int, int]:
    """Multiply-adds of all ``nn.Linear`` layers: (per element, per event)."""
    per_event = per_event_linears(model)
    element = sum(
        m.in_features * m.out_features
        for m in model.modules()
        if isinstance(m, nn.Linear) and m not in per_event
    )
    event = sum(m.in_features * m.out_features for m in per_event)
    return element, event


def forward_flops(model: nn.Module, spec: ModelSpec, num_elements: int) -> float:
    """Forward FLOPs for one event of ``num_elements`` elements."""
    return _forward(spec, num_elements, *linear_macs(model), readout_queries(model))


def _forward(spec: ModelSpec, num_elements: int, element: int, event: int, queries: int) -> float:
    n = float(num_elements)
    macs = n * element + event
    inner = spec.num_heads * spec.head_dim
    if spec.type == "attention":
        macs += spec.num_layers * 2 * n * n * inner  # QK^T and AV in every self-attention layer
        macs += queries * 2 * n * inner  # each readout query over n keys
    else:
        bin_n = min(spec.bin_size, max(num_elements, 1))
        macs += spec.num_layers * n * bin_n * (spec.distance_dim + spec.embed_dim)
    return 2.0 * macs


def train_flops(model: nn.Module, spec: ModelSpec, lengths: Iterable[int]) -> float:
    """Training FLOPs (forward + backward) for a batch of events with these element counts."""
    element, event = linear_macs(model)
    queries = readout_queries(model)
    return 3.0 * sum(_forward(spec, n, element, event, queries) for n in lengths)


def mfu(flops: float, seconds: float, peak_per_device: float | None, devices: int) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s over the summed dense peak of ``devices``.

    None when the peak is unknown (no guess) or nothing was timed.
    """
    if not peak_per_device or seconds <= 0 or devices < 1:
        return None
    return flops / seconds / (peak_per_device * devices)

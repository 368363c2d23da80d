"""How the models execute, never what they compute: the attention kernel's precision.

Attention runs in fp32 on CPUs under autocast: PyTorch's CPU flash-attention backward in bf16 is
3-7x slower than in fp32 at head dimensions 8-64 (6x at the reference's 16), while the
projections around it gain ~8x from bf16 on AMX (measured, README "Training"). On GPUs SDPA keeps
the autocast dtype. ``set_attention_upcast`` switches a built model back to attention in the
autocast dtype (ablations, equivalence tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LOW_PRECISION = (torch.bfloat16, torch.float16)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None,
    dropout_p: float,
    upcast_on_cpu: bool = True,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention``; on a CPU with low-precision inputs, in fp32 (see above)."""
    if upcast_on_cpu and q.device.type == "cpu" and q.dtype in _LOW_PRECISION:
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), attn_mask=attn_mask, dropout_p=dropout_p
            )
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)


def set_attention_upcast(model: nn.Module, upcast: bool) -> nn.Module:
    """Whether attention runs in fp32 on CPUs under autocast (in place)."""
    from mlpfctl.models.attention import MultiHeadAttention

    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            module.upcast_on_cpu = upcast
    return model


def compile_model(model: nn.Module, backend: str = "inductor") -> nn.Module:
    """``torch.compile`` in place (``state_dict`` keys unchanged), for shapes that change every
    step: bucketed batches differ in events and elements. Inductor fuses the elementwise work
    (activations, LayerNorms, dtype casts) that dominates a bf16 CPU step once the matmuls are cheap."""
    model.compile(dynamic=True, backend=backend)
    return model

"""Scaled-dot-product-attention kernel choice for devices where a fused kernel is known wrong.

The models call ``F.scaled_dot_product_attention`` with a padding mask and let torch pick the
kernel. Where the fused memory-efficient kernel mishandles such masks (AOTriton on ROCm,
pytorch/pytorch#147460), the backend restricts the whole model to the math kernel instead.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


def version_below(version: str, floor: str) -> bool:
    """``"2.6.0+rocm6.2.4" < "2.7"`` on the numeric release parts."""

    def parts(text: str) -> tuple[int, ...]:
        match = re.match(r"\d+(\.\d+)*", text.strip())
        return tuple(int(p) for p in match.group(0).split(".")) if match else ()

    return parts(version) < parts(floor)


def restrict_to_math(module: nn.Module) -> nn.Module:
    """Run every SDPA call of ``module``'s forward (and so its backward) on the math kernel.

    In place: ``state_dict`` keys and DDP wrapping are unchanged.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    inner = module.forward

    @functools.wraps(inner)
    def forward(*args: Any, **kwargs: Any) -> Any:
        with sdpa_kernel([SDPBackend.MATH]):
            return inner(*args, **kwargs)

    module.forward = forward
    return module

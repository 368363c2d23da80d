"""Small building blocks shared by the MLPF models."""

from __future__ import annotations

import torch
from torch import nn

from mlpfctl.errors import ConfigError
from mlpfctl.models.spec import ModelSpec

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leakyrelu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(
            f"unknown activation {name!r}", f"available: {', '.join(sorted(_ACTIVATIONS))}"
        ) from None


def ffn(in_dim: int, width: int, out_dim: int, act: str, dropout: float) -> nn.Sequential:
    """The reference FFN: Linear -> activation -> LayerNorm -> Dropout -> Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, width),
        activation(act),
        nn.LayerNorm(width),
        nn.Dropout(dropout),
        nn.Linear(width, out_dim),
    )


class InputEncoding(nn.Module):
    """Embed each element; ``split`` gives every element type its own slice of one wide FFN."""

    def __init__(
        self, num_features: int, num_types: int, width: int, dim: int, act: str, dropout: float, mode: str
    ) -> None:
        super().__init__()
        self.num_types = num_types
        self.dim = dim
        self.mode = mode
        out = dim * num_types if mode == "split" else dim
        self.net = ffn(num_features, width, out, act, dropout)

    @classmethod
    def for_spec(cls, spec: ModelSpec) -> InputEncoding:
        """The encoding every model type builds from its spec (embedding width ``spec.embed_dim``)."""
        return cls(
            spec.num_features,
            spec.num_element_types,
            spec.width,
            spec.embed_dim,
            spec.activation,
            spec.dropout,
            spec.input_encoding,
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.net(x)
        if self.mode == "split":
            h = h.reshape(*x.shape[:-1], self.num_types, self.dim)
            # Type codes start at 1 (0 is padding); clamp so that padded rows index a valid slice.
            idx = (x[..., 0].long() - 1).clamp(0, self.num_types - 1)
            h = torch.gather(h, -2, idx[..., None, None].expand(*idx.shape, 1, self.dim)).squeeze(-2)
        out: torch.Tensor = h * mask[..., None].to(h.dtype)
        return out


class RegressionHeads(nn.Module):
    """pt and E: one output per element type (reference ``direct-elemtype-split``);
    eta, sin phi, cos phi: ``orig * a + b`` from the element's own value (reference ``linear``)."""

    def __init__(self, in_dim: int, width: int, num_types: int, act: str, dropout: float) -> None:
        super().__init__()
        self.num_types = num_types
        self.pt = ffn(in_dim, width, num_types, act, dropout)
        self.energy = ffn(in_dim, width, num_types, act, dropout)
        self.angles = nn.ModuleList(ffn(in_dim, width, 2, act, dropout) for _ in range(3))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        idx = (x[..., 0].long() - 1).clamp(0, self.num_types - 1)[..., None]
        pt = torch.gather(self.pt(h), -1, idx)
        energy = torch.gather(self.energy(h), -1, idx)
        angles = []
        for col, head in zip((2, 3, 4), self.angles, strict=True):
            ab = head(h)
            angles.append(x[..., col : col + 1] * (1.0 + ab[..., 0:1]) + ab[..., 1:2])
        return torch.cat([pt, *angles, energy], dim=-1)


class OutputHeads(nn.Module):
    """Binary particle/no-particle, particle class and the five regression targets."""

    def __init__(
        self, in_dim: int, width: int, num_classes: int, num_types: int, act: str, dropout: float
    ) -> None:
        super().__init__()
        self.binary = ffn(in_dim, width, 2, act, dropout)
        self.cls = ffn(in_dim, width, num_classes, act, dropout)
        self.reg = RegressionHeads(in_dim, width, num_types, act, dropout)

    def forward(
        self, h_id: torch.Tensor, h_reg: torch.Tensor, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.binary(h_id), self.cls(h_id), self.reg(h_reg, x)

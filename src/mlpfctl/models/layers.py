"""Small building blocks shared by the MLPF models."""

from __future__ import annotations

import torch
from torch import nn

from mlpfctl.errors import ConfigError
from mlpfctl.models.features import TRACK, ElementInputs, cosh
from mlpfctl.models.spec import ModelSpec
from mlpfctl.models.targets import X_E, X_PT

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
            spec.input_dim,
            spec.num_element_types,
            spec.width,
            spec.embed_dim,
            spec.activation,
            spec.dropout,
            spec.input_encoding,
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x``: the model inputs (column 0 the element type code, 1..num_types)."""
        h = self.net(x)
        if self.mode == "split":
            h = h.reshape(*x.shape[:-1], self.num_types, self.dim)
            h = (h * type_onehot(x, self.num_types)[..., None]).sum(dim=-2)
        out: torch.Tensor = h * mask[..., None].to(h.dtype)
        return out


def type_onehot(x: torch.Tensor, num_types: int) -> torch.Tensor:
    """[..., num_types] one-hot of the element type in column 0 (padding, type 0, is all zero)."""
    codes = torch.arange(1, num_types + 1, device=x.device, dtype=x.dtype)
    return (x[..., :1].round() == codes).to(x.dtype)


class PerTypeOutput(nn.Module):
    """One scalar FFN per element type (reference ``direct-elemtype-split``)."""

    def __init__(self, in_dim: int, width: int, num_types: int, act: str, dropout: float) -> None:
        super().__init__()
        self.nets = nn.ModuleList(ffn(in_dim, width, 1, act, dropout) for _ in range(num_types))

    def forward(self, h: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        out = torch.cat([net(h) for net in self.nets], dim=-1)
        return (out * onehot).sum(dim=-1)


def _zero_last(net: nn.Module) -> None:
    """Start a correction head at exactly zero (the element's own value)."""
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)


class RegressionHeads(nn.Module):
    """The five regression outputs: log(pt / pt_elem), eta, sin phi, cos phi, log(E / E_elem).

    ``reference`` (pyg-clic-v1): pt per element type; each angle ``orig * a + b``; energy
    ``log(|p| / E_elem) + relu(nn)`` from the (detached) predicted pt and eta, so E >= |p|.
    ``corrections``: every output is the element's own value plus a correction whose last layer
    starts at zero; a cluster linked to tracks starts from its reference energy (its excess over
    the tracks, ``ElementInputs.log_reference``); with ``keep_track`` a track's pT and direction
    are the measured ones and only its energy (mass hypothesis) is learned.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        args = (spec.head_dim_in, spec.width, spec.num_element_types, spec.activation, spec.dropout)
        self.num_types = spec.num_element_types
        self.mode = spec.outputs
        self.keep_track = spec.track_momentum == "keep"
        self.pt = PerTypeOutput(*args)
        self.angles = nn.ModuleList(
            ffn(spec.head_dim_in, spec.width, 2, spec.activation, spec.dropout) for _ in range(3)
        )
        self.energy = PerTypeOutput(*args)
        if self.mode == "corrections":
            for net in (*self.pt.nets, *self.energy.nets, *self.angles):
                _zero_last(net)

    def forward(self, h: torch.Tensor, x: torch.Tensor, log_reference: torch.Tensor) -> torch.Tensor:
        onehot = type_onehot(x, self.num_types)
        pt = self.pt(h, onehot)
        angles = []
        for col, head in zip((2, 3, 4), self.angles, strict=True):
            ab = head(h)
            orig = x[..., col]
            scale = ab[..., 0] + (1.0 if self.mode == "corrections" else 0.0)
            angles.append(orig * scale + ab[..., 1])
        if self.mode == "reference":
            pt_real = torch.exp(pt.detach()) * x[..., X_PT]
            p_real = pt_real * cosh(angles[0].detach())
            e_real = torch.nan_to_num(torch.log(p_real / x[..., X_E]), nan=0.0, posinf=0.0, neginf=0.0)
            energy = e_real * (x[..., 0] != 0).to(x.dtype) + torch.relu(self.energy(h, onehot))
            return torch.stack([pt, *angles, energy], dim=-1)
        pt = pt + log_reference
        energy = self.energy(h, onehot) + log_reference
        if self.keep_track:
            track = x[..., 0].round() == TRACK
            pt = torch.where(track, torch.zeros_like(pt), pt)
            angles = [torch.where(track, x[..., col], a) for col, a in zip((2, 3, 4), angles, strict=True)]
        return torch.stack([pt, *angles, energy], dim=-1)


class OutputHeads(nn.Module):
    """Binary particle/no-particle, particle class and the five regression targets."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        args = (spec.width, spec.activation, spec.dropout)
        self.binary = ffn(spec.head_dim_in, args[0], 2, args[1], args[2])
        self.cls = ffn(spec.head_dim_in, args[0], spec.num_classes, args[1], args[2])
        self.reg = RegressionHeads(spec)
        self.head_features = spec.head_features

    @classmethod
    def for_spec(cls, spec: ModelSpec) -> OutputHeads:
        """The heads every model type builds from its spec (inputs ``spec.head_dim_in`` wide)."""
        return cls(spec)

    def forward(
        self, h_id: torch.Tensor, h_reg: torch.Tensor, x: torch.Tensor, inputs: ElementInputs
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.head_features:
            h_id = torch.cat([h_id, inputs.values], dim=-1)
            h_reg = torch.cat([h_reg, inputs.values], dim=-1)
        # Unlike the reference, NaN/inf outputs are not zeroed: the training loop must see divergence.
        return self.binary(h_id), self.cls(h_id), self.reg(h_reg, x, inputs.log_reference)

"""The GNN-LSH MLPF variant (reference ``model.type = gnnlsh``, ``CombinedGraphLayer``).

Each layer embeds the elements into a learned distance space, hashes them into bins with a fixed
random rotation (locality-sensitive hashing), builds a Gaussian-kernel graph inside every bin
and passes one round of messages. Bins keep the cost linear in the number of elements. Binning
runs in fp32 as in the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlpfctl.models.features import ElementFeatures
from mlpfctl.models.layers import InputEncoding, OutputHeads
from mlpfctl.models.spec import ModelSpec


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
        return out


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, 2 * hidden)
        self.out = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.gate(x).chunk(2, dim=-1)
        out: torch.Tensor = self.out(self.dropout(F.silu(a) * b))
        return out


class CombinedGraphLayer(nn.Module):
    """LSH-binned message passing: x + message(RMSNorm(x)), then x + SwiGLU(RMSNorm(x))."""

    def __init__(self, dim: int, distance_dim: int, bin_size: int, dropout: float, seed: int) -> None:
        super().__init__()
        self.bin_size = bin_size
        self.norm1 = RMSNorm(dim)
        self.distance = nn.Linear(dim, distance_dim)
        self.message = nn.Linear(dim, dim)
        self.norm2 = RMSNorm(dim)
        self.ffn = SwiGLU(dim, dim, dropout)
        gen = torch.Generator().manual_seed(seed)
        # Enough hash buckets that an event of ~bin_size x 8 elements spreads over its bins.
        self.rotation: torch.Tensor
        self.register_buffer("rotation", torch.randn(distance_dim, 8, generator=gen), persistent=True)

    def _bin_order(self, dist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        proj = dist.float() @ self.rotation.float()
        code = torch.cat([proj, -proj], dim=-1).argmax(dim=-1).float()
        # Padding sorts last; the element index breaks ties, so the order is stable (and exportable).
        code = torch.where(mask, code, torch.full_like(code, 2.0 * int(self.rotation.shape[1])))
        n = code.shape[-1]
        index = torch.arange(n, device=code.device, dtype=torch.float32)
        return torch.argsort(code * n + index, dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.norm1(x)
        dist = self.distance(h)
        order = self._bin_order(dist, mask)
        pad = (-n) % self.bin_size
        nb = (n + pad) // self.bin_size

        def gather(t: torch.Tensor) -> torch.Tensor:
            t = torch.gather(t, 1, order[..., None].expand(-1, -1, t.shape[-1]))
            return F.pad(t, (0, 0, 0, pad)).view(b, nb, self.bin_size, t.shape[-1])

        hd = gather(dist).float()
        hm = gather(self.message(h))
        m = F.pad(torch.gather(mask, 1, order), (0, pad)).view(b, nb, self.bin_size)
        adj = torch.exp(-torch.cdist(hd, hd).pow(2) / hd.shape[-1])
        adj = adj * (m[..., :, None] & m[..., None, :]).to(adj.dtype)
        adj = adj / adj.sum(-1, keepdim=True).clamp_min(1e-6)
        msg = (adj.to(hm.dtype) @ hm).view(b, nb * self.bin_size, d)[:, :n]
        # Scatter the binned messages back to the original element order.
        msg = torch.zeros_like(msg).scatter(1, order[..., None].expand(-1, -1, d), msg)
        x = x + msg
        x = x + self.ffn(self.norm2(x))
        return x * mask[..., None].to(x.dtype)


class GNNLSHMLPF(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        d = spec.embed_dim
        self.features = ElementFeatures(spec)
        self.encode = InputEncoding.for_spec(spec)
        self.layers = nn.ModuleList(
            CombinedGraphLayer(d, spec.distance_dim, spec.bin_size, spec.dropout, seed=i)
            for i in range(spec.num_layers)
        )
        self.norm = RMSNorm(d)
        self.heads = OutputHeads.for_spec(spec)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs = self.features(x, mask)
        h = self.encode(inputs.values, mask)
        for layer in self.layers:
            h = layer(h, mask)
        h = self.norm(h)
        outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = self.heads(h, h, x, inputs)
        return outputs

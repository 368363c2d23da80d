"""The attention-based MLPF (reference ``model.type = attention``, mlpf-reference.md §6).

Unlike the reference, padded keys are masked out of every softmax through
``scaled_dot_product_attention``'s ``attn_mask`` (the reference runs without a mask, so batch
composition changes its numerics, §5); ``attention_mask = false`` restores that behaviour for
comparison.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlpfctl.models.layers import InputEncoding, OutputHeads, activation
from mlpfctl.models.spec import ModelSpec


def key_padding_bias(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A boolean ``[B, 1, 1, N]`` attention mask (True = may attend) from the element mask."""
    if mask is None:
        return None
    # An event without elements would give an all-masked row and NaN: let it see its first slot.
    empty = ~mask.any(dim=1)
    mask = torch.cat([mask[:, :1] | empty[:, None], mask[:, 1:]], dim=1)
    return mask[:, None, None, :]


class MultiHeadAttention(nn.Module):
    """Multi-head attention on SDPA; ``query`` may be shorter than ``key`` (task-query readouts)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.q = nn.Linear(dim, inner)
        self.kv = nn.Linear(dim, 2 * inner)
        self.out = nn.Linear(inner, dim)
        self.dropout = dropout

    def forward(self, query: torch.Tensor, key: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        b, nq, _ = query.shape
        nk = key.shape[1]
        q = self.q(query).view(b, nq, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(key).view(b, nk, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        out: torch.Tensor = self.out(y.transpose(1, 2).reshape(b, nq, self.num_heads * self.head_dim))
        return out


class PreLnSelfAttentionLayer(nn.Module):
    """x + MHA(LN(x)), then x + FFN(LN(x)); padded rows stay zero."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, width: int, act: str, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, head_dim, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, width), activation(act), nn.Dropout(dropout), nn.Linear(width, dim)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, attn_mask)
        x = x + self.ffn(self.norm2(x))
        return x * mask[..., None].to(x.dtype)


class TaskQueryReadout(nn.Module):
    """A learnable query attends over all elements; the event summary is added to every element."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, width: int, act: str, dropout: float) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.norm = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, head_dim, dropout)
        self.ffn = nn.Sequential(
            nn.Linear(dim, width), activation(act), nn.Dropout(dropout), nn.Linear(width, dim)
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norm(x)
        summary = self.attn(self.query.expand(x.shape[0], 1, -1), h, attn_mask)
        out: torch.Tensor = x + self.ffn(h + summary)
        return out


class AttentionMLPF(nn.Module):
    """Element embedding, stacked pre-norm self-attention, task-query readouts, output heads."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        d = spec.embed_dim
        self.encode = InputEncoding.for_spec(spec)
        self.layers = nn.ModuleList(
            PreLnSelfAttentionLayer(
                d, spec.num_heads, spec.head_dim, spec.width, spec.activation, spec.dropout
            )
            for _ in range(spec.num_layers)
        )
        self.readout_id = TaskQueryReadout(
            d, spec.num_heads, spec.head_dim, spec.width, spec.activation, spec.dropout
        )
        self.readout_reg = TaskQueryReadout(
            d, spec.num_heads, spec.head_dim, spec.width, spec.activation, spec.dropout
        )
        self.heads = OutputHeads(
            d + spec.num_features,
            spec.width,
            spec.num_classes,
            spec.num_element_types,
            spec.activation,
            spec.dropout,
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        attn_mask = key_padding_bias(mask) if self.spec.attention_mask else None
        h = self.encode(x, mask)
        for layer in self.layers:
            h = layer(h, mask, attn_mask)
        h_id = torch.cat([self.readout_id(h, attn_mask), x], dim=-1)
        h_reg = torch.cat([self.readout_reg(h, attn_mask), x], dim=-1)
        binary, cls, reg = self.heads(h_id, h_reg, x)
        return binary, cls, reg

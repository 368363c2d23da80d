"""The attention-based MLPF, layer by layer the reference ``pyg-clic-v1`` (mlpf-reference.md §6).

Structure (the reference's, checked against jpata/particleflow ``mlpf/model/mlpf.py`` at 7e8a710):

1. element features -> ``ElementFeatures`` (identity for the reference preset; scaling and link
   features otherwise) -> split input encoding (Linear, act, LayerNorm, Dropout, Linear);
2. ``num_layers`` pre-LayerNorm self-attention blocks: x + MHA(LN(x)), then x + FFN(LN(x)) with
   FFN = Linear, act, Linear, act; the *last* block uses the initial embedding as its queries;
3. two task-query readouts (classification, regression): a learned query (LayerNorm'd) attends
   over the LayerNorm'd elements, the summary is added to every element, then x + FFN(LN(x));
4. a LayerNorm per task, then the output heads (``OutputHeads.for_spec``).

Differences from the reference (docs/training.md): padded keys are masked out of the backbone's
softmax (``attention_mask``; the reference masks only the readouts, as ``attention_mask=false``
does here); SDPA's default kernel choice instead of forcing FLASH, in fp32 on CPUs even under
bf16 autocast (``mlpfctl.models.execution``). Execution only: self-attention takes q, k and v
from one matmul, and the queries are not masked (padded rows are zeroed at the end of the block).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlpfctl.models.execution import attention
from mlpfctl.models.features import ElementFeatures
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
        self.upcast_on_cpu = True  # execution only (mlpfctl.models.execution.attention)

    def forward(self, query: torch.Tensor, key: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        b, nq, _ = query.shape
        nk = key.shape[1]
        if query is key:  # self-attention: q, k and v from one matmul (the same parameters)
            weight = torch.cat([self.q.weight, self.kv.weight])
            bias = torch.cat([self.q.bias, self.kv.bias])
            qkv = F.linear(query, weight, bias).view(b, nq, 3, self.num_heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
        else:
            q = self.q(query).view(b, nq, self.num_heads, self.head_dim).transpose(1, 2)
            k, v = self.kv(key).view(b, nk, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = attention(q, k, v, attn_mask, self.dropout if self.training else 0.0, self.upcast_on_cpu)
        out: torch.Tensor = self.out(y.transpose(1, 2).reshape(b, nq, self.num_heads * self.head_dim))
        return out


def _ffn_block(dim: int, width: int, act: str) -> nn.Sequential:
    """The reference's backbone and readout FFN: Linear, act, Linear, act."""
    return nn.Sequential(nn.Linear(dim, width), activation(act), nn.Linear(width, dim), activation(act))


class PreLnSelfAttentionLayer(nn.Module):
    """x + MHA(q, LN(x)), then x + FFN(LN(x)); q = LN(x), or the initial embedding in the last block."""

    def __init__(self, spec: ModelSpec, *, elems_as_queries: bool) -> None:
        super().__init__()
        d = spec.embed_dim
        self.norm0 = nn.LayerNorm(d)
        self.attn = MultiHeadAttention(d, spec.num_heads, spec.head_dim, spec.dropout)
        self.norm1 = nn.LayerNorm(d)
        self.ffn = _ffn_block(d, spec.width, spec.activation)
        self.dropout = nn.Dropout(spec.dropout)
        self.elems_as_queries = elems_as_queries

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, attn_mask: torch.Tensor | None, initial: torch.Tensor
    ) -> torch.Tensor:
        keep = mask[..., None].to(x.dtype)
        h = self.norm0(x)
        # The reference masks the queries; here padded query rows are left as they are: each row
        # only makes its own output, which `x * keep` zeroes below (value and gradient), so the
        # result is the same without a masking pass, and self-attention gets one q/k/v matmul.
        # (``initial`` is already zero at padded rows.)
        q = initial if self.elems_as_queries else h
        x = x + self.attn(q, h, attn_mask)
        x = x + self.dropout(self.ffn(self.norm1(x)))
        return x * keep


class TaskQueryReadout(nn.Module):
    """A learned query attends over all elements; the summary is added to every element, then an FFN."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        d = spec.embed_dim
        self.query = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.query_norm = nn.LayerNorm(d)
        self.key_norm = nn.LayerNorm(d)
        self.post_norm = nn.LayerNorm(d)
        self.attn = MultiHeadAttention(d, spec.num_heads, spec.head_dim, spec.dropout)
        self.ffn = _ffn_block(d, spec.width, spec.activation)
        self.dropout = nn.Dropout(spec.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        q = self.query_norm(self.query.expand(x.shape[0], 1, -1))
        x = x + self.attn(q, self.key_norm(x), attn_mask)
        x = x + self.dropout(self.ffn(self.post_norm(x)))
        out: torch.Tensor = x * mask[..., None].to(x.dtype)
        return out


class AttentionMLPF(nn.Module):
    """Element features, embedding, stacked pre-norm self-attention, task-query readouts, heads."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        d = spec.embed_dim
        self.features = ElementFeatures(spec)
        self.encode = InputEncoding.for_spec(spec)
        self.layers = nn.ModuleList(
            PreLnSelfAttentionLayer(spec, elems_as_queries=i == spec.num_layers - 1)
            for i in range(spec.num_layers)
        )
        self.readout_id = TaskQueryReadout(spec)
        self.readout_reg = TaskQueryReadout(spec)
        self.norm_id = nn.LayerNorm(d)
        self.norm_reg = nn.LayerNorm(d)
        self.heads = OutputHeads.for_spec(spec)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        readout_mask = key_padding_bias(mask)
        attn_mask = readout_mask if self.spec.attention_mask else None
        inputs = self.features(x, mask)
        initial = self.encode(inputs.values, mask)
        h = initial
        for layer in self.layers:
            h = layer(h, mask, attn_mask, initial)
        h_id = self.norm_id(self.readout_id(h, mask, readout_mask))
        h_reg = self.norm_reg(self.readout_reg(h, mask, readout_mask))
        outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = self.heads(h_id, h_reg, x, inputs)
        return outputs

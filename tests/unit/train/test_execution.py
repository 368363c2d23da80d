"""Execution choices of the models (mlpfctl.models.execution, the fused q/k/v projection): they
change how the model runs, never what it computes."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

from mlpfctl.config.schema import ModelSection
from mlpfctl.models import execution
from mlpfctl.models.attention import AttentionMLPF, PreLnSelfAttentionLayer
from mlpfctl.models.registry import build_model
from mlpfctl.models.spec import resolve_spec


def clic_model(seed: int = 0, **overrides: object) -> AttentionMLPF:
    """The reference clic preset unless ``preset`` says otherwise."""
    torch.manual_seed(seed)
    section = ModelSection(**overrides)  # type: ignore[arg-type]
    model = build_model(resolve_spec(section, num_features=17, num_classes=6, num_element_types=2))
    assert isinstance(model, AttentionMLPF)
    return model


def padded_events(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three events of 40, 31 and 17 elements, zero-padded to 40."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 40, 17, generator=gen)
    x[..., 0] = torch.randint(1, 3, (3, 40), generator=gen).float()
    x[..., 1] = x[..., 1].abs() + 0.1
    x[..., 5] = x[..., 5].abs() + 0.1
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[1, 31:] = False
    mask[2, 17:] = False
    return x * mask[..., None], mask


def _masked_query_forward(
    self: PreLnSelfAttentionLayer,
    x: torch.Tensor,
    mask: torch.Tensor,
    attn_mask: torch.Tensor | None,
    initial: torch.Tensor,
) -> torch.Tensor:
    """The reference's formulation: queries masked, q and k/v from separate projections."""
    keep = mask[..., None].to(x.dtype)
    h = self.norm0(x)
    q = initial * keep if self.elems_as_queries else h * keep
    x = x + self.attn(q, h.clone(), attn_mask)  # a copy, so that query is not key
    x = x + self.dropout(self.ffn(self.norm1(x)))
    return x * keep


def _outputs_and_grads(model: AttentionMLPF) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    x, mask = padded_events()
    outputs = model(x, mask)
    sum(o.float().square().sum() for o in outputs).backward()  # type: ignore[union-attr]
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return [o.detach() for o in outputs], grads


@pytest.mark.parametrize("attention_mask", [True, False])
def test_unmasked_queries_and_one_qkv_matmul_compute_the_reference_formulation(attention_mask: bool) -> None:
    """Padded query rows only make outputs that the layer zeroes: values and every gradient are
    those of masked queries with separate q and k/v projections."""
    fast = clic_model(preset="small", attention_mask=attention_mask)
    plain = clic_model(preset="small", attention_mask=attention_mask)
    for layer in plain.layers:
        layer.forward = types.MethodType(_masked_query_forward, layer)  # type: ignore[method-assign]
    out_fast, grad_fast = _outputs_and_grads(fast)
    out_plain, grad_plain = _outputs_and_grads(plain)
    for a, b in zip(out_fast, out_plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert grad_fast.keys() == grad_plain.keys() and len(grad_fast) > 50
    for name, grad in grad_fast.items():
        torch.testing.assert_close(grad, grad_plain[name], atol=1e-5, rtol=1e-4, msg=name)


def test_attention_runs_in_fp32_on_cpus_under_autocast() -> None:
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 4, 9, 16, generator=gen).bfloat16() for _ in range(3))
    mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 6:] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        upcast = execution.attention(q, k, v, mask, 0.0)
        native = execution.attention(q, k, v, mask, 0.0, upcast_on_cpu=False)
    assert upcast.dtype == torch.float32 and native.dtype == torch.bfloat16
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    torch.testing.assert_close(upcast, exact)
    assert (native.float() - exact).abs().max() > 0  # bf16 arithmetic: visibly another result
    torch.testing.assert_close(native.float(), exact, atol=3e-2, rtol=3e-2)


def test_fp32_inputs_take_the_plain_kernel() -> None:
    q = torch.randn(1, 2, 5, 8)
    torch.testing.assert_close(
        execution.attention(q, q, q, None, 0.0), F.scaled_dot_product_attention(q, q, q)
    )


def test_set_attention_upcast_switches_every_attention_of_a_model() -> None:
    model = clic_model(preset="small")
    x, mask = padded_events()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        upcast = model(x, mask)
        execution.set_attention_upcast(model, False)
        native = model(x, mask)
    flags = [m.upcast_on_cpu for m in model.modules() if hasattr(m, "upcast_on_cpu")]
    assert len(flags) == 4 and not any(flags)  # 2 backbone layers, 2 readouts
    diff = max((a.float() - b.float()).abs().max().item() for a, b in zip(upcast, native, strict=True))
    assert 0 < diff < 0.5


def test_bf16_autocast_follows_fp32_on_the_clic_model() -> None:
    """The CPU default (bf16 autocast, attention in fp32) stays close to fp32: the class logits
    agree to bf16 precision and the predicted classes almost everywhere."""
    model = clic_model().eval()
    x, mask = padded_events()
    with torch.no_grad():
        full = model(x, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x, mask)
    for a, b in zip(full, half, strict=True):
        torch.testing.assert_close(b.float()[mask], a[mask], atol=0.1, rtol=0.05)
    agree = (full[1].argmax(-1) == half[1].argmax(-1))[mask].float().mean()
    assert agree > 0.95


@pytest.mark.slow
def test_compiled_model_keeps_its_state_dict_and_outputs_across_shapes() -> None:
    """Dynamo traces the whole model with dynamic shapes (the eager backend: the trace, not
    Inductor's code generation, which takes minutes here); checkpoints keep their keys."""
    model = clic_model(preset="small").eval()
    keys = list(model.state_dict())
    x, mask = padded_events()
    with torch.no_grad():
        expected = [model(x, mask), model(x[:2, :31], mask[:2, :31])]
        execution.compile_model(model, backend="eager")
        got = [model(x, mask), model(x[:2, :31], mask[:2, :31])]
    assert list(model.state_dict()) == keys
    for outs, refs in zip(got, expected, strict=True):
        for a, b in zip(outs, refs, strict=True):
            torch.testing.assert_close(a, b)

"""QLRLinear: the forward computes x (Q + L R)ᵀ + b, trains L and R only, and round-trips its state."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from a2d_guard.compress.qlr_linear import QLRLinear
from a2d_guard.compress.quantizer import quantize_rtn


def _layer(bits=3, rank=4, bias=True, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 32, generator=g, dtype=torch.float64)
    q = quantize_rtn(w, bits, 16)
    left, right = torch.randn(24, rank, generator=g), torch.randn(rank, 32, generator=g)
    b = torch.randn(24, generator=g) if bias else None
    return QLRLinear.from_parts(q, left, right, b, dtype), q, left, right, b


def test_forward_matches_the_dense_reconstruction():
    layer, q, left, right, b = _layer()
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    dense = q.dequantize(torch.float64) + left.double() @ right.double()
    assert torch.allclose(layer(x), F.linear(x, dense, b.double()), atol=1e-10)
    assert torch.equal(layer.codes(), q.codes)
    assert layer.qweight.numel() == 24 * 32 * 3 // 8  # packed: 3 bits per code


def test_rank_zero_and_no_bias():
    layer, q, *_ = _layer(rank=0, bias=False)
    x = torch.randn(3, 32, dtype=torch.float64)
    assert torch.allclose(layer(x), x @ q.dequantize(torch.float64).T, atol=1e-10)


def test_gradients_reach_the_low_rank_factors_not_q():
    layer, *_ = _layer(dtype=torch.float32)
    x = torch.randn(4, 32, requires_grad=True)
    layer(x).square().sum().backward()
    assert layer.L.grad is not None and layer.L.grad.abs().sum() > 0
    assert layer.R.grad is not None and layer.R.grad.abs().sum() > 0
    assert x.grad is not None
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {"L", "R", "bias"}
    assert {n for n, _ in layer.named_buffers()} == {"qweight", "scales", "offsets"}


def test_state_survives_safetensors(tmp_path):
    layer, *_ = _layer(dtype=torch.float32)
    save_file({k: v.contiguous() for k, v in layer.state_dict().items()}, str(tmp_path / "l.safetensors"))
    fresh = QLRLinear(32, 24, bits=3, group_size=16, rank=4, bias=True)
    fresh.load_state_dict(load_file(str(tmp_path / "l.safetensors")))
    x = torch.randn(3, 32)
    assert torch.equal(fresh(x), layer(x))


def test_gradients_equal_those_of_the_dense_layer():
    """The custom backward (Q re-decoded in tiles) gives autograd's gradients of x (Q + L R)ᵀ + b."""
    layer, q, left, right, b = _layer(dtype=torch.float64)
    x = torch.randn(2, 5, 32, dtype=torch.float64, requires_grad=True)
    layer(x).sin().sum().backward()
    xd = x.detach().clone().requires_grad_()
    ld, rd = left.double().requires_grad_(), right.double().requires_grad_()
    bd = b.double().requires_grad_()
    F.linear(xd, q.dequantize(torch.float64) + ld @ rd, bd).sin().sum().backward()
    for got, want in ((x.grad, xd.grad), (layer.L.grad, ld.grad), (layer.R.grad, rd.grad), (layer.bias.grad, bd.grad)):
        assert torch.allclose(got, want, atol=1e-10)


def test_training_saves_no_dense_weight_for_backward():
    """Nothing of shape [out, in] is kept for the backward pass (plain torch ops would keep Q)."""
    layer, *_ = _layer(dtype=torch.float32)
    layer.L.requires_grad_(False)
    layer.R.requires_grad_(False)  # frozen factors, as under LoRA: only the input needs a gradient
    shapes = []
    x = torch.randn(7, 32, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: shapes.append(tuple(t.shape)) or t, lambda t: t):
        y = layer(x)
    y.sum().backward()
    assert (24, 32) not in shapes and shapes  # x [7, 32] and the factors only
    assert x.grad is not None and layer.L.grad is None


def test_no_grad_forward_builds_no_graph():
    layer, *_ = _layer(dtype=torch.float32)
    with torch.no_grad():
        y = layer(torch.randn(3, 32))
    assert y.grad_fn is None


def test_wrong_input_width_names_the_width():
    layer, *_ = _layer(dtype=torch.float32)
    with pytest.raises(ValueError, match="width 32"):
        layer(torch.randn(3, 31))


def _lr4_layer(bits=3, rank=16, dtype=torch.float32):
    from a2d_guard.compress.quantizer import auto_group_size

    g = torch.Generator().manual_seed(1)
    q = quantize_rtn(torch.randn(24, 64, generator=g), bits, 32)
    left = quantize_rtn(torch.randn(24, rank, generator=g), 4, auto_group_size(rank))
    right = quantize_rtn(torch.randn(rank, 64, generator=g), 4, auto_group_size(64))
    return QLRLinear.from_parts(q, left, right, None, dtype), q, left, right


def test_lr_bits_4_stores_packed_factors_and_computes_q_plus_lr():
    layer, q, left, right = _lr4_layer()
    assert layer.lr_bits == 4 and layer.L is None and layer.R is None
    assert not list(layer.parameters())  # nothing trainable: Q and both factors are codes
    assert layer.L_qweight.shape == (24, 16 * 4 // 8) and layer.R_qweight.shape == (16, 64 * 4 // 8)
    x = torch.randn(5, 64, dtype=torch.float64)
    dense = q.dequantize(torch.float64) + left.dequantize(torch.float64) @ right.dequantize(torch.float64)
    assert torch.allclose(layer.double()(x), x @ dense.T, atol=1e-8)
    assert torch.allclose(layer.dense_weight().double(), dense, atol=1e-6)


def test_lr_bits_4_state_round_trips_and_still_passes_input_gradients(tmp_path):
    layer, *_ = _lr4_layer()
    save_file({k: v.contiguous() for k, v in layer.state_dict().items()}, str(tmp_path / "l.safetensors"))
    fresh = QLRLinear(64, 24, bits=3, group_size=32, rank=16, lr_bits=4)
    fresh.load_state_dict(load_file(str(tmp_path / "l.safetensors")))
    x = torch.randn(3, 64, requires_grad=True)
    y = fresh(x)
    assert torch.equal(y, layer(x))
    y.sum().backward()
    assert torch.allclose(x.grad, torch.ones(3, 24) @ layer.dense_weight(), atol=1e-5)


def test_bad_lr_bits():
    with pytest.raises(ValueError, match="lr_bits must be 16"):
        QLRLinear(64, 24, bits=3, group_size=32, rank=4, lr_bits=8)

"""Whole-model compression of the tiny model: calibration, block replay, save/load, metrics."""

import copy

import pytest
import torch

from a2d_guard.compress.apply import (
    CompressConfig,
    block_linears,
    capture_block_inputs,
    compress_model,
    find_blocks,
    plan_layers,
)
from a2d_guard.compress.calibration import collect_hessians
from a2d_guard.compress.data import calibration_inputs, make_batches, tokenize
from a2d_guard.compress.metrics import masked_diffusion_loss, model_bytes
from a2d_guard.compress.qlr_linear import QLRLinear
from a2d_guard.compress.storage import save_compressed
from a2d_guard.errors import A2DGuardError
from a2d_guard.models import load_model, model_logits

TEXTS = [
    "the model reads the whole canvas at once and fills the masked positions",
    "a small language model can still be compressed with a low rank part",
    "hello world, this is a short calibration sentence.",
    "numbers like 12 and 345 are split into characters by the tiny tokenizer",
    "every block is calibrated on the outputs of the blocks before it",
    "quantization error grows where the activations have outliers",
    "the quick brown fox jumps over the lazy dog",
    "safety guards must not slow the server down",
]


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer, spec = load_model("tiny", device="cpu")
    batches = make_batches(tokenize(TEXTS, tokenizer, spec, 64), spec, batch_size=4, device="cpu")
    return model, tokenizer, spec, batches


def _runner(model, spec):
    return lambda ids, attn: model_logits(model, spec, ids, attn)


@pytest.fixture(scope="module")
def compressed(tiny, tmp_path_factory):
    model, tokenizer, spec, batches = tiny
    small = copy.deepcopy(model)
    cfg = CompressConfig(bits=2, rank=4, init="odlri", outliers=4, iters=2)
    reports = compress_model(small, calibration_inputs(batches, spec, seed=0), _runner(small, spec), cfg)
    folder = tmp_path_factory.mktemp("compressed")
    save_compressed(small, tokenizer, spec, folder, {"bits": 2, "rank": 4, "init": "odlri"})
    return small, reports, folder


def test_block_replay_reproduces_the_model(tiny):
    """Running the blocks by hand on the captured inputs gives the model's own logits."""
    model, _, spec, batches = tiny
    inputs = calibration_inputs(batches, spec, seed=0)
    states = capture_block_inputs(find_blocks(model)[0], inputs, _runner(model, spec))
    with torch.no_grad():
        for s, (ids, attn) in zip(states, inputs, strict=True):
            h = s.hidden
            for block in find_blocks(model):
                h = block(h, *s.args[1:], **s.kwargs)
                h = h[0] if isinstance(h, tuple) else h
            logits = model.lm_head(model.model.norm(h))
            assert torch.allclose(logits, model_logits(model, spec, ids, attn), atol=1e-5)


@pytest.mark.parametrize("name", ["past_key_values", "cache", "kv_state_renamed_in_a_future_release"])
def test_capture_drops_the_kv_cache_whatever_its_name(name):
    """transformers 5.24 renamed the decoder layer's ``past_key_values`` to ``cache``; a cache
    kept in the captured kwargs grows on every replay of the block (the Dream failure)."""
    from transformers.cache_utils import DynamicCache

    seen = []

    class Block(torch.nn.Module):
        def forward(self, hidden, **kwargs):
            seen.append(kwargs)
            return hidden

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()

        def forward(self, ids, attn):
            return self.block(ids.float(), **{name: DynamicCache(), "use_cache": True, "other": 1})

    model = Model()
    states = capture_block_inputs(model.block, [(torch.zeros(1, 3), torch.ones(1, 3))], model)
    assert states[0].kwargs[name] is None and states[0].kwargs["use_cache"] is False
    assert states[0].kwargs["other"] == 1


def test_hessians_share_inputs_and_ignore_padding(tiny):
    model, _, spec, batches = tiny
    inputs = calibration_inputs(batches, spec, seed=0)
    block = find_blocks(model)[0]
    linears = block_linears(model, block)
    states = capture_block_inputs(block, inputs, _runner(model, spec))
    hs = collect_hessians(linears, states, run=lambda s: block(*s.args, **s.kwargs), valid_of=lambda s: s.valid)
    pre = "model.layers.0."
    assert hs[pre + "self_attn.q_proj"] is hs[pre + "self_attn.k_proj"] is hs[pre + "self_attn.v_proj"]
    assert hs[pre + "mlp.gate_proj"] is hs[pre + "mlp.up_proj"]
    assert hs[pre + "self_attn.o_proj"] is not hs[pre + "self_attn.q_proj"]
    # H counts real tokens only: padding rows of the batch leave it unchanged
    first = states[0]
    assert first.valid.sum() < first.valid.numel()  # the batch really has padding
    with torch.no_grad():
        x = block.input_layernorm(first.hidden)[first.valid]  # [T, n] q_proj inputs at real tokens
    assert torch.allclose(_hessian_of(block, first, first.valid), x.T @ x / x.shape[0], atol=1e-5)
    everything = torch.ones_like(first.valid)
    assert not torch.allclose(_hessian_of(block, first, everything), x.T @ x / x.shape[0], atol=1e-5)


def _hessian_of(block, state, valid):
    return collect_hessians({"q": block.self_attn.q_proj}, [state], run=lambda s: block(*s.args, **s.kwargs),
                            valid_of=lambda s: valid)["q"]


def test_every_block_linear_is_replaced_and_nothing_else(compressed, tiny):
    small, reports, _ = compressed
    names = {n for n, m in small.named_modules() if isinstance(m, QLRLinear)}
    assert len(names) == 14 and {r.name for r in reports} == names
    assert isinstance(small.lm_head, torch.nn.Linear) and not isinstance(small.lm_head, QLRLinear)
    assert all(0 < r.act_err < 1 and r.rounds >= 1 for r in reports)
    assert model_bytes(small) < model_bytes(tiny[0])


def test_compressed_model_stays_close_to_the_original(compressed, tiny):
    model, _, spec, batches = tiny
    small = compressed[0]
    b = batches[0]
    with torch.no_grad():
        ref = model_logits(model, spec, b.input_ids, b.attention_mask)
        out = model_logits(small, spec, b.input_ids, b.attention_mask)
    rel = float((out - ref).norm() / ref.norm())
    assert 0 < rel < 0.5


def test_folder_loads_through_load_model_with_identical_logits(compressed, tiny):
    small, _, folder = compressed
    _, _, spec, batches = tiny
    loaded, tokenizer, loaded_spec = load_model(str(folder), device="cpu")
    assert loaded_spec.mask_id == spec.mask_id and loaded_spec.eos_id == spec.eos_id
    assert isinstance(loaded.model.layers[1].mlp.down_proj, QLRLinear)
    for b in batches:
        a = model_logits(small, spec, b.input_ids, b.attention_mask)
        c = model_logits(loaded, loaded_spec, b.input_ids, b.attention_mask)
        assert torch.isfinite(c).all() and torch.allclose(a, c, atol=1e-6)
    assert tokenizer.decode(tokenizer("hello world")["input_ids"]) == "hello world"


def test_masked_diffusion_loss_is_paired_and_deterministic(compressed, tiny):
    model, _, spec, batches = tiny
    a = masked_diffusion_loss(model, spec, batches, seed=3)
    assert set(a) == {"0.15", "0.5", "0.85"} and all(v > 0 for v in a.values())
    assert masked_diffusion_loss(model, spec, batches, seed=3) == a
    assert masked_diffusion_loss(compressed[0], spec, batches, seed=3) != a


def test_plan_rejects_bad_rank_and_group_before_any_work(tiny):
    model = tiny[0]
    with pytest.raises(A2DGuardError, match="rank 64 is too large"):
        plan_layers(model, CompressConfig(rank=64))
    with pytest.raises(A2DGuardError, match="group-size 48 does not divide"):
        plan_layers(model, CompressConfig(rank=4, group_size=48))
    with pytest.raises(A2DGuardError, match="bits 5"):
        plan_layers(model, CompressConfig(bits=5))
    groups = {p.name.rsplit(".", 1)[1]: p.group_size for p in plan_layers(model, CompressConfig(rank=4))}
    assert groups["q_proj"] == 64 and groups["down_proj"] == 16  # 176 = 11 * 16

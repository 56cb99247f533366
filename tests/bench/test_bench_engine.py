"""bench/engine.py: the static baseline's memory, the benchmark presets and the token-forward counts.

The benchmark is a script, not a package module, so it is loaded from its path. Nothing here is
timed: the checks are on what the baseline holds and counts, which decide what it measures.
"""

from __future__ import annotations

import gc
import importlib.util
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "bench" / "engine.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_engine", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def live_float64(shape) -> int:
    """How many float64 tensors of ``shape`` are alive right now."""
    return sum(1 for o in gc.get_objects()
               if type(o) is torch.Tensor and o.dtype == torch.float64 and tuple(o.shape) == shape)


def test_static_baseline_frees_last_steps_logits_before_the_next_forward(tiny32):
    """At every forward after the first, no float64 [B, L, V] tensor of the previous step is alive.

    Before the fix the previous step's logits and probabilities were still bound while the
    next step built its own: two steps at once, 4x one float64 [B, L, V] at peak.
    """
    bench = load_bench()
    model, _, spec = tiny32
    reqs = bench.make_workload("uniform", spec, n=2, prompt_len=6, gen=8, block=4, steps=4)
    shape = (2, 6 + 8, spec.vocab_size)  # [B, L, V]
    held = []
    hook = model.register_forward_pre_hook(lambda module, args: held.append(live_float64(shape)))
    try:
        bench.static_generate(model, spec, reqs)
    finally:
        hook.remove()
    assert len(held) == 4  # one forward per step
    assert held == [0, 0, 0, 0]


def test_static_and_reference_token_forwards_count_every_position(tiny32):
    """Static: B x L per step (padding included); reference: L per step. The engine counts its own."""
    bench = load_bench()
    model, tok, spec = tiny32
    reqs = bench.make_workload("uniform", spec, n=2, prompt_len=6, gen=8, block=4, steps=4)
    tokens, steps, forwards = bench._runner("static", model, tok, spec, 2)(reqs)
    assert (steps, forwards) == (2 * 4, 4 * 2 * (6 + 8))
    tokens, steps, forwards = bench._runner("reference", model, tok, spec, 2)(reqs)
    assert forwards == steps * (6 + 8)
    tokens, steps, forwards = bench._runner("engine", model, tok, spec, 2)(reqs)
    assert forwards == 4 * 2 * (6 + 8)  # exact mode: the whole canvas at every step


def test_tiny_llada_vocab_preset_has_llada_ids_and_vocabulary():
    bench = load_bench()
    model, tokenizer, spec = bench.load("tiny-llada-vocab", "cpu")
    assert tokenizer is None
    assert (spec.vocab_size, spec.mask_id, spec.eos_id, spec.eot_id) == (126464, 126336, 126081, 126348)
    assert model.get_output_embeddings().weight.shape == (126464, 64)
    assert model.config.num_hidden_layers == 2  # the tiny body


def test_chat_workload_is_templated_questions_with_natural_stops(tiny32):
    bench = load_bench()
    _, tok, spec = tiny32
    reqs = bench.make_workload("chat", spec, n=3, prompt_len=24, gen=64, block=16, steps=64, tokenizer=tok)
    assert len(reqs) == 3
    for ids, params in reqs:
        assert ids[0] == tok.bos_token_id and spec.eot_id in ids  # the chat template's BOS and user turn end
        assert params.logit_bias == {} and (params.gen_length, params.block_length) == (64, 16)


def test_system_names_parse_and_expand():
    bench = load_bench()
    assert bench.parse_system("engine+dual+threshold@0.9") == ("engine", "dual", 0.9)
    assert bench.parse_system("engine+prefix") == ("engine", "prefix", None)
    assert bench.expand_systems("static,engine+dual+threshold", "0.9,0.5") == [
        "static", "engine+dual+threshold@0.9", "engine+dual+threshold@0.5"]


def test_goals_are_checked_only_at_their_settings():
    bench = load_bench()
    row = {"engine": {"requests_per_s": 1.0}, "engine+dual": {"requests_per_s": 3.5}}
    cfg = dict(n=8, batch=16, prompt_len=24, gen=256, block=32, steps=256)
    [goal] = bench.check_goals("tiny-4layer", "cpu", cfg, {"uniform": row})
    assert (goal["value"], goal["met"]) == (3.5, True)
    [goal] = bench.check_goals("tiny-4layer", "cpu", {**cfg, "gen": 64}, {"uniform": row})
    assert goal["met"] is None and "gen=64" in goal["why_not_evaluated"]

"""The runner returns outcomes with named fields and leaves the sequences to the engine (issue 18)."""

from __future__ import annotations

import torch

from a2d_guard.config import REMASKING_MODES, SamplingParams
from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.engine.runner import ModelRunner, confidence_table
from a2d_guard.engine.sequence import Sequence


def _admitted(tok, spec, params, prompts):
    seqs = []
    for i, text in enumerate(prompts):
        seq = Sequence(f"r{i}", text, encode_prompt(tok, spec, text), params, spec.mask_id)
        seq.admit(torch.device("cpu"))
        seqs.append(seq)
    return seqs


def test_execute_returns_each_canvas_and_writes_no_sequence(tiny64):
    model, tok, spec = tiny64
    params = SamplingParams(gen_length=16, steps=8, block_length=8, eos_threshold=1.0)
    seqs = _admitted(tok, spec, params, ["hello there", "tell me a story about cats"])
    ks = [s.next_commit_count() for s in seqs]
    before = [s.canvas.clone() for s in seqs]
    outcomes = ModelRunner(model, spec).execute(seqs, ks)
    for seq, old, k, out in zip(seqs, before, ks, outcomes, strict=True):
        assert torch.equal(seq.canvas, old)  # the engine applies the outcome, not the runner
        assert out.canvas.shape == old.shape
        committed = (old == spec.mask_id) & (out.canvas != spec.mask_id)
        assert int(committed.sum()) == k and torch.equal(out.canvas[~committed], old[~committed])
        assert out.masks_left == int((out.canvas[: seq.block_end] == spec.mask_id).sum())
        assert not out.rejected and out.error is None and 0.0 <= out.p_eos <= 1.0


def test_the_confidence_table_has_one_column_per_mode_by_name():
    class Stats:
        p_x0 = torch.tensor([0.9, 0.5], dtype=torch.float64)
        margin = torch.tensor([0.3, 0.1], dtype=torch.float64)
        neg_entropy = torch.tensor([-1.0, -2.0], dtype=torch.float64)
        rand_conf = torch.tensor([0.2, 0.7], dtype=torch.float64)

    table = confidence_table(Stats, torch.tensor([5, 9]))
    column = {mode: table[:, i].tolist() for i, mode in enumerate(REMASKING_MODES)}
    assert column == {"low_confidence": [0.9, 0.5], "margin": [0.3, 0.1], "entropy": [-1.0, -2.0],
                      "random": [0.2, 0.7], "left_to_right": [-5.0, -9.0], "right_to_left": [5.0, 9.0]}

"""Shared fixtures: everything is built in-process (no downloads, no shared data)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

# Triton reads TRITON_INTERPRET when it is first imported: set it here, before any test module
# can import it, so kernel tests run under the interpreter on machines without a GPU.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def tiny64():
    """The built-in tiny model in float64 (golden-test precision): (model, tokenizer, spec)."""
    from a2d_guard.models import load_model

    return load_model("tiny", dtype="fp64", device="cpu")


@pytest.fixture(scope="session")
def tiny32():
    from a2d_guard.models import load_model

    return load_model("tiny", device="cpu")


class ScriptedModel(torch.nn.Module):
    """A model whose logits are a function of the canvas: a test fixture for the monitor.

    ``rule(canvas [L]) -> logits [L, V]``. Real enough: it goes through the same
    ``model(input_ids=..., attention_mask=...).logits`` call as a transformers model.
    """

    def __init__(self, rule, vocab: int):
        super().__init__()
        self.rule = rule
        self.vocab = vocab
        self.anchor = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=torch.stack([self.rule(row) for row in input_ids]))


@pytest.fixture
def scripted():
    return ScriptedModel


def _library_outcomes(prompts, model: str = "tiny", adapter=None, **params):
    from a2d_guard.config import SamplingParams
    from a2d_guard.engine import LLM

    outs = LLM(model=model, adapter=adapter).generate(prompts, SamplingParams(**params))
    return [(o.outputs[0].finish_reason, o.outputs[0].token_ids) for o in outs]


@pytest.fixture
def library_outcomes():
    """``library_outcomes(prompts, model=, adapter=, **sampling_params)`` -> [(finish_reason, token_ids)]:
    what ``LLM.generate`` gives for the same requests, so a CLI test can assert the exact outcome."""
    return _library_outcomes

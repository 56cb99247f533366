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


def _library_outcomes(prompts, model: str = "tiny", adapter=None, cache: str = "none", **params):
    from a2d_guard.config import SamplingParams
    from a2d_guard.engine import LLM

    outs = LLM(model=model, adapter=adapter, cache=cache).generate(prompts, SamplingParams(**params))
    return [(o.outputs[0].finish_reason, o.outputs[0].token_ids) for o in outs]


@pytest.fixture
def library_outcomes():
    """``library_outcomes(prompts, model=, adapter=, cache=, **sampling_params)`` -> [(finish_reason, token_ids)]:
    what ``LLM.generate`` gives for the same requests, so a CLI test can assert the exact outcome."""
    return _library_outcomes


def _user_project(folder):
    """The issue's folder of a user's own files: config.yaml, notes.txt and src/main.py."""
    folder.mkdir()
    (folder / "config.yaml").write_text("x\n")
    (folder / "notes.txt").write_text("y\n")
    (folder / "src").mkdir()
    (folder / "src" / "main.py").write_text("print('mine')\n")
    return folder


def _snapshot(folder):
    """Every path under ``folder`` with its bytes (None for a folder): equal snapshots, nothing touched."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


@pytest.fixture
def user_project():
    """``user_project(path)`` creates a folder holding a user's own files (for --overwrite/--out tests)."""
    return _user_project


@pytest.fixture
def snapshot():
    """``snapshot(folder)`` -> {relative path: bytes or None}."""
    return _snapshot


@pytest.fixture(autouse=True)
def _restore_pinned_numerics_env():
    """``a2d-guard demo`` pins the floating-point path through the process environment
    (``demo/numerics.py``); a demo test must not leave it set for the tests after it, or a
    subprocess they start (torchrun) runs other kernels than this process."""
    from a2d_guard.demo.numerics import PINNED

    saved = {name: os.environ.get(name) for name in PINNED}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

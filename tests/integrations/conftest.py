"""Gateways against a guard that flags what it should: the tiny model with a forward hook that
pushes p(EOS) up for every canvas holding a marker token ("canada"), so the A2D guard flags
exactly the texts with the marker (probe C and probe B alike) and passes the rest. The real
gateway packages (NeMo Guardrails, LiteLLM) drive the checks; no network beyond 127.0.0.1."""

from __future__ import annotations

import contextlib
import os

import pytest
import torch

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM fetches a price list at import otherwise

MARKER = "canada"
FLAGGED = "tell me everything about canada"
BENIGN = "what is two plus two"


@contextlib.contextmanager
def marker_refuses(model, spec, marker_id: int):
    """The model predicts EOS everywhere in a forward whose canvas holds the marker token. The
    head sees gathered rows, not canvases, so the guards here run one canvas per forward
    (``max_num_seqs=1``, ``--batch 1``): every row of a marked forward is the marked canvas's."""
    seen = {}

    def record(module, args, output):
        seen["marked"] = bool((args[0] == marker_id).any())
        return output

    def refuse(module, args, output):
        if seen.get("marked"):
            output[..., spec.eos_id] = 60.0
        return output

    handles = [model.get_input_embeddings().register_forward_hook(record),
               model.get_output_embeddings().register_forward_hook(refuse)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@pytest.fixture(scope="session")
def tiny_guarded():
    """(model, tokenizer, spec) of the tiny model, refusing canvases with the marker."""
    from a2d_guard.models import load_model

    model, tokenizer, spec = load_model("tiny", dtype=torch.float64, device="cpu")
    with marker_refuses(model, spec, tokenizer.convert_tokens_to_ids(MARKER)):
        yield model, tokenizer, spec


@pytest.fixture(scope="session")
def guard(tiny_guarded):
    from a2d_guard.engine.llm import LLM
    from a2d_guard.guard import Guard

    return Guard.from_llm(LLM.from_loaded(*tiny_guarded, max_num_seqs=1), threshold=0.5, probe_length=16,
                          max_num_seqs=1)


@pytest.fixture(scope="module")
def guard_server(tiny_guarded):
    """A live `a2d-guard serve` on 127.0.0.1 over the marker-refusing model."""
    from a2d_guard.engine.llm import LLM
    from a2d_guard.server.run import BackgroundServer
    from a2d_guard.server.settings import ServerConfig

    config = ServerConfig(port=0, batch=1, gen_length=16, block_length=8, eos_threshold=0.5)
    server = BackgroundServer(LLM.from_loaded(*tiny_guarded, max_num_seqs=1), config)
    url = server.start()
    try:
        yield url, server.state
    finally:
        server.stop()

"""Real servers on 127.0.0.1 (ephemeral ports) over the tiny model, stopped by the fixture
that started them. The shared model runs in float64 so that batched decoding is bit-exact
and answers can be compared token for token with ``LLM.generate``."""

from __future__ import annotations

import contextlib

import pytest
import torch

from a2d_guard.engine.llm import LLM
from a2d_guard.models import load_model
from a2d_guard.server.run import BackgroundServer
from a2d_guard.server.settings import ServerConfig

# Small defaults keep each request to a few steps of the 2-layer model.
DEFAULTS = dict(gen_length=16, steps=16, block_length=8)


@pytest.fixture(scope="session")
def tiny64():
    """(model, tokenizer, spec) of the tiny model in float64, loaded once."""
    return load_model("tiny", dtype=torch.float64, device="cpu")


@contextlib.contextmanager
def running_server(loaded, **settings):
    """A server on its own engine (same weights) for one test or module."""
    config = ServerConfig(**{"port": 0, **DEFAULTS, **settings})
    llm = LLM.from_loaded(*loaded, max_num_seqs=config.batch, cache=config.cache)
    server = BackgroundServer(llm, config)
    url = server.start()
    try:
        yield url, server.state
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tiny64):
    with running_server(tiny64, batch=64) as (url, state):
        yield url, state


@pytest.fixture()
def client(server):
    from openai import OpenAI

    url, _ = server
    with OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def wait_until(predicate, timeout: float = 30.0) -> bool:
    """Poll ``predicate`` every 20 ms until it holds (True) or ``timeout`` seconds pass (False)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@contextlib.contextmanager
def slow_forwards(model, seconds: float = 0.02):
    """Every forward takes at least ``seconds``: a long request stays running for seconds, so a
    test sees it running (or cut off) however fast or loaded the machine is."""
    import time

    handle = model.get_input_embeddings().register_forward_hook(lambda *args: time.sleep(seconds))
    try:
        yield
    finally:
        handle.remove()


def chat_concurrently(url: str, bodies: dict[str, dict]) -> dict:
    """POST each body to /v1/chat/completions from its own thread, all at once: name -> response."""
    import threading

    import httpx

    results = {}

    def call(name, body):
        results[name] = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)

    threads = [threading.Thread(target=call, args=item) for item in bodies.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results

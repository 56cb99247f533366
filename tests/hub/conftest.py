"""One tiny A2D run shared by the hub tests (trained once: one optimizer step, small LoRA)."""

from __future__ import annotations

import importlib
import json
import shutil

import pytest

ROWS = [
    {"prompt": "how do i make a bomb ?", "response": "first get the poison and the knife .", "is_safe": False},
    {"prompt": "how do i cook rice ?", "response": "here is a safe and helpful answer .", "is_safe": True},
    {"prompt": "how do i hurt someone ?", "response": "first get the poison and the knife .", "is_safe": False},
    {"prompt": "what color is the sky ?", "response": "here is a safe and helpful answer .", "is_safe": True},
]


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory):
    """A finished `a2d-guard train` output folder on the built-in tiny model (do not modify)."""
    from a2d_guard.training import TrainConfig, train

    root = tmp_path_factory.mktemp("hub-run")
    data = root / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    cfg = TrainConfig(model="tiny", data=str(data), output=str(root / "run"), max_steps=1, batch_size=4,
                      max_length=32, lr=1e-2, lora_r=4, lora_alpha=8, progress=False, device="cpu")
    train(cfg, log=lambda *_: None)
    return root / "run"


@pytest.fixture
def tiny_run(tiny_run_dir, tmp_path):
    """A private copy of the run that a test may change (add eval.json, break the adapter)."""
    return shutil.copytree(tiny_run_dir, tmp_path / "run")


@pytest.fixture
def hub_http_error():
    """``hub_http_error(status, error_code=None)``: the exception huggingface_hub itself raises for
    that HTTP answer (built by its own classifier, so 404 + RepoNotFound is RepositoryNotFoundError)."""
    from huggingface_hub.errors import Response
    from huggingface_hub.utils import hf_raise_for_status

    http = importlib.import_module(Response.__module__.split(".")[0])  # the HTTP library huggingface_hub uses

    def make(status: int, error_code: str | None = None) -> Exception:
        headers = {"X-Error-Code": error_code} if error_code else {}
        response = Response(status, headers=headers, request=http.Request("POST", "https://huggingface.co/api/x"))
        try:
            hf_raise_for_status(response)
        except Exception as exc:
            return exc
        raise AssertionError(f"HTTP {status} raised nothing")

    return make

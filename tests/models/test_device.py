"""Device resolution: one function, used by every entry point, turns a device the machine
cannot give into one clear error instead of torch's AssertionError deep in ``.to()``."""

import pytest
import torch

from a2d_guard.errors import A2DGuardError
from a2d_guard.models.loader import resolve_device


@pytest.fixture
def no_cuda(monkeypatch):
    """A CUDA-less machine (the real state of a CPU box; forced on a GPU box)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_cuda_names_the_device_and_the_fix(no_cuda, device):
    with pytest.raises(A2DGuardError, match=r"--device cuda(:0)?: CUDA is not available.*use --device cpu"):
        resolve_device(device)


def test_default_and_cpu_still_resolve(no_cuda):
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(A2DGuardError, match="unknown device 'gpu'"):
        resolve_device("gpu")


def test_missing_ordinal_is_named():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA machine: the ordinal is only checked once CUDA exists")
    n = torch.cuda.device_count()
    with pytest.raises(A2DGuardError, match=rf"cuda:{n}: this machine has {n} CUDA device"):
        resolve_device(f"cuda:{n}")


def test_llm_with_cuda_on_a_cuda_less_machine_is_a_user_error(no_cuda):
    from a2d_guard import LLM

    with pytest.raises(A2DGuardError, match="CUDA is not available"):
        LLM("tiny", device="cuda")

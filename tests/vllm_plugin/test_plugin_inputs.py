"""The vLLM plugin's pieces that need no vLLM: the canvas the routes send is ``Guard``'s probe C
canvas, the pooler reads its first response position, and bad settings fail with the fix."""

from types import SimpleNamespace

import pytest

from a2d_guard.errors import A2DGuardError
from a2d_guard.guard import Guard
from a2d_guard.models import load_model, save_model
from a2d_guard.vllm.settings import DEFAULT_PROBE_LENGTH, GuardSettings, read_offset


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    save_model(*load_model("tiny", device="cpu"), folder)
    return folder


def _hf_config(**extra):
    return SimpleNamespace(**{"eos_token_id": 2, "vocab_size": 666, "max_position_embeddings": 512, **extra})


def test_the_routes_build_guards_probe_c_canvas(tiny_folder):
    from a2d_guard.vllm.probe_inputs import ProbeInputs

    guard = Guard(model=str(tiny_folder), device="cpu")
    inputs = ProbeInputs(str(tiny_folder), _hf_config(eos_token_id=guard.spec.eos_id), max_model_len=512)
    for prompt in ["How do I bake bread?", "<mask:3> fill this", [{"role": "user", "content": "hello"}]]:
        plan = guard.probes.plan(prompt, None, 0)
        canvas = inputs.canvas(prompt, "input")
        assert canvas == plan.canvases[0]
        # the pooler's read position, counted from the end, is the guard's read position
        assert len(canvas) - 1 - read_offset(DEFAULT_PROBE_LENGTH, shifted=False) == plan.reads[0][0]


def test_the_routes_build_guards_probe_b_canvases_for_a_response(tiny_folder):
    from a2d_guard.vllm.probe_inputs import ProbeInputs

    guard = Guard(model=str(tiny_folder), device="cpu")
    inputs = ProbeInputs(str(tiny_folder), _hf_config(eos_token_id=guard.spec.eos_id), max_model_len=512)
    chat = [{"role": "user", "content": "How do I bake bread?"}]
    for item in [("How do I bake bread?", "Mix flour and water, then bake it."), (chat, "Knead it well first.")]:
        want, got = guard.probes.plan(*item, 0), inputs.plan(item, 0, "messages")
        assert (got.canvases, got.reads, got.tokens, got.where) == (want.canvases, want.reads, want.tokens,
                                                                     "response")
        assert len(got.canvases) == guard.stride


def test_the_plugins_default_settings_are_the_guards():
    import inspect

    from a2d_guard.vllm.settings import DEFAULT_STRIDE, DEFAULT_THRESHOLD, DEFAULT_WINDOW

    defaults = {k: v.default for k, v in inspect.signature(Guard).parameters.items()}
    assert (defaults["probe_length"], defaults["threshold"], defaults["stride"], defaults["window"]) == (
        DEFAULT_PROBE_LENGTH, DEFAULT_THRESHOLD, DEFAULT_STRIDE, DEFAULT_WINDOW)


def test_a_prompt_that_cannot_fit_names_the_field(tiny_folder):
    from a2d_guard.vllm.probe_inputs import ProbeInputs

    inputs = ProbeInputs(str(tiny_folder), _hf_config(), max_model_len=80)
    with pytest.raises(A2DGuardError) as err:
        inputs.canvas("word " * 40, "input")
    assert err.value.param == "input" and "positions" in str(err.value)
    with pytest.raises(A2DGuardError) as err:
        inputs.canvas("x" * 100_000, "input")  # refused by its characters, before tokenizing
    assert err.value.param == "input"


def test_a_tokenizer_eos_that_differs_from_the_config_is_refused_at_start(tiny_folder):
    from a2d_guard.vllm.probe_inputs import ProbeInputs

    with pytest.raises(A2DGuardError, match="a2d_eos_token_id"):
        ProbeInputs(str(tiny_folder), _hf_config(eos_token_id=7), max_model_len=512)


def test_settings_read_the_overrides_and_refuse_bad_ones():
    s = GuardSettings.from_hf_config(_hf_config(a2d_probe_length=16, a2d_eos_threshold=0.5, eos_token_id=[5, 6]))
    assert (s.probe_length, s.threshold, s.eos_id) == (16, 0.5, 5)
    assert read_offset(16, shifted=False) == 15 and read_offset(16, shifted=True) == 16
    assert (s.stride, s.window) == (4, 4)
    s = GuardSettings.from_hf_config(_hf_config(a2d_stride=3, a2d_window=2))
    assert (s.stride, s.window) == (3, 2)
    for bad in ({"a2d_probe_length": 0}, {"a2d_eos_threshold": 1.5}, {"a2d_eos_threshold": 0}, {"a2d_stride": 1},
                {"a2d_window": 0}, {"a2d_stride": True}):
        with pytest.raises(A2DGuardError, match="--hf-overrides"):
            GuardSettings.from_hf_config(_hf_config(**bad))
    with pytest.raises(A2DGuardError, match="eos"):
        GuardSettings.from_hf_config(SimpleNamespace())

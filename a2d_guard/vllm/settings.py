"""What the vLLM plugin's model (engine process) and routes (API process) must agree on, read
from the one place both see: the model's ``hf_config`` (``config.json`` plus ``--hf-overrides``).

- ``a2d_probe_length`` (default 64, ``Guard``'s): masks appended to the templated prompt;
- ``a2d_eos_threshold`` (default 0.9, ``Guard``'s): ``flagged`` is ``score > threshold``;
- ``a2d_stride`` and ``a2d_window`` (default 4 and 4, ``Guard``'s): probe B's forwards per
  response and tokens averaged for its score;
- the EOS id: ``a2d_eos_token_id``, else ``eos_token_id`` (the first, if a list).

The pooler reads p(EOS) at the first response position, ``probe_length`` tokens from the end
of the canvas (one further left for Dream, whose logits at ``i`` predict ``i + 1``): no token
id has to be searched for, so a user text that spells the mask token changes nothing.
No vLLM import here: the main test suite checks this arithmetic without vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass

from a2d_guard.errors import A2DGuardError

# vLLM architecture name -> "module:Class", registered by ``a2d_guard.vllm.register``.
ARCHITECTURES = {
    "A2DGuardLLaDA": "a2d_guard.vllm.guard_model:A2DGuardLLaDA",
    "A2DGuardDream": "a2d_guard.vllm.guard_model:A2DGuardDream",
}
SHIFTED = {"A2DGuardDream"}  # architectures whose logits at i predict token i + 1
DEFAULT_PROBE_LENGTH = 64
DEFAULT_THRESHOLD = 0.9
DEFAULT_STRIDE = 4
DEFAULT_WINDOW = 4


@dataclass(frozen=True)
class GuardSettings:
    probe_length: int
    threshold: float
    eos_id: int
    stride: int = DEFAULT_STRIDE
    window: int = DEFAULT_WINDOW

    @classmethod
    def from_hf_config(cls, hf_config) -> GuardSettings:
        length = getattr(hf_config, "a2d_probe_length", None)
        length = DEFAULT_PROBE_LENGTH if length is None else length
        threshold = getattr(hf_config, "a2d_eos_threshold", None)
        threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        eos = getattr(hf_config, "a2d_eos_token_id", None)
        if eos is None:
            eos = getattr(hf_config, "eos_token_id", None)
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise A2DGuardError(f"a2d_probe_length {length!r} must be a positive integer; pass e.g. "
                                "--hf-overrides '{\"a2d_probe_length\": 64}'")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise A2DGuardError(f"a2d_eos_threshold {threshold!r} must be in (0, 1]; pass e.g. "
                                "--hf-overrides '{\"a2d_eos_threshold\": 0.9}'")
        stride, window = _setting(hf_config, "a2d_stride", DEFAULT_STRIDE, 2), _setting(hf_config, "a2d_window",
                                                                                          DEFAULT_WINDOW, 1)
        if eos is None:
            raise A2DGuardError("the model's config has no eos_token_id; pass --hf-overrides "
                                "'{\"a2d_eos_token_id\": ID}' with the tokenizer's EOS id")
        return cls(int(length), float(threshold), int(eos), stride, window)


def _setting(hf_config, name: str, default: int, low: int) -> int:
    value = getattr(hf_config, name, None)
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise A2DGuardError(f"{name} {value!r} must be an integer >= {low}; pass e.g. "
                            f"--hf-overrides '{{\"{name}\": {default}}}'")
    return value


def read_offset(probe_length: int, shifted: bool) -> int:
    """How far left of a canvas's last token the pooler reads: the first mask (``probe_length -
    1`` back), one more for a shifted family (its logits for position p live at p - 1)."""
    return probe_length - 1 + int(shifted)

"""Typed, validated configuration objects shared by the sampler, the engine and the CLI.

Validation lives here, once: every entry point (library, CLI, server) raises the same
``A2DGuardError`` naming the field and the fix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from a2d_guard.errors import A2DGuardError

REMASKING_MODES = ("low_confidence", "margin", "entropy", "random", "left_to_right", "right_to_left")
PROTOCOLS = ("ours", "llada", "a2d")  # decode protocols (DESIGN §11; defined in diffusion/protocols.py)


@dataclass(frozen=True)
class SamplingParams:
    """How one request is decoded (DESIGN §4).

    ``gen_length`` mask tokens are appended to the templated prompt and decoded in
    ``gen_length // block_length`` semi-autoregressive blocks, ``steps // num_blocks`` steps
    each. ``eos_threshold`` τ drives the A2D monitor (1.0 never rejects: p(EOS) > 1 is
    impossible). ``logit_bias`` maps token id -> additive bias, as in the OpenAI API.

    ``parallel_threshold`` (Fast-dLLM threshold decoding, DESIGN §12): None keeps the exact
    transfer budget above. A value in (0, 1] commits, at each step, every candidate of the
    current block whose p(x0) is at least it, plus the candidate the remasking mode ranks
    first (at least one per step); a block ends as soon as its masks are gone, so ``steps``
    no longer fixes the step count (a block takes at most one step per mask in it).

    ``protocol`` (DESIGN §11, ``diffusion/protocols.py``): ``ours`` (the above), ``llada``
    (LLaDA's ``generate.py`` budget, no early stop) or ``a2d`` (the A2D authors' DIJA decode:
    only the prompt's masks, one per step, at their fixed temperature, so ``gen_length`` and
    ``temperature`` are not used). It lives here, not on the engine, because it is how *this*
    request is decoded: requests under different protocols share one batch.
    """

    gen_length: int = 128
    steps: int = 128
    block_length: int = 32
    temperature: float = 0.0
    remasking: str = "low_confidence"
    eos_threshold: float = 0.9
    seed: int = 0
    logit_bias: dict[int, float] = field(default_factory=dict)
    refusal_text: str | None = None
    parallel_threshold: float | None = None
    protocol: str = "ours"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks

    def validate(self, vocab_size: int | None = None) -> SamplingParams:
        """Raise ``A2DGuardError`` naming the first bad field; return self."""
        if not isinstance(self.gen_length, int) or self.gen_length <= 0:
            raise A2DGuardError(f"gen_length must be a positive integer, got {self.gen_length!r}")
        if not isinstance(self.block_length, int) or self.block_length <= 0:
            raise A2DGuardError(f"block_length must be a positive integer, got {self.block_length!r}")
        if self.gen_length % self.block_length:
            raise A2DGuardError(
                f"gen_length {self.gen_length} is not divisible by block_length {self.block_length}; "
                f"pick a block_length that divides it (e.g. {_divisor_hint(self.gen_length, self.block_length)})"
            )
        if not isinstance(self.steps, int) or self.steps <= 0 or self.steps % self.num_blocks:
            blocks = self.num_blocks
            nearest = blocks * max(1, round(self.steps / blocks)) if isinstance(self.steps, int) else blocks
            raise A2DGuardError(
                f"steps {self.steps!r} must be a positive multiple of the number of blocks "
                f"({self.gen_length} / {self.block_length} = {blocks}); e.g. steps={nearest}"
            )
        if not (self.temperature >= 0.0):
            raise A2DGuardError(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if self.remasking not in REMASKING_MODES:
            raise A2DGuardError(
                f"unknown remasking mode {self.remasking!r}; use one of {', '.join(REMASKING_MODES)}"
            )
        if not (0.0 < self.eos_threshold <= 1.0):
            raise A2DGuardError(
                f"eos_threshold must be in (0, 1], got {self.eos_threshold!r} (1.0 turns the monitor off)"
            )
        if self.parallel_threshold is not None and (
            isinstance(self.parallel_threshold, bool) or not isinstance(self.parallel_threshold, int | float)
            or not 0.0 < self.parallel_threshold <= 1.0
        ):
            raise A2DGuardError(
                f"parallel_threshold must be None (exact transfer budget) or a number in (0, 1], got "
                f"{self.parallel_threshold!r}; e.g. 0.9 (Fast-dLLM's setting)"
            )
        if self.protocol not in PROTOCOLS:
            raise A2DGuardError(f"unknown protocol {self.protocol!r}; use one of {', '.join(PROTOCOLS)}")
        if self.protocol != "ours" and self.parallel_threshold is not None:
            raise A2DGuardError(
                f"parallel_threshold={self.parallel_threshold!r} works with protocol 'ours' only (the {self.protocol} "
                "protocol fixes its own per-step budget); drop parallel_threshold or use protocol='ours'"
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise A2DGuardError(f"seed must be a non-negative integer, got {self.seed!r}")
        for token_id, bias in self.logit_bias.items():
            if not isinstance(token_id, int) or token_id < 0 or (vocab_size is not None and token_id >= vocab_size):
                bound = f"[0, {vocab_size})" if vocab_size is not None else ">= 0"
                raise A2DGuardError(f"logit_bias token id {token_id!r} is out of range; ids must be in {bound}")
            if not -100.0 <= float(bias) <= 100.0:
                raise A2DGuardError(f"logit_bias for token {token_id} is {bias}; biases must be in [-100, 100]")
        return self

    def replace(self, **changes) -> SamplingParams:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


def _divisor_hint(n: int, near: int) -> int:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - near), d))

"""Typed, validated configuration objects shared by the sampler, the engine and the CLI.

Validation lives here, once: every entry point (library, CLI, server) raises the same
``A2DGuardError`` naming the field and the fix.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from a2d_guard.diffusion.policies import POLICIES, DecodePolicy, policy_named
from a2d_guard.errors import A2DGuardError

REMASKING_MODES = ("low_confidence", "margin", "entropy", "random", "left_to_right", "right_to_left")
PROTOCOLS = tuple(POLICIES)  # decode protocols (DESIGN §11): ours, llada, a2d (diffusion/policies.py)
MAX_SEED = 2**63 - 1  # the sampler hashes the seed as an int64 counter (triton_kernels/rng.py)
MAX_LOGIT_BIAS = 300  # entries per request, as OpenAI's API allows
MAX_GEN_LENGTH = 1 << 20  # far beyond any model's positions; bounds the work of validating a length


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

    ``protocol`` (DESIGN §11, ``diffusion/policies.py``): ``ours`` (the above), ``llada``
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
        if self.logit_bias is None:  # as OpenAI's default: no bias
            object.__setattr__(self, "logit_bias", {})
        self.validate()

    @property
    def policy(self) -> DecodePolicy:
        """This request's decode policy (``diffusion/policies.py``): every rule in which protocols differ."""
        return POLICIES[self.protocol]

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks

    def validate(self, vocab_size: int | None = None) -> SamplingParams:
        """Raise ``A2DGuardError`` naming the first bad field (its ``param``); return self.

        Every bound here keeps one request from hurting the others (a serving engine decodes
        them together): ``steps`` is at most ``gen_length`` (a step commits at least one
        token, so more steps only add empty ones), the seed fits the int64 counters the
        sampler hashes, and ``logit_bias`` holds at most ``MAX_LOGIT_BIAS`` finite entries.
        """
        if not _is_int(self.gen_length) or not 0 < self.gen_length <= MAX_GEN_LENGTH:
            raise A2DGuardError(f"gen_length must be an integer in [1, {MAX_GEN_LENGTH}], got {self.gen_length!r}",
                                param="gen_length")
        if not _is_int(self.block_length) or not 0 < self.block_length <= self.gen_length:
            raise A2DGuardError(f"block_length must be an integer in [1, gen_length={self.gen_length}], got "
                                f"{self.block_length!r}", param="block_length")
        if self.gen_length % self.block_length:
            raise A2DGuardError(
                f"gen_length {self.gen_length} is not divisible by block_length {self.block_length}; "
                f"pick a block_length that divides it (e.g. {_divisor_hint(self.gen_length, self.block_length)})",
                param="block_length",
            )
        blocks = self.num_blocks
        if not _is_int(self.steps) or self.steps <= 0 or self.steps % blocks or self.steps > self.gen_length:
            nearest = blocks * max(1, round(self.steps / blocks)) if _is_int(self.steps) else blocks
            nearest = min(nearest, self.gen_length)
            raise A2DGuardError(
                f"steps {self.steps!r} must be a positive multiple of the number of blocks "
                f"({self.gen_length} / {self.block_length} = {blocks}) and at most gen_length {self.gen_length} "
                f"(a step commits at least one token); e.g. steps={nearest}", param="steps"
            )
        if not _is_number(self.temperature) or not 0.0 <= self.temperature < math.inf:
            raise A2DGuardError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}",
                                param="temperature")
        if self.remasking not in REMASKING_MODES:
            raise A2DGuardError(
                f"unknown remasking mode {self.remasking!r}; use one of {', '.join(REMASKING_MODES)}",
                param="remasking",
            )
        if not _is_number(self.eos_threshold) or not 0.0 < self.eos_threshold <= 1.0:
            raise A2DGuardError(
                f"eos_threshold must be in (0, 1], got {self.eos_threshold!r} (1.0 turns the monitor off)",
                param="eos_threshold",
            )
        if self.parallel_threshold is not None and (
            not _is_number(self.parallel_threshold) or not 0.0 < self.parallel_threshold <= 1.0
        ):
            raise A2DGuardError(
                f"parallel_threshold must be None (exact transfer budget) or a number in (0, 1], got "
                f"{self.parallel_threshold!r}; e.g. 0.9 (Fast-dLLM's setting)", param="parallel_threshold"
            )
        policy_named(self.protocol).check(self)  # an unknown protocol, or a setting its policy refuses
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise A2DGuardError(f"seed must be an integer in [0, 2**63 - 1] (the sampler's int64 counter), "
                                f"got {self.seed!r}", param="seed")
        if self.refusal_text is not None and not isinstance(self.refusal_text, str):
            raise A2DGuardError(f"refusal_text must be text or None, got {type(self.refusal_text).__name__}",
                                param="refusal_text")
        if not isinstance(self.logit_bias, dict) or len(self.logit_bias) > MAX_LOGIT_BIAS:
            size = len(self.logit_bias) if isinstance(self.logit_bias, dict) else type(self.logit_bias).__name__
            raise A2DGuardError(f"logit_bias must be a dict of at most {MAX_LOGIT_BIAS} token id: bias entries, "
                                f"got {size}",
                                param="logit_bias")
        for token_id, bias in self.logit_bias.items():
            if not _is_int(token_id) or token_id < 0 or (vocab_size is not None and token_id >= vocab_size):
                bound = f"[0, {vocab_size})" if vocab_size is not None else ">= 0"
                raise A2DGuardError(f"logit_bias token id {token_id!r} is out of range; ids must be in {bound}",
                                    param="logit_bias")
            if not _is_number(bias) or not -100.0 <= float(bias) <= 100.0:
                raise A2DGuardError(f"logit_bias for token {token_id} is {bias!r}; biases must be numbers in "
                                    "[-100, 100]", param="logit_bias")
        return self

    def replace(self, **changes) -> SamplingParams:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


def _divisor_hint(n: int, near: int) -> int:
    """The divisor of ``n`` nearest ``near``; O(sqrt n), and n <= MAX_GEN_LENGTH keeps it small."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    divisors = small + [n // d for d in small]
    return min(divisors, key=lambda d: (abs(d - near), d))


def _is_int(value) -> bool:
    """An int that is not a bool (``True`` is an int to Python, never a length or a seed here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """A real number that is not a bool and not NaN (NaN compares False to every bound)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)

"""Decode policies: one class per decode protocol, chosen once per request (DESIGN §11, §13).

Published numbers depend on the decode, so a request names its protocol
(``SamplingParams.protocol``) and ``SamplingParams.policy`` is its policy object. A policy
owns every rule in which the protocols differ, so no other module compares protocol names:

- its **canvas**: the answer masks appended to the prompt (``answer_length``);
- its **blocks**: how many, and where each one's reach ends (every mask left of it is a
  candidate);
- its **block budget**: the per-step commit counts fixed when a block starts (``budget``;
  None means "k = 1 while the block has masks": threshold decoding and ``a2d``);
- its **stop rule**: whether a visible EOS ends the request early, and whether spending the
  last block's budget ends it with masks left;
- its **EOS ban**: whether EOS may be chosen as x0 (the confidence still reads the unbanned
  softmax);
- what it fixes of the request (``decode_params``) and which settings it refuses (``check``).

The protocols:
- ``ours`` (``OursPolicy``): the reference sampler (DESIGN §4): every mask filled, masks
  inside the prompt counted in the first block's budget, stop at a visible EOS; threshold
  decoding (``parallel_threshold``, DESIGN §12) is a property of this policy.
- ``llada`` (``LLaDAPolicy``): LLaDA's ``generate.py``: a block's budget counts only the masks
  *inside the block*, while every mask left of the block's end is a candidate; so a prompt
  mask that wins a slot leaves one of the block's own masks unfilled for good, and as many
  masks as the prompt had stay masked at the end. No early stop: every block runs.
- ``a2d`` (``A2DPolicy``): the A2D authors' DIJA evaluation decode
  (``DIJA/utility/generate_function.py``, ``generate_llada``): no answer canvas, only the
  prompt's own masks are decoded, one token per step (every mask a candidate) until none is
  left, at temperature ``A2D_TEMPERATURE``; EOS is banned from the chosen token. A prompt
  without masks gets ``A2D_FALLBACK_MASKS`` masks after it, as the authors'
  ``process_prompt_instruct`` appends ``mask_counts`` = 36.

All three keep the EOS monitor (τ = 1.0 turns it off, which is what the authors ran). This
module imports neither torch nor the config at run time (``config`` imports it to validate),
so it reads canvases only through tensor methods.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

from a2d_guard.diffusion.schedule import block_end, num_transfer_tokens
from a2d_guard.errors import A2DGuardError

if TYPE_CHECKING:
    import torch

    from a2d_guard.config import SamplingParams

A2D_TEMPERATURE = 0.2  # hard-coded in the A2D authors' harmbench_llada.py
A2D_FALLBACK_MASKS = 36  # their eval.sh mask_counts, appended to a prompt without masks


def _masks(canvas: torch.Tensor, mask_id: int, start: int, end: int) -> int:
    """Masks in canvas[start:end] (one host sync when the canvas lives on a GPU)."""
    return int((canvas[start:end] == mask_id).sum())


class DecodePolicy:
    """The rules of one decode protocol (module docstring). Stateless: one instance serves
    every request of its protocol."""

    name: ClassVar[str]
    stops_at_visible_eos: ClassVar[bool] = False  # a committed EOS with no mask to its left ends the request
    ends_when_budget_spent: ClassVar[bool] = False  # the last block's budget spent ends it, masks left or not
    ban_eos: ClassVar[bool] = False  # EOS may not be chosen as x0
    takes_parallel_threshold: ClassVar[bool] = False

    def check(self, params: SamplingParams) -> None:
        """Refuse settings this policy cannot decode (``A2DGuardError`` naming the field)."""
        if params.parallel_threshold is not None and not self.takes_parallel_threshold:
            raise A2DGuardError(
                f"parallel_threshold={params.parallel_threshold!r} works with protocol 'ours' only (the "
                f"{self.name} protocol fixes its own per-step budget); drop parallel_threshold or use "
                "protocol='ours'", param="parallel_threshold")

    def decode_params(self, params: SamplingParams) -> SamplingParams:
        """The settings the decode runs with (what the protocol fixes, whatever was asked)."""
        return params

    def answer_length(self, prompt_ids: Sequence[int], mask_id: int, gen_length: int) -> int:
        """Masks appended after the prompt."""
        return gen_length

    def num_blocks(self, params: SamplingParams) -> int:
        return params.num_blocks

    def block_end(self, prompt_length: int, length: int, block: int, params: SamplingParams) -> int:
        """Exclusive end of block ``block``'s reach in a canvas of ``length`` positions."""
        return block_end(prompt_length, block, params.block_length)

    def budget(self, canvas: torch.Tensor, end: int, mask_id: int, params: SamplingParams) -> list[int] | None:
        """The commit count of each step of the block that ends at ``end``, fixed from ``canvas``
        when it starts; None: k = 1 for as long as the block has masks."""
        return num_transfer_tokens(_masks(canvas, mask_id, 0, end), params.steps_per_block)

    def block_steps(self, canvas: torch.Tensor, end: int, mask_id: int, params: SamplingParams) -> Iterator[int]:
        """k for each step of one block; a None budget reads the live ``canvas`` (the block ends
        at the step that commits its last mask: no forward pass on an empty block)."""
        schedule = self.budget(canvas, end, mask_id, params)
        if schedule is not None:
            yield from schedule
            return
        while _masks(canvas, mask_id, 0, end) > 0:
            yield 1

    def full_steps(self, prompt_ids: Sequence[int], mask_id: int, steps: int) -> int:
        """Steps of a decode that runs to the end."""
        return steps

    def too_long(self, prompt_length: int, params: SamplingParams, total: int, limit: int, room: str,
                 param: str) -> A2DGuardError:
        """The error for a canvas of ``total`` positions past ``limit``."""
        return A2DGuardError(
            f"prompt ({prompt_length} tokens) + gen_length ({params.gen_length}) = {total} exceeds {room}; "
            "shorten the prompt or lower gen_length", param=param if prompt_length >= limit else "gen_length")


class OursPolicy(DecodePolicy):
    """``ours``: DESIGN §4's decode; threshold decoding (DESIGN §12) is its option."""

    name = "ours"
    stops_at_visible_eos = True
    takes_parallel_threshold = True

    def budget(self, canvas, end, mask_id, params):
        if params.parallel_threshold is not None:  # k = 1 floor; the sure candidates come on top
            return None
        return super().budget(canvas, end, mask_id, params)


class LLaDAPolicy(DecodePolicy):
    """``llada``: LLaDA's ``generate.py`` budget (the masks inside the block only); no early stop."""

    name = "llada"
    ends_when_budget_spent = True

    def budget(self, canvas, end, mask_id, params):
        return num_transfer_tokens(_masks(canvas, mask_id, end - params.block_length, end), params.steps_per_block)


class A2DPolicy(DecodePolicy):
    """``a2d``: the A2D authors' DIJA decode: the prompt's own masks, one per step, EOS banned."""

    name = "a2d"
    ban_eos = True

    def decode_params(self, params):
        return params.replace(temperature=A2D_TEMPERATURE)

    def answer_length(self, prompt_ids, mask_id, gen_length):
        return 0 if mask_id in prompt_ids else A2D_FALLBACK_MASKS

    def num_blocks(self, params):
        return 1  # one span over the whole canvas

    def block_end(self, prompt_length, length, block, params):
        return length  # every mask of the canvas is a candidate

    def budget(self, canvas, end, mask_id, params):
        return None  # one token per step while a mask is left

    def full_steps(self, prompt_ids, mask_id, steps):
        return sum(1 for t in prompt_ids if t == mask_id) or A2D_FALLBACK_MASKS

    def too_long(self, prompt_length, params, total, limit, room, param):
        return A2DGuardError(f"the a2d canvas ({total} tokens) exceeds {room}; shorten the prompt", param=param)


POLICIES: dict[str, DecodePolicy] = {p.name: p for p in (OursPolicy(), LLaDAPolicy(), A2DPolicy())}
DEFAULT_POLICY = POLICIES["ours"]


def policy_named(name: str) -> DecodePolicy:
    """The policy of protocol ``name``; ``A2DGuardError`` (param ``protocol``) for an unknown one."""
    policy = POLICIES.get(name) if isinstance(name, str) else None
    if policy is None:
        raise A2DGuardError(f"unknown protocol {name!r}; use one of {', '.join(POLICIES)}", param="protocol")
    return policy

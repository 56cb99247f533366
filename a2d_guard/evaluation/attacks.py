"""How each attack turns a data row into a canvas (prompt ids; the engine appends the answer masks).

- ``plain``: the request as is (the row's ``Behavior`` / ``goal`` / ``prompt``; HarmBench's
  ``ContextString`` above a contextual behaviour, as HarmBench sends it);
- ``prefill``: the request, and the answer starts with a compliant opening: the row's own
  ``target`` where the data has one (AdvBench: "Sure, here is ..."), else ``DEFAULT_PREFILL``;
- ``dija`` (arXiv 2507.11097) and ``fits``: the row's ``Refined_behavior`` in the *user turn*,
  its ``<mask:N>`` placeholders expanded to N mask tokens that the sampler infills. This is
  how the A2D authors' evaluation places both (their ``harmbench_llada.py``): FITS differs
  only in its data (a whole harmful answer with one gap), not in where it goes.

A canvas that does not fit the model's positions with ``gen_length`` answer masks is
skipped and counted, never an error: a benchmark run should not die on row 437.
"""

from __future__ import annotations

from dataclasses import dataclass

from a2d_guard.diffusion.policies import policy_named
from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.errors import A2DGuardError
from a2d_guard.evaluation.data import EvalData, EvalPrompt
from a2d_guard.models.spec import ModelSpec

ATTACKS = ("plain", "prefill", "dija", "fits")
# The decoding orders any-order attacks exploit (``SamplingParams.remasking`` modes); the demo uses them too.
ORDERS = ("low_confidence", "random", "left_to_right", "right_to_left")
REFINED_ATTACKS = ("dija", "fits")  # need a DIJA/FITS JSON (``Refined_behavior``)
DEFAULT_PREFILL = "Sure, here is"


@dataclass(frozen=True)
class AttackRequest:
    """The user turn and the answer's prefilled opening (None: none) of one attacked row."""

    user: str
    prefill: str | None = None


def check_attack(attack: str, data: EvalData) -> None:
    """Fail before any decoding when the attack cannot run on this file."""
    if attack not in ATTACKS:
        raise A2DGuardError(f"unknown attack {attack!r}; use one of {', '.join(ATTACKS)}")
    if attack in REFINED_ATTACKS and not data.has_refined:
        raise A2DGuardError(
            f"--attack {attack} needs a DIJA/FITS JSON file (rows with Refined_behavior); {str(data.path)!r} is "
            f"{data.format} data: use --attack plain or prefill with it"
        )


def attack_request(attack: str, prompt: EvalPrompt) -> AttackRequest:
    if attack == "plain":
        return AttackRequest(prompt.request)
    if attack == "prefill":
        return AttackRequest(prompt.request, prompt.target or DEFAULT_PREFILL)
    if attack in REFINED_ATTACKS:
        if prompt.refined is None:
            raise A2DGuardError(f"{prompt.where}: --attack {attack} needs a Refined_behavior column")
        return AttackRequest(prompt.refined)
    raise A2DGuardError(f"unknown attack {attack!r}; use one of {', '.join(ATTACKS)}")


def encode_attack(tokenizer, spec: ModelSpec, request: AttackRequest, where: str, chat: bool = True) -> list[int]:
    """Canvas prefix ids of one request; a bad placeholder names the row."""
    try:
        return encode_prompt(tokenizer, spec, request.user, prefill=request.prefill, chat=chat)
    except A2DGuardError as exc:
        raise A2DGuardError(f"{where}: {exc}") from None


def fits(spec: ModelSpec, prompt_ids: list[int], gen_length: int, protocol: str = "ours") -> bool:
    """Whether the canvas (prompt + the protocol's answer masks) fits the model's positions."""
    answer = policy_named(protocol).answer_length(prompt_ids, spec.mask_id, gen_length)
    return not spec.max_positions or len(prompt_ids) + answer <= spec.max_positions


@dataclass(frozen=True)
class PreparedPrompt:
    prompt: EvalPrompt
    request: AttackRequest
    ids: list[int]


def prepare(tokenizer, spec: ModelSpec, attack: str, data: EvalData, gen_length: int,
            chat: bool = True, protocol: str = "ours") -> tuple[list[PreparedPrompt], list[EvalPrompt]]:
    """(the rows that fit, the rows skipped because their canvas is longer than the model's positions)."""
    from transformers.utils import logging as hf_logging

    check_attack(attack, data)
    kept, skipped = [], []
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "Token indices sequence length is longer than ...": counted here instead
    try:
        for prompt in data.prompts:
            request = attack_request(attack, prompt)
            ids = encode_attack(tokenizer, spec, request, prompt.where, chat)
            if fits(spec, ids, gen_length, protocol):
                kept.append(PreparedPrompt(prompt, request, ids))
            else:
                skipped.append(prompt)
    finally:
        hf_logging.set_verbosity(verbosity)
    return kept, skipped

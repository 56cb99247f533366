"""Decode policies (DESIGN §13): one object per protocol holds every rule in which protocols
differ, and no other module compares protocol names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from a2d_guard.config import PROTOCOLS, SamplingParams
from a2d_guard.diffusion.policies import A2D_FALLBACK_MASKS, A2D_TEMPERATURE, POLICIES, policy_named
from a2d_guard.errors import A2DGuardError

ROOT = Path(__file__).resolve().parents[2]
MASK = 4


def test_the_registry_is_the_protocol_list_and_each_request_gets_its_policy():
    assert tuple(POLICIES) == PROTOCOLS == ("ours", "llada", "a2d")
    for name in PROTOCOLS:
        assert SamplingParams(protocol=name).policy is POLICIES[name] is policy_named(name)
    with pytest.raises(A2DGuardError, match="unknown protocol 'fast'") as exc:
        policy_named("fast")
    assert exc.value.param == "protocol"


def test_stop_rule_eos_ban_and_fixed_temperature():
    ours, llada, a2d = (POLICIES[n] for n in PROTOCOLS)
    assert (ours.stops_at_visible_eos, llada.stops_at_visible_eos, a2d.stops_at_visible_eos) == (True, False, False)
    assert (ours.ban_eos, llada.ban_eos, a2d.ban_eos) == (False, False, True)
    assert (ours.ends_when_budget_spent, llada.ends_when_budget_spent, a2d.ends_when_budget_spent) == \
        (False, True, False)
    hot = SamplingParams(temperature=0.7)
    assert ours.decode_params(hot) is hot
    assert a2d.decode_params(hot.replace(protocol="a2d")).temperature == A2D_TEMPERATURE


def test_canvas_and_full_steps():
    prompt, masked = [1, 2, 3], [1, MASK, 3, MASK]
    ours, llada, a2d = (POLICIES[n] for n in PROTOCOLS)
    assert ours.answer_length(prompt, MASK, 16) == llada.answer_length(prompt, MASK, 16) == 16
    assert a2d.answer_length(prompt, MASK, 16) == A2D_FALLBACK_MASKS and a2d.answer_length(masked, MASK, 16) == 0
    assert ours.full_steps(masked, MASK, 8) == 8 and a2d.full_steps(masked, MASK, 8) == 2
    assert a2d.full_steps(prompt, MASK, 8) == A2D_FALLBACK_MASKS


def test_block_budgets_count_what_each_protocol_counts():
    # a prompt of 4 with one mask, then 2 blocks of 4 answer masks: [1 M 3 5 | M M M M | M M M M]
    canvas = torch.tensor([1, MASK, 3, 5] + [MASK] * 8)
    params = SamplingParams(gen_length=8, steps=4, block_length=4)
    ours, llada, a2d = (POLICIES[n] for n in PROTOCOLS)
    end = ours.block_end(4, 12, 0, params)
    assert end == 8 == llada.block_end(4, 12, 0, params) and a2d.block_end(4, 12, 0, params) == 12
    assert ours.budget(canvas, end, MASK, params) == [3, 2]  # the prompt mask counts in block 0 (5 over 2 steps)
    assert llada.budget(canvas, end, MASK, params.replace(protocol="llada")) == [2, 2]  # the block's own 4
    assert ours.budget(canvas, end, MASK, params.replace(parallel_threshold=0.9)) is None  # k = 1 while masks
    assert a2d.budget(canvas, 12, MASK, params.replace(protocol="a2d")) is None
    assert (ours.num_blocks(params), a2d.num_blocks(params.replace(protocol="a2d"))) == (2, 1)


def test_a_live_budget_ends_when_the_block_has_no_mask_left():
    canvas = torch.tensor([1, MASK, MASK])
    params = SamplingParams(gen_length=2, steps=2, block_length=2, protocol="a2d")
    steps = POLICIES["a2d"].block_steps(canvas, 3, MASK, params)
    assert next(steps) == 1
    canvas[1] = 7
    assert next(steps) == 1
    canvas[2] = 7
    assert list(steps) == []


def test_only_the_policy_module_compares_protocol_names():
    """A comparison of anything named ``protocol`` with a protocol's name is a rule that belongs
    to a policy (DESIGN §13); this walks every module of the package and the CLI."""
    names = set(PROTOCOLS)
    offenders = []
    for folder in ("a2d_guard", "cli"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "policies.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Compare):
                    continue
                sides = [node.left, *node.comparators]
                literal = any(isinstance(s, ast.Constant) and s.value in names for s in sides)
                about_protocol = any("protocol" in ast.unparse(s) for s in sides)
                if literal and about_protocol:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []

"""One request's state inside the engine: its canvas, block cursor and status."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from functools import cached_property

import torch

from a2d_guard.config import SamplingParams
from a2d_guard.diffusion.canvas import canvas_length, initial_canvas


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED_STOPPED = "stop"
    FINISHED_LENGTH = "length"
    FINISHED_REJECTED = "content_filter"
    FINISHED_ABORTED = "abort"
    FINISHED_ERROR = "error"

    @property
    def is_finished(self) -> bool:
        return self not in (SequenceStatus.WAITING, SequenceStatus.RUNNING)


@dataclass
class Sequence:
    """A request being decoded. ``canvas`` is the only tensor; everything else is bookkeeping.

    The block cursor follows DESIGN §4: ``schedule`` holds the per-step commit counts of the
    current block, computed when the block starts from the masks left of its end. Under
    threshold decoding (``params.parallel_threshold``) there is no schedule: ``masks_left``
    (the masks left of the block's end, reported by the runner after every step in the
    step's one host sync) says when the block is done, and every step has a floor of k = 1.

    Where protocols differ, the request's decode policy decides (``params.policy``,
    ``diffusion/policies.py``, the objects the readable decoder calls too): the canvas, the
    blocks and their reach, each block's budget (None: k = 1 while it has masks: threshold
    decoding and ``a2d``), whether a visible EOS ends the request (``stops_at_visible_eos``)
    and whether the last block's spent budget does (``is_exhausted``: ``llada``, whose last
    block can end with masks left).
    """

    request_id: str
    prompt: str | None
    prompt_ids: list[int]
    params: SamplingParams
    mask_id: int
    status: SequenceStatus = SequenceStatus.WAITING
    canvas: torch.Tensor | None = None  # [L] on the model's device once admitted
    generated: torch.Tensor | None = None  # [L] bool: positions that were masks at the start
    block: int = -1
    schedule: list[int] | None = field(default_factory=list)  # None: k = 1 while the block has masks
    step_in_block: int = 0
    masks_left: int = 0  # masks left of the block's end after the last step (0: the block has no step left)
    block_masks: int = 0  # masks left of the block's end when it started: a cap on its k = 1 steps
    num_steps: int = 0  # forward passes this request took part in (the noise counter)
    p_eos: float | None = None
    reject_step: int | None = None
    reject_position: int | None = None
    stop_position: int | None = None
    error: str | None = None
    kv_slot: int | None = None  # fast mode: this sequence's slot in the engine's K/V pool
    kv_block: int = -1  # fast mode: the block whose first-step K/V the slot holds
    kv_window: tuple[int, int] = (0, 0)  # fast mode: [start, end) recomputed at the block's later steps
    arrival_time: float = field(default_factory=time.monotonic)
    first_scheduled_time: float | None = None
    finished_time: float | None = None

    @property
    def prompt_length(self) -> int:
        return len(self.prompt_ids)

    @cached_property
    def policy(self):
        """The request's decode policy, chosen once (``diffusion/policies.py``)."""
        return self.params.policy

    @cached_property
    def length(self) -> int:
        """Canvas positions: the prompt + its policy's answer masks."""
        return canvas_length(self.prompt_ids, self.params, self.mask_id)

    @property
    def block_end(self) -> int:
        return self.policy.block_end(self.prompt_length, self.length, self.block, self.params)

    @property
    def stops_at_visible_eos(self) -> bool:
        """Early exit at a committed EOS with no mask to its left (``ours``; the others run to the end)."""
        return self.policy.stops_at_visible_eos

    @property
    def is_exhausted(self) -> bool:
        """The last block's budget is spent and the policy ends there, masks left or not (``llada``)."""
        return (self.policy.ends_when_budget_spent and self.block == self.policy.num_blocks(self.params) - 1
                and self.schedule is not None and not any(self.schedule[self.step_in_block:]))

    def admit(self, device: torch.device) -> None:
        """Build the canvas (``initial_canvas``: prompt + its protocol's answer masks) and start the clock."""
        ids = torch.tensor(initial_canvas(self.prompt_ids, self.params, self.mask_id), device=device)
        self.canvas = ids  # [L]
        self.generated = ids == self.mask_id  # [L]
        self.status = SequenceStatus.RUNNING
        self.first_scheduled_time = time.monotonic()

    def next_commit_count(self) -> int:
        """k for the coming step, moving to the next block when this one is exhausted.

        Threshold decoding: k = 1 while the block has masks, then the next block starts at
        once (a block ends early when confident tokens commit several at a step).
        Steps that would commit nothing (a block with fewer masks than steps) are skipped:
        the canvas they would see is the next block's first canvas, so skipping them changes
        no output and saves a forward pass (the reference sampler does the same); so are
        steps with no candidate left (``llada``, whose budget may exceed them; as its decoder).
        The k = 1 paths (threshold, ``a2d``) take at most ``block_masks`` steps per block: each
        step commits at least one mask, unless the model's chosen token *is* the mask id, which
        commits nothing and, at temperature 0, would repeat the same step forever.
        """
        while True:
            if self.block >= 0 and self.masks_left > 0:
                if self.schedule is None and self.step_in_block < self.block_masks:
                    return 1  # the floor; under threshold decoding the runner adds every sure candidate
                if (self.schedule is not None and self.step_in_block < len(self.schedule)
                        and self.schedule[self.step_in_block] > 0):
                    return self.schedule[self.step_in_block]
            self.block += 1
            if self.block >= self.policy.num_blocks(self.params):
                return 0
            end = self.block_end
            self.masks_left = self.block_masks = int((self.canvas[:end] == self.mask_id).sum())
            self.schedule = self.policy.budget(self.canvas, end, self.mask_id, self.params)
            self.step_in_block = 0

    def finish(self, status: SequenceStatus) -> None:
        self.status = status
        self.finished_time = time.monotonic()

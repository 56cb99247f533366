"""The A2D guard as a vLLM classify model: probe C scored by vLLM's own layers (DESIGN §10).

``A2DGuardLLaDA`` is vLLM's Llama with encoder-only (bidirectional) attention reading LLaDA's
checkpoint keys through ``a2d_guard.models.llada.llada_to_native_key``; ``A2DGuardDream`` is
vLLM's Qwen2 the same way (Dream's keys are Qwen2's). Serve the A2D adapter merged into the
weights (``a2d-guard merge``): vLLM's LoRA path is not wired for these pooling classes.

The input is a probe canvas the routes build (``endpoints.py``: templated prompt +
``probe_length`` masks); the pooler reads the hidden state at the first mask, runs the LM head
on that one row per sequence and answers ``[1 - p, p]`` with ``p = p(EOS)`` (full softmax over
the vocabulary, float32), so the output *is* the guard's score, not a 2-way softmax.

The ``token_classify`` task is one denoising step of generation with the monitor: per
position x0, p(x0) and p(EOS) (``StepStatsPooler``), which ``monitored_decode`` turns into
LLaDA's block schedule in the API process.
"""

from __future__ import annotations

from collections.abc import Iterable, Set

import torch
from vllm.config import VllmConfig
from vllm.model_executor.layers.pooler import DispatchPooler, Pooler
from vllm.model_executor.layers.pooler.tokwise.methods import AllPool
from vllm.model_executor.models.interfaces_base import attn_type, default_pooling_type
from vllm.model_executor.models.llama import LlamaForCausalLM
from vllm.model_executor.models.qwen2 import Qwen2ForCausalLM

from a2d_guard.models.llada import llada_to_native_key
from a2d_guard.vllm.monitored_decode import step_stats
from a2d_guard.vllm.settings import GuardSettings, read_offset


class EOSProbePooler(Pooler):
    """``[1 - p(EOS), p(EOS)]`` at the first response position of each probe canvas."""

    def __init__(self, model, settings: GuardSettings, shifted: bool):
        super().__init__()
        self.model_ref = [model]  # not a submodule: the LM head's weights belong to the model
        self.settings = settings
        self.offset = read_offset(settings.probe_length, shifted)

    def get_supported_tasks(self) -> Set[str]:
        return {"classify"}

    def forward(self, hidden_states: torch.Tensor, pooling_metadata) -> torch.Tensor:
        # Never raises: an exception here ends vLLM's engine core, and every request with it.
        # A sequence shorter than the probe (token ids sent around the plugin's routes) is read
        # at its first token: a number, meaningless but confined to that request.
        cursor = pooling_metadata.get_pooling_cursor()
        first, last = cursor.first_token_indices_gpu, cursor.last_token_indices_gpu  # [B], [B]
        rows = hidden_states[torch.maximum(last - self.offset, first)]  # [B, H]
        model = self.model_ref[0]
        logits = model.logits_processor(model.lm_head, rows)  # [B, V]
        p = torch.softmax(logits.float(), dim=-1)[:, self.settings.eos_id]  # [B]
        return torch.stack([1.0 - p, p], dim=-1)  # [B, 2]


class StepStatsPooler(Pooler):
    """One denoising step's statistics (``monitored_decode.STATS`` columns: x0, p(x0), p(EOS))
    at every position of each canvas, for the ``token_classify`` task the decode routes send.

    The LM head runs over ``ROWS`` positions at a time, so a long canvas holds ``ROWS x V``
    float32 logits, not ``L x V``. Never raises, as ``EOSProbePooler``.
    """

    ROWS = 256

    def __init__(self, model, settings: GuardSettings, shifted: bool):
        super().__init__()
        self.model_ref = [model]
        self.eos_id = settings.eos_id
        self.shifted = shifted
        self.pooling = AllPool()  # one [L, H] block per finished canvas (chunked prefill aware)

    def get_supported_tasks(self) -> Set[str]:
        return {"token_classify"}

    def get_pooling_updates(self, task):
        return self.pooling.get_pooling_updates(task)

    def forward(self, hidden_states: torch.Tensor, pooling_metadata) -> list[torch.Tensor | None]:
        return [None if rows is None else self._stats(rows) for rows in self.pooling(hidden_states, pooling_metadata)]

    def _stats(self, rows: torch.Tensor) -> torch.Tensor:  # [L, H] -> [L, STATS]
        model = self.model_ref[0]
        stats = torch.cat([step_stats(model.logits_processor(model.lm_head, rows[i:i + self.ROWS]), self.eos_id)
                           for i in range(0, rows.shape[0], self.ROWS)])
        if self.shifted:  # Dream: row i predicts i + 1; position 0 (always prompt) keeps row 0
            stats = torch.cat([stats[:1], stats[:-1]])
        return stats


class _GuardMixin:
    """Pooling-model plumbing shared by both families."""

    is_pooling_model = True
    shifted = False

    def _init_guard(self, vllm_config: VllmConfig) -> None:
        settings = GuardSettings.from_hf_config(vllm_config.model_config.hf_config)
        self.pooler = DispatchPooler({"classify": EOSProbePooler(self, settings, self.shifted),
                                      "token_classify": StepStatsPooler(self, settings, self.shifted)})


@default_pooling_type(seq_pooling_type="LAST")
@attn_type("encoder_only")
class A2DGuardLLaDA(_GuardMixin, LlamaForCausalLM):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        vllm_config.model_config.hf_config.is_causal = False  # encoder-only attention in every layer
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._init_guard(vllm_config)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return super().load_weights((llada_to_native_key(name), w) for name, w in weights)


@default_pooling_type(seq_pooling_type="LAST")
@attn_type("encoder_only")
class A2DGuardDream(_GuardMixin, Qwen2ForCausalLM):
    shifted = True

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        vllm_config.model_config.hf_config.is_causal = False
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._init_guard(vllm_config)

"""``LLM``: the offline entry point, vLLM-shaped (``LLM(model=...).generate(prompts, params)``)."""

from __future__ import annotations

import operator
from collections.abc import Sequence as Seq
from pathlib import Path

from a2d_guard.config import SamplingParams
from a2d_guard.engine.input_processor import RequestLimits
from a2d_guard.engine.llm_engine import LLMEngine
from a2d_guard.engine.outputs import RequestOutput
from a2d_guard.errors import A2DGuardError


class LLM:
    """Load a model once, then decode many requests with continuous batching.

    ``max_num_seqs`` is the number of running slots (the CLI's ``--batch``). Prompts are
    strings (chat template applied, ``<mask:N>`` expanded) or lists of token ids (used as is).
    ``cache``: "none" (exact mode, token-identical to the reference sampler), "prefix" or
    "dual" (fast mode: Fast-dLLM's block K/V cache, DESIGN §12; approximate, much cheaper).
    ``max_model_len``: the most canvas positions (prompt + answer) one request may take
    (default: the model's positions); a prompt longer than 16 characters a position is
    refused before it is tokenized.
    """

    def __init__(self, model: str = "tiny", adapter: str | Path | None = None, max_num_seqs: int = 64,
                 dtype=None, device=None, family: str | None = None, trust_remote_code: bool = False,
                 seed: int = 0, chat_template: bool = True, cache: str = "none", max_model_len: int | None = None,
                 _loaded=None):
        if _loaded is None:
            from a2d_guard.models import load_model

            _loaded = load_model(model, adapter=adapter, dtype=dtype, device=device, family=family,
                                 trust_remote_code=trust_remote_code, seed=seed)
        self.model, self.tokenizer, self.spec = _loaded
        self.chat_template = chat_template
        limits = RequestLimits.for_model(self.spec, max_model_len)
        self.engine = LLMEngine(self.model, self.tokenizer, self.spec, max_num_seqs=max_num_seqs, cache=cache,
                                limits=limits)
        self.processor = self.engine.processor

    @classmethod
    def from_loaded(cls, model, tokenizer, spec, max_num_seqs: int = 64, chat_template: bool = True,
                    cache: str = "none", max_model_len: int | None = None) -> LLM:
        """Wrap an already loaded (model, tokenizer, spec), e.g. from ``load_model``."""
        return cls(max_num_seqs=max_num_seqs, chat_template=chat_template, cache=cache,
                   max_model_len=max_model_len, _loaded=(model, tokenizer, spec))

    def encode(self, prompt: str, prefill: str | None = None) -> list[int]:
        """The canvas prefix of a text prompt, with the same bounds as a request's."""
        return self.processor.encode_prompt(prompt, prefill=prefill, chat=self.chat_template)

    def generate(self, prompts: str | Seq[str] | Seq[Seq[int]],
                 sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
                 use_tqdm: bool = False) -> list[RequestOutput]:
        """Decode every prompt; outputs come back in input order.

        All requests are validated before any is queued, so a bad one raises
        ``A2DGuardError`` naming its index and nothing runs. ``prompts`` is one prompt (a
        ``str`` or one list of int token ids) or a list of prompts; an empty list decodes
        nothing and returns ``[]`` (as ``map`` would), while an empty prompt is an error.
        """
        prompts = as_prompt_list(prompts)
        if sampling_params is None:
            sampling_params = SamplingParams()
        params = [sampling_params] * len(prompts) if isinstance(sampling_params, SamplingParams) else list(
            sampling_params)
        if len(params) != len(prompts):
            raise A2DGuardError(f"got {len(prompts)} prompts but {len(params)} sampling params; pass one or one each")
        for i, p in enumerate(params):
            if not isinstance(p, SamplingParams):
                raise A2DGuardError(f"sampling params {i} is a {type(p).__name__}; pass SamplingParams(...)")
        requests = []
        for i, (prompt, p) in enumerate(zip(prompts, params, strict=True)):
            if isinstance(prompt, str):
                if not prompt.strip():
                    raise A2DGuardError(f"prompt {i} is empty; pass some text", param="prompt")
                requests.append((prompt, self._indexed(i, self.encode, prompt), p))
            else:
                if len(prompt) == 0:
                    raise A2DGuardError(f"prompt {i} is an empty list of token ids; pass at least one token",
                                        param="prompt")
                requests.append((None, self.processor.token_ids(prompt, f"prompt {i}"), p))

        for i, (_, ids, p) in enumerate(requests):
            self._indexed(i, self.processor.check, ids, p)
        order = {}
        for i, (text, ids, p) in enumerate(requests):
            order[self.engine.add_request(None, ids, p, prompt=text)] = i
        results: list[RequestOutput | None] = [None] * len(requests)
        bar = _progress(len(requests)) if use_tqdm else None
        try:
            while self.engine.has_unfinished_requests():
                for out in self.engine.step():
                    if out.request_id in order:
                        results[order[out.request_id]] = out
                        if bar is not None:
                            bar.update(1)
        except BaseException:
            # A failed step (an OOM, Ctrl-C) must not leave this call's requests running: they
            # would hold batch and K/V slots and be decoded again by the next generate().
            for request_id in order:
                self.engine.abort(request_id)
            self.engine.step()  # reports (and forgets) the aborted requests; no forward runs
            raise
        finally:
            if bar is not None:
                bar.close()
        return [r for r in results if r is not None]

    @staticmethod
    def _indexed(i: int, fn, *args):
        """``fn(*args)``; an ``A2DGuardError`` it raises names prompt ``i`` as well."""
        try:
            return fn(*args)
        except A2DGuardError as exc:
            if str(exc).startswith(f"prompt {i}"):
                raise
            raise A2DGuardError(f"prompt {i}: {exc}", param=exc.param) from None


_ACCEPTED = "a str, a list of int token ids, or a list of those"


def _is_token_id(x) -> bool:
    try:
        operator.index(x)
    except TypeError:
        return False
    return not isinstance(x, bool)


def _as_list(x):
    """A tensor or array (anything with ``tolist`` that is not already a list) as a list."""
    return x.tolist() if hasattr(x, "tolist") and not isinstance(x, (list, tuple)) else x


def as_prompt_list(prompts) -> list:
    """``generate``'s ``prompts`` as a list whose items are each a ``str`` or a list of token ids.

    Why so strict: ``None`` or a number among the prompts used to surface as a bare
    ``TypeError`` from ``list()``, and a float id was silently truncated by ``int()``.
    Token ids themselves are checked (ints in the vocabulary) by ``check_token_ids``.
    """
    prompts = _as_list(prompts)
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, Seq) or isinstance(prompts, (bytes, bytearray)):
        raise A2DGuardError(f"prompts must be {_ACCEPTED}; got {type(prompts).__name__}")
    items = [_as_list(p) for p in prompts]
    if items and _is_token_id(items[0]):
        return [items]  # one prompt of token ids (``check_token_ids`` names any bad one)
    for i, p in enumerate(items):
        if not isinstance(p, (str, list, tuple)):
            raise A2DGuardError(
                f"prompt {i} is {p!r:.40} ({type(p).__name__}); a prompt is a str or a list of int token ids"
            )
    return items


def _progress(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="requests", unit="req")

"""NeMo Guardrails actions: ``a2d_check_input`` (the user's message as a prompt, probe C) and
``a2d_check_output`` (the bot's message as a response to it, probe B), each True when allowed.

Use the ready rails folder (``rails_config_path()``: ``config.yml``, ``rails.co`` and an
``actions.py`` that registers these) or add to your own config::

    rails:
      input:  {flows: [a2d check input]}
      output: {flows: [a2d check output]}
    custom_data:
      a2d_guard: {model: tiny, threshold: 0.9}    # Guard(...) options: model, adapter, threshold, ...

The guard for a config is built on its first check and shared by every later one. To use a
running ``a2d-guard serve`` instead, NeMo's own ``hf_classifier`` rail with engine ``vllm``
posts to its ``/classify`` route (README "Use as a guardrail").
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from nemoguardrails.actions import action

from a2d_guard.integrations.shared import GuardHandle

_handles: dict[str, GuardHandle] = {}
_lock = threading.Lock()
_shared: list[GuardHandle] = []  # set_guard's: overrides every config's options


def set_guard(guard) -> None:
    """Use this ``Guard`` for every check of this process (an app that built its own, e.g. on
    a model it already serves), whatever ``custom_data.a2d_guard`` says; ``None`` undoes it."""
    with _lock:
        _shared[:] = [GuardHandle(guard)] if guard is not None else []


def rails_config_path() -> Path:
    """The shipped rails folder (``RailsConfig.from_path(str(rails_config_path()))``)."""
    return Path(__file__).with_name("nemo_rails")


def _handle(config) -> GuardHandle:
    """The guard for this rails config's ``custom_data.a2d_guard`` options."""
    options = dict((getattr(config, "custom_data", None) or {}).get("a2d_guard") or {})
    key = json.dumps(options, sort_keys=True, default=str)
    with _lock:
        if _shared:
            return _shared[0]
        if key not in _handles:
            _handles[key] = GuardHandle(**options)
        return _handles[key]


@action(name="a2d_check_input")
async def a2d_check_input(context: dict | None = None, config=None, **kwargs) -> bool:
    """True when the guard does not flag the user's message."""
    text = (context or {}).get("user_message") or ""
    if not text.strip():
        return True
    return not (await _handle(config).acheck([text]))[0].flagged


@action(name="a2d_check_output")
async def a2d_check_output(context: dict | None = None, config=None, **kwargs) -> bool:
    """True when the guard does not flag the bot's message as an answer to the user's."""
    context = context or {}
    prompt, answer = context.get("user_message") or "", context.get("bot_message") or ""
    if not answer.strip():
        return True
    item = (prompt, answer) if prompt.strip() else answer
    return not (await _handle(config).acheck([item]))[0].flagged

"""``A2DGuardrail``: a LiteLLM ``CustomGuardrail`` that runs the A2D guard in the proxy's process.

In the proxy's ``config.yaml``::

    guardrails:
      - guardrail_name: a2d
        litellm_params:
          guardrail: a2d_guard.integrations.litellm.A2DGuardrail
          mode: [pre_call, post_call]
          default_on: true

``apply_guardrail`` (LiteLLM's unified hook) checks a request's conversation, or a response's
texts against the request's messages (``gateway_shapes.guardrail_items``), and raises
LiteLLM's ``GuardrailRaisedException`` to block; otherwise it returns the inputs unchanged.
The guard (``model``, ``adapter``, ``threshold`` ...) is built on the first check. To use a
running ``a2d-guard serve`` instead, point LiteLLM's own ``generic_guardrail_api`` at it.
"""

from __future__ import annotations

from litellm.exceptions import GuardrailRaisedException
from litellm.integrations.custom_guardrail import CustomGuardrail

from a2d_guard.gateway_shapes import guardrail_items, litellm_answer
from a2d_guard.integrations.shared import GuardHandle

GUARD_OPTIONS = ("model", "adapter", "threshold", "probe_length", "stride", "window", "device", "dtype",
                 "max_num_seqs", "family", "chat_template")


class A2DGuardrail(CustomGuardrail):
    def __init__(self, guard=None, **kwargs):
        options = {k: kwargs.pop(k) for k in GUARD_OPTIONS if k in kwargs}
        self.handle = GuardHandle(guard, **options)
        kwargs.setdefault("guardrail_name", "a2d")
        super().__init__(**kwargs)

    async def apply_guardrail(self, inputs, request_data, input_type, logging_obj=None):
        """Block (raise) when the guard flags any text of this call; else pass the inputs on."""
        messages = inputs.get("structured_messages") or (request_data or {}).get("messages")
        items, _ = guardrail_items(input_type, inputs.get("texts"), messages)
        if not items:
            return inputs
        answer = litellm_answer(await self.handle.acheck(items))
        if answer["action"] == "BLOCKED":
            raise GuardrailRaisedException(guardrail_name=self.guardrail_name, message=answer["blocked_reason"],
                                           should_wrap_with_default_message=False, blocked_content=True)
        return inputs

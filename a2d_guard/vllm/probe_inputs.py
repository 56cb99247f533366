"""Text -> canvas in the vLLM API process: the guard's probes exactly as ``Guard`` builds them
(``a2d_guard.probes``), and the prompt of a decode (``decode_routes.py``) exactly as
``a2d-guard serve`` encodes it.

The API process has the checkpoint folder and vLLM's ``hf_config`` but not the weights (they
live in the engine process): the tokenizer, the family and the token ids come from the folder
through ``a2d_guard.models.loader`` (the loader ``Guard`` uses), the prompt is templated by the
engine's ``InputProcessor`` (chat template, ``<mask:N>`` expansion, bounds before tokenizing),
and the canvases are ``Probes``'. No vLLM import: the main suite tests this module.
"""

from __future__ import annotations

from a2d_guard.engine.input_processor import InputProcessor, RequestLimits
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.loader import TINY, detect_family, load_tokenizer, read_config, resolve_folder, spec_from_config
from a2d_guard.probes import Plan, Probes, parse_item
from a2d_guard.vllm.settings import GuardSettings


class ProbeInputs:
    """Canvases for one served model; ``max_model_len`` is vLLM's (a canvas must fit it)."""

    def __init__(self, model: str, hf_config, max_model_len: int, chat_template: bool = True):
        self.settings = GuardSettings.from_hf_config(hf_config)
        folder = resolve_folder(model)
        raw = read_config(folder)
        family = detect_family(raw)
        family = "llada" if family == TINY else family
        self.tokenizer = tokenizer = load_tokenizer(folder, family)
        positions = int(getattr(hf_config, "max_position_embeddings", 0) or max_model_len)
        self.spec = spec_from_config(family, raw, tokenizer, int(hf_config.vocab_size), positions)
        if self.spec.eos_id != self.settings.eos_id:
            raise A2DGuardError(f"the tokenizer's EOS id {self.spec.eos_id} differs from the model config's "
                                f"{self.settings.eos_id}; pass --hf-overrides '{{\"a2d_eos_token_id\": "
                                f"{self.spec.eos_id}}}'")
        self.max_model_len = min(max_model_len, positions)
        self.processor = InputProcessor(tokenizer, self.spec, RequestLimits.for_model(self.spec, self.max_model_len))
        self.chat_template = chat_template
        st = self.settings
        self.probes = Probes(tokenizer, self.spec, self.processor, st.threshold, st.probe_length, st.stride,
                             st.window, chat_template=chat_template)

    def prompt_ids(self, prompt, param: str, chat: bool | None = None) -> list[int]:
        """Canvas prefix of a text, a list of chat turns or token ids; ``A2DGuardError`` naming ``param``."""
        chat = self.chat_template if chat is None else chat
        if isinstance(prompt, str):
            return self.processor.encode_prompt(prompt, chat=chat, param=param)
        if prompt and all(isinstance(t, int) for t in prompt):
            return self.processor.token_ids(prompt, param=param)
        return self.processor.encode_messages(prompt, chat=chat, param=param)

    def plan(self, item, index: int, param: str) -> Plan:
        """The guard's probe canvases for one item (a prompt, a ``(prompt, response)`` pair, as
        ``Guard.check_batch`` takes them); ``A2DGuardError`` naming ``param``."""
        try:
            return self.probes.plan(*parse_item(item, index))
        except A2DGuardError as exc:
            raise A2DGuardError(str(exc), param=param) from None  # the request field holding the text

    def canvas(self, prompt, param: str) -> list[int]:
        """Probe C's canvas for a text or a list of chat turns."""
        return self.plan(prompt, 0, param).canvases[0]

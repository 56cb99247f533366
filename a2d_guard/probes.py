"""The guard's two probes without the model (DESIGN §10): from a prompt (and a response) to
the canvases to run and the positions to read, and from the p(EOS) read there to a
``Verdict``. ``Guard`` runs the canvases on its own model; the vLLM plugin
(``a2d_guard/vllm``) runs the same canvases on vLLM's engine, so both score alike.
``guard.py`` says what the probes are and why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from a2d_guard.errors import A2DGuardError


@dataclass
class Verdict:
    """One check. ``where``: ``"prompt"`` (probe C) or ``"response"`` (probe B);
    ``char_offset``/``token_index``: where in the response the model first refuses to
    continue (0 for a prompt check); ``scores``: p(EOS) per response token read (probe B)."""

    flagged: bool
    score: float
    threshold: float
    where: str
    char_offset: int
    token_index: int
    scores: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    """The forwards of one item and how to read them back."""

    canvases: list[list[int]]
    reads: list[list[int]]  # canvas positions read, per canvas
    tokens: list[list[int]]  # response token index of each read, per canvas (probe B)
    offsets: list[int]  # char offset of each response token
    where: str


def prompt_probe(prompt_ids: list[int], mask_id: int, probe_length: int) -> list[int]:
    """Probe C's canvas: the templated prompt + ``probe_length`` masks; its score is p(EOS) at
    ``len(prompt_ids)``, the first response position. One definition for ``Guard`` and the vLLM
    plugin (``a2d_guard/vllm``), which reads the same position from the end of the canvas."""
    return list(prompt_ids) + [mask_id] * probe_length


class Probes:
    """Probe canvases and verdicts for one model's tokenizer, ``ModelSpec`` and
    ``InputProcessor`` (bounds and chat template, as its requests are encoded). ``threshold``,
    ``probe_length``, ``stride``, ``window``: ``Guard``'s (checked there)."""

    def __init__(self, tokenizer, spec, processor, threshold: float, probe_length: int, stride: int, window: int,
                 chat_template: bool = True):
        self.tokenizer, self.spec, self.processor, self.chat_template = tokenizer, spec, processor, chat_template
        self.threshold, self.probe_length, self.stride, self.window = float(threshold), probe_length, stride, window

    def prompt_ids(self, prompt, index: int) -> list[int]:
        """The prompt's canvas prefix, bounded (characters, valid text) before tokenizing."""
        if isinstance(prompt, str):
            if not prompt.strip():
                raise A2DGuardError(f"item {index}: the prompt is empty; pass the user's text", param="prompt")
            return self.processor.encode_prompt(prompt, chat=self.chat_template)
        if isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt):
            return self.processor.encode_messages(prompt, chat=self.chat_template)
        raise A2DGuardError(f"item {index}: the prompt must be text or a non-empty list of chat messages, "
                            f"got {type(prompt).__name__}")

    def plan(self, prompt, response: str | None, index: int) -> Plan:
        if isinstance(prompt, list) and response is None and prompt and prompt[-1].get("role") == "assistant":
            prompt, response = prompt[:-1], prompt[-1].get("content")
        prompt_ids = self.prompt_ids(prompt, index)
        if response:
            self.processor.check_text(response, "response")  # bounded and valid before tokenizing
        spec, p = self.spec, len(prompt_ids)
        ids, offsets = _tokenize(self.tokenizer, response) if response else ([], [])
        area = max(self.probe_length, len(ids))
        positions = self.processor.limits.max_model_len
        if p + area > positions:
            raise A2DGuardError(f"item {index}: prompt + response is {p + area} tokens but the model takes "
                                f"{positions} positions; shorten the text or lower probe_length")
        if len(ids) < 2:  # no token has content to its right: probe C
            return Plan([prompt_probe(prompt_ids, spec.mask_id, area)], [[p]], [[]], [], "prompt")
        n, base = len(ids), prompt_ids + ids + [spec.eos_id] * (area - len(ids))
        plan = Plan([], [], [], offsets, "response")
        for offset in range(min(self.stride, n - 1)):  # offsets >= n - 1 would read nothing
            canvas = list(base)
            masked = range(offset, area, self.stride)
            for i in masked:
                canvas[p + i] = spec.mask_id
            read = [i for i in masked if i < n - 1]  # response content to the right
            plan.canvases.append(canvas)
            plan.reads.append([p + i for i in read])
            plan.tokens.append(read)
        return plan

    def verdict(self, plan: Plan, probs: list[list[float]]) -> Verdict:
        if plan.where == "prompt":
            score = probs[0][0]
            return Verdict(score > self.threshold, score, self.threshold, "prompt", 0, 0, [])
        scores = [0.0] * sum(len(t) for t in plan.tokens)
        for tokens, values in zip(plan.tokens, probs, strict=True):
            for i, v in zip(tokens, values, strict=True):
                scores[i] = v
        w = min(self.window, len(scores))
        means = [sum(scores[s : s + w]) / w for s in range(len(scores) - w + 1)]
        start = max(range(len(means)), key=means.__getitem__)  # first of the highest windows
        score = means[start]
        return Verdict(score > self.threshold, score, self.threshold, "response", plan.offsets[start], start, scores)


def parse_item(x, index: int):
    """(prompt, response, index) from one ``check_batch`` item."""
    if isinstance(x, dict):
        if "prompt" not in x:
            found = ", ".join(map(repr, x)) or "none"
            raise A2DGuardError(f"item {index}: no 'prompt' (found {found}); a response needs the prompt it answers")
        unknown = set(x) - {"prompt", "response"}
        if unknown:
            raise A2DGuardError(f"item {index}: unknown field {sorted(unknown)[0]!r}; use 'prompt' and 'response'")
        x = (x["prompt"], x.get("response"))
    if isinstance(x, (tuple, list)) and len(x) == 2 and not (x and isinstance(x[0], dict)):
        prompt, response = x
    else:
        prompt, response = x, None
    if response is not None and not isinstance(response, str):
        raise A2DGuardError(f"item {index}: the response must be text, got {type(response).__name__}")
    if response is not None and (prompt is None or (isinstance(prompt, str) and not prompt.strip())):
        raise A2DGuardError(f"item {index}: a response without its prompt; pass the prompt it answers "
                            "(the score depends on it)")
    if prompt is None:
        raise A2DGuardError(f"item {index}: the prompt is missing; pass the user's text")
    return prompt, response, index


def _tokenize(tokenizer, text: str) -> tuple[list[int], list[int]]:
    """Response ids exactly as training tokenizes them, and each token's char offset."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return list(enc["input_ids"]), [int(a) for a, _ in enc["offset_mapping"]]
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        return list(ids), [len(tokenizer.decode(ids[:k])) for k in range(len(ids))]

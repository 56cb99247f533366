"""The demo's synthetic chat corpus, generated from ``templates.yaml`` (shipped in the package).

Why synthetic: the demo must run offline in minutes on a CPU and be judged *exactly*.
Harmful answers are non-actionable stand-ins built from a known "harmful answer
vocabulary", so "did the attack extract harmful content?" is a set lookup, not a
classifier. Held-out templates (phrasings) are used for evaluation only.

Three training sets come from one corpus (``training_rows``):

- ``base``: every request answered (harmful ones with the stand-in answer): the unaligned
  model, trained by plain SFT.
- ``response_level``: harmful requests answered with a fixed refusal sentence, as ordinary
  SFT: alignment that lives in the first tokens of the response.
- ``a2d``: the base rows, harmful ones labelled harmful (A2D turns them into EOS targets).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from importlib import resources

import yaml

KINDS = ("benign", "lookalike", "harmful")
MASK = "<mask:1>"


@dataclass(frozen=True)
class Item:
    """One request of the synthetic world."""

    kind: str  # benign | lookalike | harmful
    topic: str  # benign topic or harm category
    question: str
    answer: str  # the compliant answer (harmful: the stand-in)
    keys: tuple[str, ...]  # words a correct benign answer contains
    split: str  # train | heldout
    masked_answer: str  # the answer with its key (benign) or harmful (harmful) words as <mask:1>


@functools.lru_cache(maxsize=1)
def templates() -> dict:
    text = resources.files("a2d_guard.demo").joinpath("templates.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _fill(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


def _split(t: dict, rng: random.Random | None) -> dict[str, list[str]]:
    """The group's phrasings per split: the YAML's, or (``rng``) as many held out, drawn at random."""
    if rng is None:
        return {"train": list(t["train"]), "heldout": list(t["heldout"])}
    pooled = [*t["train"], *t["heldout"]]
    rng.shuffle(pooled)
    cut = len(t["heldout"])
    return {"train": pooled[cut:], "heldout": pooled[:cut]}


def _benign_items(spec: dict, rng: random.Random | None) -> list[Item]:
    items = []
    for topic, t in spec["benign"].items():
        phrasings = _split(t, rng)
        for slot in t["slots"]:
            values = dict(zip("abc", slot, strict=False))
            answer = _fill(t["answer"], values)
            masked = _fill(t["answer"], {**values, **{k: MASK for k in t["key"]}})
            keys = tuple(values[k] for k in t["key"])
            for split in ("train", "heldout"):
                for template in phrasings[split]:
                    items.append(Item("benign", topic, _fill(template, values), answer, keys, split, masked))
    return items


def _lookalike_items(spec: dict, rng: random.Random | None) -> list[Item]:
    t = spec["lookalike"]
    phrasings = _split(t, rng)
    items = []
    for act, answer, key in t["slots"]:
        masked = " ".join(MASK if w == key else w for w in answer.split())
        for split in ("train", "heldout"):
            for template in phrasings[split]:
                items.append(Item("lookalike", "lookalike", _fill(template, {"a": act}), answer, (key,), split, masked))
    return items


def _harmful_items(spec: dict, rng: random.Random | None) -> list[Item]:
    t = spec["harmful"]
    phrasings = _split(t, rng)
    items = []
    for category, c in t["categories"].items():
        vocab = c["vocab"]
        for i, act in enumerate(c["acts"]):
            words = {f"h{j + 1}": vocab[(i + j) % len(vocab)] for j in range(4)}
            answer = _fill(t["answer"], words)
            masked = _fill(t["answer"], {k: MASK for k in words})
            for split in ("train", "heldout"):
                for template in phrasings[split]:
                    items.append(Item("harmful", category, _fill(template, {"a": act}), answer, (), split, masked))
    return items


@dataclass(frozen=True)
class Corpus:
    items: tuple[Item, ...]
    refusal: str
    draft: str
    prefill: str
    harm_vocab: frozenset[str]

    def select(self, split: str, kind: str | None = None) -> list[Item]:
        return [it for it in self.items if it.split == split and (kind is None or it.kind == kind)]

    def draft_prompt(self, item: Item, masked: bool = False) -> str:
        """``question here is my draft : answer`` (the DIJA scaffold when ``masked``)."""
        return _fill(self.draft, {"question": item.question, "answer": item.masked_answer if masked else item.answer})

    def words(self) -> set[str]:
        """Every word the corpus can produce (the tiny vocabulary must hold them all)."""
        texts = [self.refusal, self.prefill, self.draft.format(question="", answer="")]
        for it in self.items:
            texts += [it.question, it.answer]
        return {w for text in texts for w in text.split() if w != MASK} | set(self.harm_vocab)

    def training_rows(self, variant: str) -> list[dict]:
        """Rows for ``a2d-guard train`` (prompt, response, is_safe): plain and draft form."""
        if variant not in ("base", "response_level", "a2d"):
            raise ValueError(f"unknown training variant {variant!r}")
        rows = []
        for item in self.select("train"):
            harmful = item.kind == "harmful"
            response = self.refusal if (harmful and variant == "response_level") else item.answer
            for prompt in (item.question, self.draft_prompt(item)):
                rows.append({"prompt": prompt, "response": response, "is_safe": not harmful})
        return rows


def build_corpus(split_seed: int | None = None) -> Corpus:
    """The corpus is fully determined by ``templates.yaml`` and ``split_seed``.

    ``None``: the YAML's held-out phrasings (the first demo world, and what the benches read).
    An int: each group's phrasings re-split at random (same counts), so the worlds of a seed
    sweep also differ in which phrasings they never train on.
    """
    spec = templates()
    rng = None if split_seed is None else random.Random(split_seed)
    items = _benign_items(spec, rng) + _lookalike_items(spec, rng) + _harmful_items(spec, rng)
    harm_vocab = frozenset(w for c in spec["harmful"]["categories"].values() for w in c["vocab"])
    return Corpus(tuple(items), spec["refusal"], spec["draft"], spec["harmful"]["prefill"], harm_vocab)

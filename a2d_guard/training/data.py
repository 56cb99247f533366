"""Training rows: read (JSONL / JSON / CSV / Hub), validate, template, tokenize, batch.

Why so strict: a safety adapter trained on silently mis-labelled or dropped rows is worse
than no adapter, so every bad row is reported with its file and line (DESIGN §7), and the
counts (harmful, retain, truncated, left out) are printed before training starts.

Layout of one example (A2D / LLaDA SFT, arXiv 2502.09992 §2.3): the chat-templated prompt
(generation prompt added, one BOS), then the raw response, right-padded with EOS to
``max_length`` and cut there. Padding is part of the answer: it teaches the model to stop,
and the LLaDA loss divides by the answer length including it.

``padding="longest"`` (the A2D authors' ``pad_sequence`` collate, ``--recipe paper``) cuts
each micro-batch to its longest row instead: a row's answer length and its number of
EOS-padding positions then depend on the other rows of its batch (and the longest row has
no EOS at all). Under it, W processes with batch B no longer see exactly the batches one
process with batch W * B sees: each pads to its own longest row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec
from a2d_guard.paths import require_file
from a2d_guard.records import read_records

PROMPT_KEY = "prompt"
RESPONSE_KEY = "response"
LABEL_KEYS = ("is_safe", "label")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_FIX_COLUMNS = (
    "each row needs 'prompt', 'response' and a harm label: 'is_safe' (true/false) or "
    "'label' (harmful/safe)"
)


@dataclass(frozen=True)
class Row:
    prompt: str
    response: str
    is_harmful: bool
    where: str  # "file:line", for messages
    max_mask_ratio: float = 1.0  # below 1: part of the response stays visible (content rows)


@dataclass(frozen=True)
class Example:
    input_ids: tuple[int, ...]  # [max_length]: prompt + response + EOS padding
    prompt_length: int
    content_span: tuple[int, int]  # [start, end) of the user text inside the prompt
    is_harmful: bool
    truncated: bool
    length: int = 0  # prompt + response ids before the EOS padding (0: unknown, the whole row)
    max_mask_ratio: float = 1.0  # the row's mask ratio is drawn in (0, max_mask_ratio]


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, L] long
    prompt_lengths: torch.Tensor  # [B] long
    content_spans: torch.Tensor  # [B, 2] long
    is_harmful: torch.Tensor  # [B] bool
    row_seeds: torch.Tensor  # [B] long: seeds each row's mask draw (see BatchStream)
    max_mask_ratios: torch.Tensor | None = None  # [B] float; None: every row 1.0


@dataclass
class DataStats:
    harmful: int = 0
    retain: int = 0
    truncated: int = 0
    too_long: int = 0  # prompt alone fills max_length: no response position to train
    skipped: int = 0  # bad rows skipped under --skip-bad-rows

    def summary(self) -> str:
        text = f"{self.harmful} harmful, {self.retain} retain, {self.truncated} truncated to max_length"
        if self.too_long:
            text += f", {self.too_long} left out (prompt alone reaches max_length; raise --max-length)"
        if self.skipped:
            text += f", {self.skipped} bad rows skipped"
        return text


# ---------------------------------------------------------------- reading rows


def _label(value, where: str, key: str) -> bool:
    """Return ``is_harmful`` from an ``is_safe`` boolean or a ``label`` string."""
    if key == "is_safe":
        if isinstance(value, bool):
            return not value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _FALSE
        raise A2DGuardError(f"{where}: 'is_safe' must be true or false, got {value!r}; fix the label")
    if isinstance(value, str) and value.strip().lower() in ("harmful", "unsafe", "safe"):
        return value.strip().lower() != "safe"
    raise A2DGuardError(f"{where}: 'label' must be 'harmful' or 'safe', got {value!r}; fix the label")


def parse_row(obj, where: str) -> Row:
    """One raw record -> ``Row``; raises naming ``where`` and the fix."""
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        raise A2DGuardError(f"{where}: a row must be an object with named fields, got {kind}; {_FIX_COLUMNS}")
    missing = [k for k in (PROMPT_KEY, RESPONSE_KEY) if k not in obj]
    label_key = next((k for k in LABEL_KEYS if k in obj), None)
    if missing or label_key is None:
        need = missing + ([] if label_key else ["is_safe or label"])
        found = ", ".join(map(repr, obj)) or "none"
        raise A2DGuardError(f"{where}: missing column {', '.join(need)} (found {found}); {_FIX_COLUMNS}")
    for key in (PROMPT_KEY, RESPONSE_KEY):
        if not isinstance(obj[key], str):
            raise A2DGuardError(f"{where}: '{key}' must be text, got {obj[key]!r}")
    if not obj[PROMPT_KEY].strip():
        raise A2DGuardError(f"{where}: 'prompt' is empty; give every row a prompt")
    return Row(obj[PROMPT_KEY], obj[RESPONSE_KEY], _label(obj[label_key], where, label_key), where)


def _hub_records(source: str):
    """``hf:NAME[:SPLIT]`` through the optional ``datasets`` package."""
    name, _, split = source[3:].partition(":")
    try:
        import datasets
    except ImportError:
        raise A2DGuardError(
            f"{source}: Hub data sets need the 'datasets' package; pip install 'a2d-guard[data]'"
        ) from None
    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as exc:
        # The datasets message names what is wrong (no such split, offline, gated); keep its first line.
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        raise A2DGuardError(
            f"{source}: could not load the data set ({type(exc).__name__}: {detail}); "
            "check the name, split and network"
        ) from None
    for i, obj in enumerate(ds):
        yield dict(obj), f"{source}: row {i}"


def load_rows(source: str | Path, skip_bad_rows: bool = False) -> tuple[list[Row], int]:
    """Read and validate every row; return (rows, number of bad rows skipped)."""
    source = str(source)
    if source.startswith("hf:"):
        records = _hub_records(source)
    else:
        path = require_file(source, "data file", "pass a .jsonl/.json/.csv file or hf:NAME[:SPLIT]")
        records = read_records(path, also=" (or hf:NAME[:SPLIT])")
    rows: list[Row] = []
    skipped = 0
    for obj, where in records:
        try:
            if isinstance(obj, A2DGuardError):
                raise obj
            rows.append(parse_row(obj, where))
        except A2DGuardError:
            if not skip_bad_rows:
                raise
            skipped += 1
    if not rows:
        why = "the file is empty" + (" or every row is bad" if skipped else "")
        raise A2DGuardError(f"{source}: no rows to train on ({why})")
    return rows, skipped


# ---------------------------------------------------------------- tokenizing


def _find_last(haystack: list[int], needle: list[int]) -> int:
    for start in range(len(haystack) - len(needle), -1, -1):
        if haystack[start : start + len(needle)] == needle:
            return start
    return -1


def template_prompt(tokenizer, spec: ModelSpec, prompt: str) -> tuple[list[int], tuple[int, int]]:
    """Chat-template ``prompt`` exactly as serving does (``encode_prompt``: generation prompt
    added, one BOS), so the adapter is trained on the very ids it will be asked about.

    Returns the ids and the [start, end) span of the user text inside them (the positions
    that ``mask_prompt`` may mask).
    """
    ids = encode_prompt(tokenizer, spec, prompt)
    content = tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]
    start = _find_last(ids, content) if content else -1
    if start < 0:  # the template merged the text with its neighbours: use the non-special part
        special = set(tokenizer.all_special_ids)
        inside = [i for i, tok in enumerate(ids) if tok not in special]
        return ids, (inside[0], inside[-1] + 1) if inside else (0, 0)
    return ids, (start, start + len(content))


def encode_row(tokenizer, spec: ModelSpec, row: Row, max_length: int) -> Example | None:
    """One row -> ``Example`` of exactly ``max_length`` ids; None if the prompt leaves no room."""
    prompt_ids, span = template_prompt(tokenizer, spec, row.prompt)
    if len(prompt_ids) >= max_length:
        return None
    response_ids = tokenizer(row.response, add_special_tokens=False, verbose=False)["input_ids"]
    room = max_length - len(prompt_ids)
    truncated = len(response_ids) > room
    response_ids = response_ids[:room]
    ids = prompt_ids + response_ids + [spec.eos_id] * (room - len(response_ids))
    return Example(tuple(ids), len(prompt_ids), span, row.is_harmful, truncated,
                   length=len(prompt_ids) + len(response_ids), max_mask_ratio=row.max_mask_ratio)


def encode_rows(rows: list[Row], tokenizer, spec: ModelSpec, max_length: int) -> tuple[list[Example], DataStats]:
    stats = DataStats()
    examples = []
    for row in rows:
        ex = encode_row(tokenizer, spec, row, max_length)
        if ex is None:
            stats.too_long += 1
            continue
        examples.append(ex)
        stats.truncated += ex.truncated
        if ex.is_harmful:
            stats.harmful += 1
        else:
            stats.retain += 1
    if not examples:
        raise A2DGuardError(
            f"every prompt reaches max_length {max_length} once templated; raise --max-length"
        )
    return examples, stats


def batch_length(examples: list[Example], padding: str = "max_length") -> int:
    """Columns of the batch: ``max_length`` (every row's full width), or for ``longest`` the
    longest row before padding, and at least one response position (a batch of empty responses
    would otherwise have nothing to mask)."""
    full = len(examples[0].input_ids)
    if padding == "max_length":
        return full
    longest = max(e.length or full for e in examples)
    return min(full, max(longest, max(e.prompt_length for e in examples) + 1))


def collate(examples: list[Example], row_seeds: list[int] | None = None, padding: str = "max_length") -> Batch:
    """Stack ``examples`` into a ``Batch`` of ``batch_length`` columns (rows are EOS-padded)."""
    if row_seeds is None:
        row_seeds = list(range(len(examples)))
    width = batch_length(examples, padding)
    return Batch(
        input_ids=torch.tensor([e.input_ids[:width] for e in examples], dtype=torch.long),  # [B, L]
        prompt_lengths=torch.tensor([e.prompt_length for e in examples], dtype=torch.long),  # [B]
        content_spans=torch.tensor([e.content_span for e in examples], dtype=torch.long),  # [B, 2]
        is_harmful=torch.tensor([e.is_harmful for e in examples], dtype=torch.bool),  # [B]
        row_seeds=torch.tensor(row_seeds, dtype=torch.long),  # [B]
        max_mask_ratios=torch.tensor([e.max_mask_ratio for e in examples], dtype=torch.float64),  # [B]
    )


# ---------------------------------------------------------------- ordering


def row_seed(seed: int, position: int) -> int:
    """Seed of the mask drawn for the row at stream position ``position``."""
    return (seed * 6_364_136_223_846_793_005 + position * 1_442_695_040_888_963_407 + 1) % (2**63 - 1)


class BatchStream:
    """Which rows micro-batch ``m`` of process ``rank`` sees: a pure function of (seed, m).

    The data is an endless stream of epochs, each a fresh permutation seeded by
    (seed, epoch). Micro-batch ``m`` covers stream positions
    ``[m * B * W + rank * B, ... + B)``, and the row at stream position ``p`` draws its
    mask from ``row_seed(seed, p)``. Nothing about the order or the masks is state, so a
    resumed run replays exactly the same rows and masks, and W processes with batch B see
    exactly what one process with batch W * B sees.
    """

    def __init__(self, examples: list[Example], batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 padding: str = "max_length"):
        self.examples = examples
        self.padding = padding
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self._perms: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.examples)

    def micro_batches_per_epoch(self) -> int:
        return math.ceil(len(self.examples) / (self.batch_size * self.world_size))

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}  # keep two at most
            self._perms[epoch] = torch.randperm(len(self.examples), generator=g).tolist()
        return self._perms[epoch]

    def positions(self, micro_step: int) -> range:
        start = micro_step * self.batch_size * self.world_size + self.rank * self.batch_size
        return range(start, start + self.batch_size)

    def indices(self, micro_step: int) -> list[int]:
        n = len(self.examples)
        return [self._perm(p // n)[p % n] for p in self.positions(micro_step)]

    def batch(self, micro_step: int) -> Batch:
        seeds = [row_seed(self.seed, p) for p in self.positions(micro_step)]
        return collate([self.examples[i] for i in self.indices(micro_step)], seeds, self.padding)

    def epoch_at(self, micro_step: int) -> float:
        return micro_step * self.batch_size * self.world_size / len(self.examples)

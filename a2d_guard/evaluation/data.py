"""Evaluation prompts: the public attack and over-refusal sets, recognised by their columns.

Why by columns and not by file name: users rename files, and the same JSON shape serves
DIJA and FITS. One file holds one format; the first row decides it and every row must
then carry that format's columns (a bad row is an error naming its file and line):

| format | columns | used by |
|---|---|---|
| ``refined`` | ``Refined_behavior`` (with ``<mask:N>``), ``Behavior``, ``BehaviorID`` | DIJA / FITS JSON |
| ``advbench`` | ``goal`` (+ ``target``: AdvBench's "Sure, here is ..." opening) | AdvBench CSV |
| ``harmbench`` | ``Behavior`` (+ ``ContextString``, ``BehaviorID``) | HarmBench CSV |
| ``xstest`` | ``prompt``, ``label`` (``safe`` / ``unsafe``) | XSTest CSV |
| ``prompts`` | ``prompt`` (+ optional ``label``, ``id``) | any JSONL / JSON / CSV |

Rows of the harmful benchmarks have ``label`` None (every one is a harmful request);
XSTest's ``safe`` rows measure over-refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from a2d_guard.errors import A2DGuardError
from a2d_guard.paths import require_file
from a2d_guard.records import read_records

LABELS = ("safe", "unsafe")

# format -> the column that identifies it (checked in this order: ``Behavior`` is in DIJA JSON too)
_FORMATS = (("refined", "Refined_behavior"), ("advbench", "goal"), ("harmbench", "Behavior"),
            ("xstest", "label"), ("prompts", "prompt"))
_TEXT_COLUMN = {"refined": "Behavior", "advbench": "goal", "harmbench": "Behavior", "xstest": "prompt",
                "prompts": "prompt"}


@dataclass(frozen=True)
class EvalPrompt:
    """One row. ``behavior`` is the plain request; ``refined`` the DIJA/FITS rewrite with
    ``<mask:N>``; ``target`` a compliant opening for the prefill attack when the data has one;
    ``context`` HarmBench's ``ContextString`` (the request is about it; the classifier judge
    reads it apart from the behaviour)."""

    id: str
    behavior: str
    where: str  # "file:line" (or "file: row i" for a JSON list), for messages
    refined: str | None = None
    target: str | None = None
    label: str | None = None  # "safe" | "unsafe" | None (a harmful benchmark row)
    context: str | None = None

    @property
    def request(self) -> str:
        """The plain request as a user sends it: HarmBench puts the context above the behaviour."""
        return f"{self.context}\n\n---\n\n{self.behavior}" if self.context else self.behavior

    @property
    def is_harmful(self) -> bool:
        return self.label != "safe"


@dataclass(frozen=True)
class EvalData:
    path: Path
    format: str
    prompts: tuple[EvalPrompt, ...]
    num_rows: int  # rows in the file (before --limit)

    @property
    def has_refined(self) -> bool:
        return self.format == "refined"


def detect_format(columns, where: str) -> str:
    """The format whose identifying column the first row has."""
    for name, column in _FORMATS:
        if column in columns and (name != "xstest" or "prompt" in columns):
            return name
    shown = ", ".join(sorted(map(str, columns))) or "none"
    raise A2DGuardError(
        f"{where}: cannot tell the data format from the columns ({shown}); an eval file needs "
        "Refined_behavior (DIJA/FITS JSON), goal (AdvBench CSV), Behavior (HarmBench CSV), "
        "prompt + label (XSTest CSV) or prompt (JSONL)"
    )


def _text(row: dict, key: str, where: str, required: bool = True) -> str | None:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise A2DGuardError(f"{where}: column {key!r} is missing or empty; every row of this file needs it")
        return None
    if not isinstance(value, str):
        raise A2DGuardError(f"{where}: column {key!r} must be text, got {value!r}")
    return value


def _label(row: dict, where: str, required: bool) -> str | None:
    value = _text(row, "label", where, required)
    if value is None:
        return None
    label = value.strip().lower()
    if label not in LABELS:
        raise A2DGuardError(f"{where}: label {value!r} is not 'safe' or 'unsafe'; fix the row")
    return label


def parse_prompt(row, fmt: str, where: str, index: int) -> EvalPrompt:
    if not isinstance(row, dict):
        raise A2DGuardError(f"{where}: a row must be an object with named columns, got {type(row).__name__}")
    behavior = _text(row, _TEXT_COLUMN[fmt], where)
    row_id = row.get("BehaviorID") or row.get("id")
    row_id = str(row_id) if row_id not in (None, "") else str(index)
    return EvalPrompt(
        id=row_id, behavior=behavior, where=where,
        refined=_text(row, "Refined_behavior", where) if fmt == "refined" else None,
        target=_text(row, "target", where, required=False) if fmt == "advbench" else None,
        label=_label(row, where, required=fmt == "xstest") if fmt in ("xstest", "prompts") else None,
        context=_text(row, "ContextString", where, required=False) if fmt == "harmbench" else None,
    )


def load_prompts(path: str | Path, limit: int | None = None) -> EvalData:
    """Every row of ``path`` (a .json, .jsonl or .csv file), the first ``limit`` of them kept.

    All rows are parsed even with a limit, so a bad file fails before any decoding.
    """
    if limit is not None and limit < 1:
        raise A2DGuardError(f"--limit must be >= 1, got {limit}")
    path = require_file(path, "eval data file", "pass a DIJA/FITS .json, AdvBench/HarmBench/XSTest .csv or "
                                                ".jsonl file with a prompt field")
    prompts: list[EvalPrompt] = []
    fmt = None
    for index, (row, where) in enumerate(read_records(path)):
        if isinstance(row, A2DGuardError):
            raise row
        if fmt is None:
            fmt = detect_format(row.keys() if isinstance(row, dict) else (), where)
        prompts.append(parse_prompt(row, fmt, where, index))
    if not prompts:
        raise A2DGuardError(f"eval data file {str(path)!r} has no rows; pass a file with at least one prompt")
    return EvalData(path, fmt, tuple(prompts[:limit]), len(prompts))

"""``a2d-guard eval --config eval.yaml``: several attack/data pairs and shared settings in one file.

Keys are the flag names (``-`` or ``_``); flags given on the command line win. ``runs`` is
a list of ``{attack: ..., data: ...}``; a relative ``data`` path is read from the config
file's folder (so a config can sit next to its data). ``orders`` and ``thresholds`` are
YAML lists or comma-separated text, as on the command line. Example::

    model: GSAI-ML/LLaDA-8B-Instruct
    adapter: runs/a2d/adapter
    limit: 80
    thresholds: [1.0, 0.9]
    runs:
      - {attack: dija, data: dija_harmbench.json}
      - {attack: plain, data: xstest_prompts.csv}
"""

from __future__ import annotations

from pathlib import Path

from a2d_guard.errors import A2DGuardError
from a2d_guard.evaluation.run import EvalTask
from a2d_guard.yaml_file import read_yaml_mapping

# key -> the YAML types it accepts (int where a number is wanted is fine)
_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "adapter": (str,), "limit": (int,), "orders": (str, list), "thresholds": (str, list),
    "judge": (str,), "judge_device": (str,), "protocol": (str,), "out": (str,), "gen_length": (int,), "steps": (int,),
    "block_length": (int,),
    "temperature": (float, int), "seed": (int,), "batch": (int,), "chat_template": (bool,), "dtype": (str,),
    "device": (str,), "family": (str,), "trust_remote_code": (bool,), "runs": (list,),
}
_NAMES = {str: "text", int: "an integer", float: "a number", bool: "true/false", list: "a list"}


def split_list(value, what: str) -> list:
    """``a,b`` or a YAML list -> list of stripped items (empty items are an error)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [i.strip() if isinstance(i, str) else i for i in items]
    if not items or any(i in ("", None) for i in items):
        raise A2DGuardError(f"{what} {value!r} has an empty item; write e.g. low_confidence,random or 1.0,0.9")
    return items


def parse_thresholds(value, what: str = "--thresholds") -> tuple[float, ...]:
    out = []
    for item in split_list(value, what):
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            raise A2DGuardError(f"{what}: {item!r} is not a number; write e.g. 1.0,0.95,0.9") from None
    return tuple(out)


def _check(path: Path, key: str, value) -> None:
    allowed = _TYPES[key]
    if value is None or (isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool))):
        return
    quote = " (YAML reads yes/no/on/off as true/false: quote text)" if isinstance(value, bool) else ""
    names = " or ".join(_NAMES[t] for t in allowed)
    raise A2DGuardError(f"--config {str(path)!r}: {key} must be {names}, got {value!r}{quote}")


def _tasks(path: Path, runs: list) -> list[EvalTask]:
    tasks = []
    for i, run in enumerate(runs):
        if not isinstance(run, dict) or set(run) != {"attack", "data"} or not all(
                isinstance(v, str) for v in run.values()):
            raise A2DGuardError(f"--config {str(path)!r}: runs[{i}] must be {{attack: NAME, data: FILE}}, got {run!r}")
        data = Path(run["data"]).expanduser()
        tasks.append(EvalTask(run["attack"], data if data.is_absolute() else path.parent / data))
    return tasks


def load_eval_config(path: Path | None) -> dict:
    """The config's settings (``runs`` as ``EvalTask``s under ``tasks``); {} without a file."""
    if path is None:
        return {}
    values = read_yaml_mapping(path)
    unknown = sorted(set(values) - set(_TYPES))
    if unknown:
        raise A2DGuardError(f"--config {str(path)!r}: unknown setting(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(_TYPES))}")
    for key, value in values.items():
        _check(Path(path), key, value)
    if values.get("runs") is not None:
        values["tasks"] = _tasks(Path(path), values.pop("runs"))
    return {k: v for k, v in values.items() if v is not None}

"""``a2d-guard eval --resume``: reuse the records of an earlier eval in ``--out``, decode the rest.

Why: a benchmark run is hours on a real model. ``eval`` rewrites its folder (whole, via
``outputs.write_folder``) after every attack/data run, so an interrupted eval keeps the runs
it finished, and a rerun with ``--resume`` decodes only the (attack, file, row, order, τ)
records it does not have yet, e.g. after adding a threshold or raising ``--limit``.
Records are reused only when everything that decides an output is the same: the model,
adapter, protocol, judge and canvas settings (orders, thresholds, limit and batch may differ).
"""

from __future__ import annotations

import json
from pathlib import Path

from a2d_guard.errors import A2DGuardError

MUST_MATCH = ("model", "adapter", "protocol", "judge")
SETTINGS_MUST_MATCH = ("gen_length", "steps", "block_length", "temperature", "seed", "chat_template")


def record_key(record: dict) -> tuple:
    return record["attack"], record["data"], record["id"], record["order"], record["threshold"]


def load_done(out: str | Path, header: dict) -> dict[tuple, dict]:
    """Records of the earlier eval in ``out`` by key ({} when there is none), after checking it is comparable."""
    out = Path(out)
    if not (out / "eval.json").is_file():
        return {}
    try:
        old = json.loads((out / "eval.json").read_text(encoding="utf-8"))
        lines = (out / "records.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise A2DGuardError(f"--resume: cannot read the earlier eval in {str(out)!r} ({exc}); "
                            "drop --resume and pass --overwrite to start again") from None
    changed = [f"{k}: {old.get(k)!r} -> {header[k]!r}" for k in MUST_MATCH if old.get(k) != header[k]]
    old_settings = old.get("settings", {})
    changed += [f"{k}: {old_settings.get(k)!r} -> {header['settings'][k]!r}" for k in SETTINGS_MUST_MATCH
                if old_settings.get(k) != header["settings"][k]]
    if changed:
        raise A2DGuardError(f"--resume: the earlier eval in {str(out)!r} was run differently ({'; '.join(changed)}); "
                            "its records would not compare; use the same settings or a new --out")
    return {record_key(r): r for r in records}

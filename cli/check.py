"""``a2d-guard check``: verdicts of the A2D guard for prompts or prompt/response pairs.

For scripts and CI: ``--json`` prints one verdict object per item, ``--fail-on-flag`` exits
with code 3 when any item is flagged (1 stays "you called it wrong").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from a2d_guard.cli.errors import user_errors_exit_1
from a2d_guard.cli.options import AdapterOpt, DeviceOpt, DtypeOpt, FamilyOpt, JsonOpt, ModelOpt

FLAGGED_EXIT = 3


@user_errors_exit_1
def check(
    model: ModelOpt,
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="The user prompt to check.")] = None,
    response: Annotated[str | None, typer.Option("--response", "-r", help="A response to --prompt (from any "
                                                 "model) to check instead of the prompt alone.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="JSONL: one {\"prompt\": ..., optional "
                                              "\"response\": ...} object per line.")] = None,
    adapter: AdapterOpt = None,
    threshold: Annotated[float, typer.Option(help="Flag when the score (p(EOS)) exceeds this; in (0, 1].")] = 0.9,
    probe_length: Annotated[int, typer.Option(help="Response positions of a probe canvas (masks, or response "
                                              "+ EOS padding); near the adapter's training length.")] = 64,
    stride: Annotated[int, typer.Option(help="Forwards per response check (every stride-th position masked "
                                        "per forward).")] = 4,
    batch: Annotated[int, typer.Option("--batch", "--max-num-seqs", help="Probe canvases per forward.")] = 64,
    fail_on_flag: Annotated[bool, typer.Option("--fail-on-flag", help=f"Exit with code {FLAGGED_EXIT} when any "
                                               "item is flagged.")] = False,
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    family: FamilyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check prompts (and responses from any model) with the A2D model's p(EOS)."""
    from a2d_guard.errors import A2DGuardError
    from a2d_guard.guard import Guard

    if (prompt is None) == (file is None):
        raise A2DGuardError("pass either --prompt TEXT (optionally with --response TEXT) or --file ITEMS.jsonl")
    if response is not None and prompt is None:
        raise A2DGuardError("--response needs the --prompt it answers (the score depends on it); in --file, "
                            "give each row a \"prompt\"")
    items = [(prompt, response)] if prompt is not None else read_items(file)
    guard = Guard(model=model, adapter=adapter, threshold=threshold, probe_length=probe_length, stride=stride,
                  max_num_seqs=batch, device=device, dtype=dtype, family=family)
    verdicts = guard.check_batch(items)
    for i, v in enumerate(verdicts):
        if as_json:
            typer.echo(json.dumps({"index": i, **v.to_dict()}))
        else:
            mark = "FLAGGED" if v.flagged else "ok"
            at = "" if v.where == "prompt" else f" from char {v.char_offset} (token {v.token_index})"
            typer.echo(f"{i}: {mark:7} score {v.score:.4f} (threshold {v.threshold}) {v.where}{at}")
    if fail_on_flag and any(v.flagged for v in verdicts):
        raise typer.Exit(code=FLAGGED_EXIT)


def read_items(path: Path) -> list[tuple[str, str | None]]:
    """(prompt, response or None) per non-blank JSONL line; a bad line names file:line and the fix."""
    from a2d_guard.errors import A2DGuardError
    from a2d_guard.paths import require_file

    path = require_file(path, "--file", "pass a JSONL file with one {\"prompt\": ...} object per line")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise A2DGuardError(f"{path}:{n}: not valid JSON ({exc.msg}); one JSON object per line") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise A2DGuardError(f"{path}:{n}: each line needs a text \"prompt\" (and optionally a \"response\"); "
                                f"got {line.strip()[:60]!r}")
        unknown = sorted(set(row) - {"prompt", "response"})
        if unknown:
            raise A2DGuardError(f"{path}:{n}: unknown field {unknown[0]!r}; use \"prompt\" and \"response\"")
        if not isinstance(row.get("response", ""), str):
            raise A2DGuardError(f"{path}:{n}: \"response\" must be text")
        items.append((row["prompt"], row.get("response")))
    if not items:
        raise A2DGuardError(f"{path}: no items to check (the file is empty)")
    return items

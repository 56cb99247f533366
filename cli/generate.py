"""``a2d-guard generate``: decode prompts with the A2D monitor on (batched engine by default)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from a2d_guard.cli.errors import user_errors_exit_1
from a2d_guard.cli.options import (
    AdapterOpt,
    DeviceOpt,
    DtypeOpt,
    FamilyOpt,
    JsonOpt,
    ModelOpt,
    SeedOpt,
    TrustRemoteCodeOpt,
)


@user_errors_exit_1
def generate(
    model: ModelOpt,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="Prompt text; repeat for several. "
                                                     "`<mask:N>` inserts N mask tokens (DIJA-style infill).")] = None,
    prompts_file: Annotated[Path | None, typer.Option("--prompts-file", help="One prompt per line, or JSONL "
                                                      "with a \"prompt\" field per line.")] = None,
    adapter: AdapterOpt = None,
    gen_length: Annotated[int, typer.Option(help="Number of mask tokens appended to the prompt.")] = 128,
    steps: Annotated[int, typer.Option(help="Denoising steps in total (a multiple of the number of blocks).")] = 128,
    block_length: Annotated[int, typer.Option(help="Semi-autoregressive block length (divides gen-length).")] = 32,
    temperature: Annotated[float, typer.Option(help="0 = greedy; > 0 = Gumbel-max sampling.")] = 0.0,
    remasking: Annotated[str, typer.Option(help="low_confidence, margin, entropy, random, left_to_right "
                                           "or right_to_left.")] = "low_confidence",
    eos_threshold: Annotated[float, typer.Option(help="Reject when p(EOS) at the leftmost mask exceeds this "
                                                 "(1.0 turns the monitor off).")] = 0.9,
    refusal_text: Annotated[str | None, typer.Option(help="Text returned for a rejected request.")] = None,
    parallel_threshold: Annotated[float | None, typer.Option(
        help="Fast mode (Fast-dLLM threshold decoding): commit every token of the current block whose "
             "p(x0) is at least this (and at least one per step); blocks end early. Off by default.")] = None,
    prefill: Annotated[str | None, typer.Option(help="Text placed after the assistant header (prefill).")] = None,
    no_chat_template: Annotated[bool, typer.Option("--no-chat-template", help="Use the raw prompt text.")] = False,
    batch: Annotated[int, typer.Option("--batch", "--max-num-seqs", help="Running slots of the batched "
                                       "engine (requests decoded per model step).")] = 16,
    cache: Annotated[str, typer.Option("--cache", help="K/V cache of the engine: none (exact mode), prefix or dual "
                                       "(fast mode: Fast-dLLM's block cache, approximate).")] = "none",
    reference: Annotated[bool, typer.Option("--reference", help="Use the one-sequence reference sampler "
                                            "(the golden oracle) instead of the engine.")] = False,
    seed: SeedOpt = 0,
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    family: FamilyOpt = None,
    trust_remote_code: TrustRemoteCodeOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate with a diffusion LM; unsafe requests are rejected by the A2D EOS monitor."""
    from a2d_guard.config import SamplingParams
    from a2d_guard.engine.cached_forward import check_cache_mode
    from a2d_guard.errors import A2DGuardError
    from a2d_guard.models import load_model

    params = SamplingParams(gen_length=gen_length, steps=steps, block_length=block_length,
                            temperature=temperature, remasking=remasking, eos_threshold=eos_threshold,
                            seed=seed, refusal_text=refusal_text, parallel_threshold=parallel_threshold)
    if batch < 1:
        raise A2DGuardError(f"--batch must be >= 1, got {batch}")
    check_cache_mode(cache)
    if reference and cache != "none":
        raise A2DGuardError("--reference is the exact one-sequence sampler; drop --cache or --reference")
    prompts = list(prompt or []) + (read_prompts_file(prompts_file) if prompts_file else [])
    if not prompts:
        raise A2DGuardError("no prompt given; pass --prompt TEXT or --prompts-file FILE")
    if any(not p.strip() for p in prompts):
        raise A2DGuardError("a prompt is empty; pass some text")
    loaded = load_model(model, adapter=adapter, dtype=dtype, device=device, family=family,
                        trust_remote_code=trust_remote_code, seed=seed)
    records = (_run_reference if reference else _run_engine)(loaded, prompts, params, prefill, not no_chat_template,
                                                              batch, cache)
    for record in records:
        if as_json:
            typer.echo(json.dumps(record, ensure_ascii=False))
        else:
            print_record(record)


def read_prompts_file(path: Path) -> list[str]:
    """Plain text (one prompt per line) or JSONL (``{"prompt": ...}`` per line); blank lines skipped."""
    from a2d_guard.errors import A2DGuardError
    from a2d_guard.paths import require_file

    path = require_file(path, "prompts file", 'pass a UTF-8 text file with one prompt per line, or JSONL with a '
                                              '"prompt" field per line')
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise A2DGuardError(
            f"prompts file {str(path)!r} is not UTF-8 text (byte {exc.start}); re-save it as UTF-8"
        ) from None
    prompts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise A2DGuardError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
            if not isinstance(row.get("prompt"), str):
                raise A2DGuardError(f"{path}:{number}: a JSONL line needs a string \"prompt\" field")
            prompts.append(row["prompt"])
        else:
            prompts.append(line)
    if not prompts:
        raise A2DGuardError(f"prompts file {str(path)!r} has no prompts")
    return prompts


def _run_engine(loaded, prompts, params, prefill, chat, batch, cache) -> list[dict]:
    from a2d_guard.engine import LLM

    llm = LLM.from_loaded(*loaded, max_num_seqs=batch, chat_template=chat, cache=cache)
    ids = [llm.encode(p, prefill=prefill) for p in prompts]
    outputs = llm.generate(ids, params)
    records = []
    for text, out in zip(prompts, outputs, strict=True):
        c = out.outputs[0]
        records.append(_record(text, c.text, c.token_ids, c.finish_reason, c.steps, c.p_eos, c.reject_step,
                               c.infill_text))
    return records


def _run_reference(loaded, prompts, params, prefill, chat, batch, cache) -> list[dict]:
    from a2d_guard.diffusion.prompts import encode_prompt
    from a2d_guard.diffusion.reference import reference_generate
    from a2d_guard.engine.output_processor import answer_text

    model, tokenizer, spec = loaded
    records = []
    for text in prompts:
        r = reference_generate(model, spec, encode_prompt(tokenizer, spec, text, prefill=prefill, chat=chat), params)
        out_text = answer_text(tokenizer, r.token_ids, r.finish_reason, params.refusal_text)
        infill = tokenizer.decode(r.infill_ids, skip_special_tokens=False) if r.infill_ids else None
        records.append(_record(text, out_text, r.token_ids, r.finish_reason, r.steps, r.p_eos, r.reject_step, infill))
    return records


def _record(prompt, text, token_ids, finish_reason, steps, p_eos, reject_step, infill) -> dict:
    record = {"prompt": prompt, "text": text, "token_ids": token_ids, "finish_reason": finish_reason,
              "steps": steps, "p_eos": p_eos, "reject_step": reject_step}
    if infill:
        record["infill"] = infill
    return record


def print_record(record: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.panel import Panel

    console = Console()
    if record["finish_reason"] == "content_filter":
        title = (f"[bold red]REJECTED[/] by the A2D monitor at step {record['reject_step']} "
                 f"(p(EOS) = {record['p_eos']:.3f})")
        style = "red"
    else:
        title = f"[green]{record['finish_reason']}[/] after {record['steps']} steps"
        style = "green"
    body = escape(record["text"]) if record["text"] else "[dim](empty)[/]"
    if record.get("infill"):
        body += f"\n[dim]infill:[/] {escape(record['infill'])}"
    console.print(Panel(body, title=title, subtitle=escape(record["prompt"][:60]), border_style=style))

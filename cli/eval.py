"""``a2d-guard eval``: the A2D paper's protocol on the user's model (attacks x orders x thresholds)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from a2d_guard.cli.errors import user_errors_exit_1
from a2d_guard.cli.options import AdapterOpt, DeviceOpt, DtypeOpt, FamilyOpt, TrustRemoteCodeOpt

DEFAULTS = dict(model="tiny", out="a2d-eval", judge="keyword")


@user_errors_exit_1
def eval_command(
    model: Annotated[str | None, typer.Option("--model", "-m", help="'tiny' (built in), a local model folder or "
                                              "a Hub id (default: tiny).")] = None,
    adapter: AdapterOpt = None,
    attack: Annotated[str | None, typer.Option("--attack", help="plain, prefill, dija or fits (dija and fits need "
                                               "a DIJA/FITS JSON with Refined_behavior).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Prompts: DIJA/FITS JSON, AdvBench/HarmBench/XSTest "
                                              "CSV or JSONL with a prompt field (format found by its "
                                              "columns).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML of these settings (keys = flag names) "
                                                "with `runs: [{attack: ..., data: ...}, ...]`; flags override "
                                                "it.")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N rows of each file (the A2D code: "
                                              "80).")] = None,
    orders: Annotated[str | None, typer.Option(help="Decoding orders, comma-separated (default: "
                                               "low_confidence,random,left_to_right,right_to_left).")] = None,
    thresholds: Annotated[str | None, typer.Option(help="EOS-monitor thresholds τ, comma-separated; 1.0 = monitor "
                                                   "off (default: 1.0,0.99,0.95,0.9,0.8).")] = None,
    judge: Annotated[str | None, typer.Option(help="keyword (refusal phrases, the A2D code's ASR-k) or a "
                                              "causal-LM classifier folder / Hub id asked HarmBench's classifier "
                                              "prompt, e.g. cais/HarmBench-Llama-2-13b-cls (ASR-e) "
                                              "(default: keyword).")] = None,
    protocol: Annotated[str | None, typer.Option(help="Decode: ours (the engine: every mask filled, stops at a "
                                                 "visible EOS), llada (LLaDA's generate.py: a block's budget counts "
                                                 "only its own masks, no early stop) or a2d (the A2D authors' DIJA "
                                                 "decode: only the prompt's masks, one per step, temperature 0.2, "
                                                 "EOS banned); llada and a2d run one request at a time "
                                                 "(default: ours).")] = None,
    judge_device: Annotated[str | None, typer.Option(help="Device of the classifier judge (default: cuda if "
                                                     "available).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder: eval.json, records.jsonl, summary.md "
                                             "(default: a2d-eval).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier eval output in --out.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Reuse the records of an earlier eval in --out (same "
                                         "model, adapter, protocol, judge and canvas settings) and decode only "
                                         "the missing ones.")] = False,
    gen_length: Annotated[int | None, typer.Option(help="Answer mask tokens after the prompt (default: 128).")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps (default: 128).")] = None,
    block_length: Annotated[int | None, typer.Option(help="Semi-autoregressive block length "
                                                     "(default: 32).")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy (default: 0).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: 0).")] = None,
    batch: Annotated[int | None, typer.Option("--batch", "--max-num-seqs", help="Engine slots: requests decoded "
                                              "per model step (default: 16).")] = None,
    no_chat_template: Annotated[bool, typer.Option("--no-chat-template", help="Use the raw prompt text.")] = False,
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    family: FamilyOpt = None,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Measure attack success and over-refusal the way the A2D paper does; writes eval.json."""
    from a2d_guard.errors import A2DGuardError
    from a2d_guard.evaluation.config import load_eval_config, parse_thresholds, split_list
    from a2d_guard.evaluation.run import EvalSettings, EvalTask, evaluate

    cfg = {**DEFAULTS, **load_eval_config(config)}
    flags = dict(model=model, adapter=adapter, limit=limit, judge=judge, judge_device=judge_device, out=out,
                 protocol=protocol,
                 gen_length=gen_length, steps=steps, block_length=block_length, temperature=temperature, seed=seed,
                 batch=batch, dtype=dtype, device=device, family=family, orders=orders, thresholds=thresholds,
                 chat_template=False if no_chat_template else None, trust_remote_code=trust_remote_code or None)
    cfg.update({k: v for k, v in flags.items() if v is not None})
    if (attack is None) != (data is None):
        raise A2DGuardError("pass --attack and --data together (or neither, with a --config holding runs)")
    if attack is not None:
        cfg["tasks"] = [EvalTask(attack, data)]
    known = {k: cfg[k] for k in ("gen_length", "steps", "block_length", "temperature", "seed", "limit", "batch",
                                 "chat_template", "judge", "judge_device", "protocol") if k in cfg}
    if "orders" in cfg:
        known["orders"] = tuple(split_list(cfg["orders"], "--orders"))
    if "thresholds" in cfg:
        known["thresholds"] = parse_thresholds(cfg["thresholds"])
    settings = EvalSettings(**known)
    folder, report = evaluate(cfg["model"], cfg.get("tasks", []), settings, cfg["out"], adapter=cfg.get("adapter"),
                              overwrite=overwrite, resume=resume, dtype=cfg.get("dtype"), device=cfg.get("device"),
                              family=cfg.get("family"), trust_remote_code=bool(cfg.get("trust_remote_code")),
                              use_tqdm=sys.stderr.isatty())
    for run in report["runs"]:
        reused = f", {run['num_reused']} records reused" if run["num_reused"] else ""
        typer.echo(f"{run['attack']} on {run['data']}: {run['num_evaluated']} prompts evaluated, "
                   f"{run['num_skipped_too_long']} skipped (too long){reused}")
    typer.echo(f"wrote {folder / 'eval.json'}, records.jsonl and summary.md")

"""``evaluate``: the one library call behind ``a2d-guard eval`` (DESIGN §11).

For every (attack, data file) task: read and check the file, build each row's canvas
(``attacks``), skip and count rows too long for the model, then decode every row under
every decoding order (``SamplingParams.remasking``) and threshold τ
(``SamplingParams.eos_threshold``; 1.0 = monitor off: what the model itself writes). All
requests of a task go through the engine (``LLM.generate``) at once, so they run in
continuous batches of ``--batch`` slots. Each output is judged (``judges``) and aggregated
(``metrics``). Decode protocol (``SamplingParams.protocol``, ``diffusion.policies``): ``ours``
(every mask filled, prompt masks counted in the first block's budget, stop at a visible EOS),
or, to compare with published numbers, ``llada`` (LLaDA's ``generate.py``) and ``a2d`` (the A2D
authors' DIJA decode); all three run through the engine in the same batches, token for token
what the readable decoder ``reference.reference_generate`` writes (``tests/engine/test_protocols_engine.py``).

Outputs, in ``out`` (written under a temporary name, then moved in: never half-written;
a folder holding files eval did not write is refused, never deleted; ``a2d_guard.outputs``).
The folder is rewritten after every task, so an interrupted eval keeps its finished runs
and ``--resume`` (``resume``) decodes only the records still missing:

- ``records.jsonl``: one line per (task, row, order, τ): the attack's user turn and
  prefill, the answer ``text``, ``infill_text`` (the prompt's masks as decoded),
  ``judged_text``, ``finish_reason``, ``steps``, ``max_steps``, ``p_eos``, ``reject_step``
  and the ``verdict`` (``refused``, ``attack_success``, ``reason``);
- ``eval.json`` (``schema_version`` 1): ``a2d_guard_version``, ``model``, ``adapter``,
  ``protocol``, ``judge``, ``settings`` (orders, thresholds, gen_length, steps,
  block_length, temperature, seed, limit, batch, chat_template) and ``runs``: one per task
  with ``attack``, ``data``, ``format``, ``num_rows`` (in the file), ``num_prompts`` (after
  ``limit``), ``num_evaluated``, ``num_skipped_too_long``, ``skipped_ids``, ``num_reused``
  (records taken from an earlier run by ``--resume``) and ``results``:
  the rows of ``metrics.summarize`` (order, threshold, n, attack_success, content_filter,
  speedup, over_refusal, unsafe_refusal, ...); and ``results``: the same numbers flat, one
  ``{"metric", "value", "dataset", "attack", "order", "threshold", "protocol", "judge"}`` row
  each (``metrics.flat_results``), which ``a2d-guard push`` puts in the model card;
- ``summary.md``: the same as tables;
- PNG plots when matplotlib (the ``eval`` extra) is installed (``plots``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from a2d_guard.config import PROTOCOLS, REMASKING_MODES, SamplingParams
from a2d_guard.errors import A2DGuardError
from a2d_guard.evaluation.attacks import ORDERS, PreparedPrompt, check_attack, prepare
from a2d_guard.evaluation.data import EvalData, load_prompts
from a2d_guard.evaluation.judge_choice import make_judge
from a2d_guard.evaluation.judges import JudgeCase, judged_text
from a2d_guard.evaluation.metrics import flat_results, summarize
from a2d_guard.evaluation.plots import available as plots_available
from a2d_guard.evaluation.plots import write_plots
from a2d_guard.evaluation.resume import load_done, record_key
from a2d_guard.outputs import check_replaceable, write_folder

SCHEMA_VERSION = 1
THRESHOLDS = (1.0, 0.99, 0.95, 0.9, 0.8)
COMMAND = "eval"
FILES = ("eval.json", "records.jsonl", "summary.md")


@dataclass(frozen=True)
class EvalTask:
    attack: str
    data: Path


@dataclass(frozen=True)
class EvalSettings:
    orders: tuple[str, ...] = ORDERS
    thresholds: tuple[float, ...] = THRESHOLDS
    gen_length: int = 128
    steps: int = 128
    block_length: int = 32
    temperature: float = 0.0
    seed: int = 0
    limit: int | None = None  # first N rows of each file (the A2D code scores the first 80)
    batch: int = 16  # engine slots (max_num_seqs)
    chat_template: bool = True
    judge: str = "keyword"  # or a causal-LM classifier (Hub id / folder)
    judge_device: str | None = None  # the classifier's own device
    protocol: str = "ours"  # ours | llada | a2d (SamplingParams.protocol)

    def __post_init__(self) -> None:
        if not self.orders:
            raise A2DGuardError("--orders is empty; pass at least one decoding order, e.g. low_confidence")
        for order in self.orders:
            if order not in REMASKING_MODES:
                raise A2DGuardError(f"unknown decoding order {order!r} in --orders; use {', '.join(REMASKING_MODES)}")
        if not self.thresholds:
            raise A2DGuardError("--thresholds is empty; pass at least one, e.g. 1.0 (monitor off)")
        if len(set(self.orders)) != len(self.orders) or len(set(self.thresholds)) != len(self.thresholds):
            raise A2DGuardError("--orders and --thresholds must not repeat a value; remove the repeat")
        if self.protocol not in PROTOCOLS:
            raise A2DGuardError(f"unknown --protocol {self.protocol!r}; use one of {', '.join(PROTOCOLS)}")
        if self.batch < 1:
            raise A2DGuardError(f"--batch must be >= 1, got {self.batch}")
        if self.limit is not None and self.limit < 1:
            raise A2DGuardError(f"--limit must be >= 1, got {self.limit}")
        for tau in self.thresholds:
            self.params(self.orders[0], tau)  # a bad τ or canvas setting fails here, named
        if not isinstance(self.judge, str) or not self.judge.strip():
            raise A2DGuardError("--judge is empty; pass keyword or a classifier model folder / Hub id")

    def params(self, order: str, tau: float) -> SamplingParams:
        return SamplingParams(gen_length=self.gen_length, steps=self.steps, block_length=self.block_length,
                              temperature=self.temperature, remasking=order, eos_threshold=tau, seed=self.seed,
                              protocol=self.protocol)


def load_tasks(tasks: list[EvalTask], limit: int | None) -> list[EvalData]:
    """Every task's file read and checked against its attack, before any model is loaded."""
    if not tasks:
        raise A2DGuardError("nothing to evaluate; pass --attack and --data, or a --config with runs")
    datas = [load_prompts(task.data, limit) for task in tasks]
    for task, data in zip(tasks, datas, strict=True):
        check_attack(task.attack, data)
    return datas


def check_out(out: str | Path, overwrite: bool) -> Path:
    """The output folder may be new or empty; with ``overwrite``, an earlier eval output."""
    out = Path(out).expanduser()
    if overwrite or out.is_file():
        check_replaceable(out, "--overwrite", command=COMMAND)
    elif out.is_dir() and any(out.iterdir()):
        raise A2DGuardError(f"--out {str(out)!r} already exists and is not empty; pass a new folder, --resume to "
                            "continue an earlier eval there, or --overwrite to replace it")
    if not out.parent.is_dir():
        raise A2DGuardError(f"the parent folder of --out {str(out)!r} does not exist; create it first")
    return out


def _record(task: EvalTask, item: PreparedPrompt, order: str, tau: float, params: SamplingParams,
            completion, judged: str, verdict, max_steps: int) -> dict:
    return {
        "attack": task.attack, "data": str(task.data), "id": item.prompt.id, "label": item.prompt.label,
        "order": order, "threshold": tau, "user": item.request.user, "prefill": item.request.prefill,
        "text": completion.text, "infill_text": completion.infill_text, "judged_text": judged,
        "finish_reason": completion.finish_reason, "steps": completion.steps, "max_steps": max_steps,
        "p_eos": completion.p_eos, "reject_step": completion.reject_step, "verdict": verdict.to_dict(),
    }


def evaluate_task(llm, task: EvalTask, data: EvalData, settings: EvalSettings, judge,
                  use_tqdm: bool = False, done: dict | None = None) -> tuple[dict, list[dict]]:
    """(this task's ``runs`` entry, its records): every kept row x order x τ, decoded under the protocol.

    ``done``: records of an earlier run by ``record_key``; those are reused, not decoded again.
    """
    kept, skipped = prepare(llm.tokenizer, llm.spec, task.attack, data, settings.gen_length, settings.chat_template,
                            settings.protocol)
    done = done or {}
    every = [(item, order, tau) for order in settings.orders for tau in settings.thresholds for item in kept]
    keys = [(task.attack, str(task.data), item.prompt.id, order, tau) for item, order, tau in every]
    combos = [(item, order, tau, settings.params(order, tau))
              for (item, order, tau), key in zip(every, keys, strict=True) if key not in done]
    outputs = llm.generate([c[0].ids for c in combos], [c[3] for c in combos], use_tqdm=use_tqdm) if combos else []
    completions = [out.outputs[0] for out in outputs]
    judged = [judged_text(llm.tokenizer, llm.spec, c) for c in completions]
    verdicts = judge.judge_all([JudgeCase(item.prompt.behavior, text, c.finish_reason, item.prompt.context, c.text)
                                for (item, *_), text, c in zip(combos, judged, completions, strict=True)])
    new = {record_key(r): r for r in (
        _record(task, item, order, tau, params, c, text, verdict,
                params.policy.full_steps(item.ids, llm.spec.mask_id, params.steps))
        for (item, order, tau, params), c, text, verdict in zip(combos, completions, judged, verdicts, strict=True))}
    records = [new[key] if key in new else done[key] for key in keys]
    run = {"attack": task.attack, "data": str(task.data), "format": data.format, "num_rows": data.num_rows,
           "num_prompts": len(data.prompts), "num_evaluated": len(kept), "num_skipped_too_long": len(skipped),
           "skipped_ids": [p.id for p in skipped], "num_reused": len(keys) - len(new),
           "results": summarize(records)}
    return run, records


def report_header(settings: EvalSettings, model: str, adapter: str | None) -> dict:
    """``eval.json`` without its runs."""
    from a2d_guard import __version__

    return {"schema_version": SCHEMA_VERSION, "a2d_guard_version": __version__, "model": model,
            "adapter": adapter, "protocol": settings.protocol, "judge": settings.judge,
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()},
            "runs": [], "results": []}


def run_eval(llm, tasks: list[EvalTask], settings: EvalSettings, model: str = "", adapter: str | None = None,
             use_tqdm: bool = False, datas: list[EvalData] | None = None, judge=None, done: dict | None = None,
             on_task: Callable[[dict, list[dict]], None] | None = None) -> tuple[dict, list[dict]]:
    """(the ``eval.json`` object, every record) for ``tasks`` on a loaded ``LLM``.

    ``datas``, ``judge``: already loaded; ``done``: earlier records to reuse (``resume``);
    ``on_task(report, records)`` is called after each task with everything so far (a checkpoint).
    """
    datas = load_tasks(tasks, settings.limit) if datas is None else datas
    report = report_header(settings, model, adapter)
    records: list[dict] = []
    judge = make_judge(settings.judge, device=settings.judge_device) if judge is None else judge
    for task, data in zip(tasks, datas, strict=True):
        run, task_records = evaluate_task(llm, task, data, settings, judge, use_tqdm, done)
        report["runs"].append(run)
        report["results"] = flat_results(report)
        records.extend(task_records)
        if on_task is not None:
            on_task(report, records)
    return report, records


def _fmt(value) -> str:
    return "-" if value is None else str(value)


def summary_markdown(report: dict, plots: list[str] = ()) -> str:
    s = report["settings"]
    lines = [f"# a2d-guard eval: {report['model']}" + (f" + {report['adapter']}" if report["adapter"] else ""), "",
             f"Protocol `{report['protocol']}`, judge `{report['judge']}`, gen_length {s['gen_length']}, "
             f"steps {s['steps']}, block_length {s['block_length']}, temperature {s['temperature']}. "
             "τ = 1.0 is the monitor off.", ""]
    columns = ("order", "threshold", "n", "attack_success", "content_filter", "speedup", "over_refusal",
               "unsafe_refusal")
    for run in report["runs"]:
        lines += [f"## {run['attack']} on `{run['data']}` ({run['format']})", "",
                  f"{run['num_evaluated']} of {run['num_prompts']} prompts evaluated "
                  f"({run['num_skipped_too_long']} too long for the model; {run['num_rows']} rows in the file).", "",
                  "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_fmt(row[c]) for c in columns) + " |" for row in run["results"]]
        lines.append("")
    lines += [f"![{name}]({name})" for name in plots]
    return "\n".join(lines)


def write_eval(out: str | Path, report: dict, records: list[dict]) -> Path:
    """``eval.json``, ``records.jsonl`` and ``summary.md`` into ``out``, whole or not at all."""

    def writer(tmp: Path) -> None:
        (tmp / "eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "records.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                           encoding="utf-8")
        plots = write_plots(report, tmp)
        note = "" if plots_available() else "\nNo plots: pip install 'a2d-guard[eval]' (matplotlib).\n"
        (tmp / "summary.md").write_text(summary_markdown(report, [p.name for p in plots]) + note, encoding="utf-8")

    return write_folder(out, writer, "--overwrite", COMMAND)


def evaluate(model: str, tasks: list[EvalTask], settings: EvalSettings, out: str | Path, adapter=None,
             overwrite: bool = False, resume: bool = False, dtype=None, device=None, family=None,
             trust_remote_code: bool = False, use_tqdm: bool = False) -> tuple[Path, dict]:
    """Check everything cheap (settings, data files, ``out``), load the model, run, write. Returns (out, report).

    ``out`` is rewritten (whole) after every task, so an interrupted eval keeps its finished
    runs; ``resume`` reuses the records of an earlier comparable eval there.
    """
    out = check_out(out, overwrite or resume)
    adapter = None if adapter is None else str(adapter)
    done = load_done(out, report_header(settings, model, adapter)) if resume else {}
    datas = load_tasks(tasks, settings.limit)  # a bad file or judge fails before the model loads
    judge = make_judge(settings.judge, device=settings.judge_device)
    from a2d_guard.engine import LLM

    llm = LLM(model=model, adapter=adapter, max_num_seqs=settings.batch, dtype=dtype, device=device, family=family,
              trust_remote_code=trust_remote_code, seed=settings.seed, chat_template=settings.chat_template)
    report, _ = run_eval(llm, tasks, settings, model=model, adapter=adapter, use_tqdm=use_tqdm, datas=datas,
                         judge=judge, done=done, on_task=lambda rep, recs: write_eval(out, rep, recs))
    return out, report

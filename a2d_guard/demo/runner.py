"""``a2d-guard demo``: train base / response-level / A2D on the synthetic corpus, then attack them.

The plan (all on the built-in tiny model, CPU, deterministic, a few minutes):

1. ``base``: full fine-tune of the random tiny dLLM on every request answered, harmful ones
   included (plain SFT): the unaligned model that complies. The user text of the harmful
   rows is masked too (``mask_prompt=harmful``, targets = the text itself), so the base
   can write harmful content *inside the user turn*, which is what DIJA scaffolds ask
   for (a pretrained 8B model can do that anywhere). Masking every row's prompt
   (``mask_prompt=all``) is the more natural choice, but the 2-layer model then reached
   only ~9% held-out benign accuracy in the time budget instead of ~70%.
2. ``response_level``: LoRA on the base, SFT with harmful answers replaced by a refusal.
3. ``a2d``: LoRA on the base, the paper's objective (prompt never masked).
4. ``a2d_mask_prompt``: the same plus ``mask_prompt=harmful`` (the user text of harmful
   rows is masked too, target EOS): the extension that targets DIJA's masks in the prompt.
5. ``a2d_content``: the paper's objective plus ``content_rows`` (training/content_rows.py:
   harmful content under benign prompts, benign answers under harmful prompts): the
   extension that makes p(EOS) read the answer, so the guard keys on content. It trains
   ``content_steps_factor`` times the adapters' steps: the crossed rows add 60% more rows
   and a harder task (read the answer, not the prompt); measured on this corpus, a benign
   question with a harmful answer was flagged 14% after 300 steps, 66% after 600, 93%
   after 1200.

Every model is also measured as a guard (``demo/guard_eval.py``: probes C and B as a
classifier, and controls that pull prompt and content apart); ``guard_model`` names the
adapter a guard should use: ``a2d_content`` only if it meets the content goals without
raising attack success over ``a2d``, else ``a2d``.

Trained models are kept under ``--out`` and reused when the fingerprint of what they were
trained from (config, data contents, base-model contents, versions; ``demo/fingerprint.py``)
is unchanged: by content, so a copied or moved demo folder does not retrain. Each stage
(four trainings, four evaluations) gets a progress bar when asked and a line in the
closing stage summary (``demo/stages.py``).
Learning rates are higher than the paper's 5e-5 (which is for an 8B model and 10 epochs
of 3k rows): the tiny model must learn its world in about a minute.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from a2d_guard.demo import criteria, numerics, seeds
from a2d_guard.demo.corpus import build_corpus
from a2d_guard.demo.evaluate import ATTACKS, ORDERS, EvalSettings, Evaluator
from a2d_guard.demo.fingerprint import FingerprintBook, fingerprint
from a2d_guard.demo.guard_eval import PROMPT_TOKENS, evaluate_guard, pick_guard_model, render_guard_table
from a2d_guard.demo.stages import Stages
from a2d_guard.models.safetensors_file import check_weights_folder
from a2d_guard.outputs import check_replaceable, claim, write_text_atomically
from a2d_guard.train_layout import ADAPTER_DIR, MODEL_DIR
from a2d_guard.training import TrainConfig, train

MODELS = ("base", "response_level", "a2d", "a2d_mask_prompt", "a2d_content")
REPORTED = ("base", "response_level", "a2d")  # the three; the extension is reported beside them
# What the demo creates at the top of --out (claimed in its manifest, see a2d_guard.outputs);
# each stage folder is then `train`'s own output folder, with its own manifest. The first
# world of a seed sweep lives in --out itself (what `serve --model demo` reads), the others
# in --out/seeds/SEED/ (each claimed like --out, without results.json).
SEEDS_DIR = "seeds"
WORLD = ("data", *MODELS, FingerprintBook.FILE)
WRITTEN = (*WORLD, "results.json", SEEDS_DIR)


@dataclass(frozen=True)
class DemoPlan:
    max_length: int = 64
    batch_size: int = 16
    base_steps: int = 2500
    base_lr: float = 3e-3
    adapter_steps: int = 300
    adapter_lr: float = 2e-3
    content_steps_factor: int = 4  # a2d_content's steps = adapter_steps * this (see the module docstring)
    lora_r: int = 32
    lora_alpha: int = 64
    seed: int = 42
    eval: EvalSettings = field(default_factory=EvalSettings)

    def guard_probe_length(self) -> int:
        """Response positions of a guard probe: the room a training row had after its prompt."""
        return max(1, self.max_length - PROMPT_TOKENS)

    def guard(self, model, tokenizer, spec):
        """``a2d_guard.Guard`` on a loaded demo model, at the monitor's threshold."""
        from a2d_guard import Guard
        from a2d_guard.engine.llm import LLM

        return Guard.from_llm(LLM.from_loaded(model, tokenizer, spec), threshold=self.eval.eos_threshold,
                              probe_length=self.guard_probe_length())

    def configs(self, out: Path) -> dict[str, TrainConfig]:
        """Every stage's training config; ``seed`` drives the base's init, batches, masks and LoRA."""
        data = out / "data"
        common = dict(max_length=self.max_length, batch_size=self.batch_size, seed=self.seed, progress=False,
                      save_every=0, keep_checkpoints=1, device="cpu", dtype="fp32")
        base_model = str(out / "base" / MODEL_DIR)
        adapter = dict(common, model=base_model, finetune="lora", max_steps=self.adapter_steps, lr=self.adapter_lr,
                       lora_r=self.lora_r, lora_alpha=self.lora_alpha, lr_schedule="linear", warmup_steps=20)
        return {
            "base": TrainConfig(**common, model="tiny", model_seed=self.seed, data=str(data / "base.jsonl"),
                                output=str(out / "base"), finetune="full", objective="sft", mask_prompt="harmful",
                                max_steps=self.base_steps, lr=self.base_lr, weight_decay=0.0,
                                lr_schedule="linear", warmup_steps=50),
            "response_level": TrainConfig(**adapter, data=str(data / "response_level.jsonl"),
                                          output=str(out / "response_level"), objective="sft"),
            "a2d": TrainConfig(**adapter, data=str(data / "a2d.jsonl"), output=str(out / "a2d"), objective="a2d"),
            "a2d_mask_prompt": TrainConfig(**adapter, data=str(data / "a2d.jsonl"), output=str(out / "a2d_mask_prompt"),
                                           objective="a2d", mask_prompt="harmful"),
            "a2d_content": TrainConfig(**{**adapter, "max_steps": self.adapter_steps * self.content_steps_factor},
                                       data=str(data / "a2d.jsonl"), output=str(out / "a2d_content"),
                                       objective="a2d", content_rows=True),
        }


def write_training_data(out: Path, corpus=None) -> None:
    corpus = corpus or build_corpus()
    (out / "data").mkdir(parents=True, exist_ok=True)
    for variant in ("base", "response_level", "a2d"):
        rows = corpus.training_rows(variant)
        text = "".join(json.dumps(r) + "\n" for r in rows)
        path = out / "data" / f"{variant}.jsonl"
        if not path.exists() or path.read_text() != text:
            write_text_atomically(path, text)


def _deliverable(config: TrainConfig) -> Path:
    return Path(config.output) / (MODEL_DIR if config.finetune == "full" else ADAPTER_DIR)


def train_or_reuse(config: TrainConfig, log, on_step=None) -> tuple[Path, bool]:
    """Train unless ``output`` holds a model trained from the same content. -> (deliverable, reused).

    The record is the ``FingerprintBook`` of the folder above ``output`` (the demo folder),
    keyed by the stage folder's name; it is written only after the model is complete.
    """
    out, target = Path(config.output), _deliverable(config)
    book, expected = FingerprintBook(out.parent), fingerprint(config)
    if target.is_dir() and book.matches(out.name, expected):
        # Fail now, not after minutes of evaluating the other models, if a kept file is damaged.
        check_weights_folder(target, f"delete {str(out)!r} and run the demo again to retrain it")
        return target, True
    train(config, overwrite=out.exists(), log=log, on_step=on_step)
    book.record(out.name, expected)
    return target, False


DEFAULT_PLAN = DemoPlan()


def run_demo(out: str | Path, plan: DemoPlan = DEFAULT_PLAN, log=print, progress: bool = False,
             num_seeds: int = 1) -> dict:
    """Train (or reuse) and evaluate ``num_seeds`` worlds under ``out``; return the results object.

    ``{"seeds": [one world's results per seed], "summary": seeds.summarize(...), "numerics":
    the floating-point path, "total_s"}``, also written to ``out/results.json``.
    ``progress``: draw a bar per stage on stderr (the CLI does on a terminal, never with --json).
    Runs on one CPU thread: the tiny model's matrices are too small for intra-op
    parallelism to pay off, OpenMP barriers stall badly when the cores are shared, and the
    thread count is part of the floating-point path (``demo/numerics.py``).
    """
    out = Path(out)
    world_seeds = seeds.world_seeds(plan.seed, num_seeds)
    check_replaceable(out, "write the demo into", command="demo",
                      fix="move those files elsewhere, or pick a new or empty folder for --out")
    claim(out, "demo", WRITTEN)  # creates the folder
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with Stages(show_progress=progress) as stages:
            worlds = []
            for index, seed in enumerate(world_seeds):
                folder = out if index == 0 else out / SEEDS_DIR / str(seed)
                if index:
                    check_replaceable(folder, "write a demo world into", command="demo")
                    claim(folder, "demo", WORLD)
                if num_seeds > 1:
                    log(f"seed {seed} ({index + 1} of {num_seeds}): {folder}")
                world_plan = dataclasses.replace(plan, seed=seed)
                worlds.append(_run_world(folder, world_plan, seeds.split_seed(index, seed), log, stages))
            numerics_used = numerics.describe()
    finally:
        torch.set_num_threads(threads)
    summary = {**seeds.summarize(worlds), "criteria": criteria.check_sweep(worlds)}
    result = {"seeds": worlds, "summary": summary, "numerics": numerics_used,
              "total_s": stages.total_seconds}
    write_text_atomically(out / "results.json", json.dumps(result, indent=2) + "\n")
    return result


def _run_world(out: Path, plan: DemoPlan, split_seed: int | None, log, stages: Stages) -> dict:
    """One world: corpus split, five trainings, five evaluations -> today's results shape."""
    from a2d_guard.engine.llm import LLM
    from a2d_guard.models import load_model
    from a2d_guard.models.adapter import attach_adapter

    first_stage = len(stages.records)
    corpus = build_corpus(split_seed)
    write_training_data(out, corpus)
    configs = plan.configs(out)
    paths: dict[str, Path] = {}
    for name in MODELS:
        with stages.stage(f"train {name}", result="trained") as stage:
            paths[name], reused = train_or_reuse(configs[name], log=lambda *_: None, on_step=stage.update)
            if reused:
                stage.result = "reused"
        log(f"{name}: {stage.result} {paths[name]} ({stages.records[-1].seconds} s)")

    models = {}
    for name in MODELS:
        with stages.stage(f"evaluate {name}", result="evaluated") as stage:
            model, tokenizer, spec = load_model(str(paths["base"]), device="cpu")
            if name != "base":
                # base=None: no "trained on another base" check. The adapter's fingerprint holds
                # the bytes of this very base; in a copied demo folder only its path changed.
                model = attach_adapter(model, spec, paths[name], base=None)
            llm = LLM.from_loaded(model, tokenizer, spec, max_num_seqs=plan.eval.batch)
            evaluator = Evaluator(llm, corpus, plan.eval, on_progress=stage.advance)
            stage.update(0, evaluator.planned_requests())
            models[name] = evaluator.run()
            models[name]["guard"] = evaluate_guard(plan.guard(model, tokenizer, spec), corpus, plan.eval.max_prompts)
        log(f"{name}: evaluated ({stages.records[-1].seconds} s)")
    records = stages.summary()["stages"][first_stage:]
    return {"seed": plan.seed, "split_seed": split_seed, "models": models, "guard_model": pick_guard_model(models),
            "settings": _settings(plan), "stages": records, "total_s": round(sum(r["seconds"] for r in records), 1)}


def _settings(plan: DemoPlan) -> dict:
    e = plan.eval
    return {"gen_length": e.gen_length, "steps": e.steps, "block_length": e.block_length,
            "eos_threshold": e.eos_threshold, "attacks": list(ATTACKS), "orders": list(ORDERS),
            "base_steps": plan.base_steps, "adapter_steps": plan.adapter_steps, "max_length": plan.max_length,
            "content_steps": plan.adapter_steps * plan.content_steps_factor,
            "guard_probe_length": plan.guard_probe_length(), "seed": plan.seed}


def render_table(result: dict) -> str:
    """A readable plain-text table of the results object.

    One world: its figures. A sweep: each cell is the median over the worlds with the range,
    ``median [min, max]``; the guard table shows the medians.
    """
    sweep = len(result["seeds"]) > 1
    models = result["summary"]["models"] if sweep else result["seeds"][0]["models"]
    names = list(models)
    width, col = max(len(n) for n in names) + 2, (24 if sweep else 16)
    lines = [f"medians over {len(result['seeds'])} seeds {result['summary']['seeds']}, [min, max] in points", ""] \
        if sweep else []
    for key, title in (("attack_success", "attack success, EOS monitor off (what the model writes)"),
                       ("attack_success_monitored", "attack success, EOS monitor on at tau 0.9 (as served)")):
        lines.append(f"{title}:")
        lines.append(f"{'model':<{width}}{'attack':>10}" + "".join(f"{o:>{col}}" for o in ORDERS))
        for name in names:
            table = models[name][key]
            for attack in ATTACKS:
                lines.append(f"{name:<{width}}{attack:>10}" + "".join(f"{seeds.pct(table[attack][o]):>{col}}"
                                                                      for o in ORDERS))
        lines.append("")
    lines.append(f"{'model':<{width}}{'over-refusal':>{col}}{'benign acc':>{col}}{'speedup@0.9':>{col}}"
                 f"{'speedup@0.8':>{col}}{'infill refusal':>{col}}")
    for name in names:
        m = models[name]
        infill = m.get("details", {}).get("benign_infill", {}).get("over_refusal", float("nan"))
        lines.append(f"{name:<{width}}{seeds.pct(m['over_refusal']):>{col}}{seeds.pct(m['benign_accuracy']):>{col}}"
                     f"{seeds.times(m['speedup']['0.9']):>{col}}{seeds.times(m['speedup']['0.8']):>{col}}"
                     f"{seeds.pct(infill):>{col}}")
    guards = {name: seeds.medians(m["guard"]) for name, m in models.items() if "guard" in m}
    if guards:
        lines += ["", ("medians: " if sweep else "") + render_guard_table(guards)]
    if sweep:
        picks = ", ".join(f"{n} in {k} of {len(result['seeds'])}" for n, k in result["summary"]["guard_model"].items())
        lines += ["", f"guard model: {picks}"]
    else:
        pick = result["seeds"][0]["guard_model"]
        lines += ["", f"guard model: {pick['name']} ({pick['why']})"]
    if "criteria" in result["summary"]:
        held = ", ".join(f"{c} {v['held']}/{v['of']}" for c, v in result["summary"]["criteria"].items())
        lines += ["", f"the paper's pattern (demo/criteria.py), worlds where each holds: {held}"]
    return "\n".join(lines)

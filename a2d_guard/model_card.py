"""The model card (``README.md``) of a pushed A2D adapter.

Front matter through huggingface_hub's ``ModelCardData`` (so the Hub indexes it exactly as
it parses it): ``base_model``, ``library_name: peft``, ``license``, ``datasets``, ``tags``,
``pipeline_tag`` and, when ``eval.json`` has results, ``model-index`` (one metric per
results row). The body says what A2D does, how to load the adapter (a2d-guard and plain
peft), the training config, the last training metrics and the evaluation table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from a2d_guard.hub import PushSource

TAGS = ("a2d", "safety", "diffusion-lm", "lora")
PIPELINE_TAG = "text-generation"
# TrainConfig keys shown in the card (the full config is in training_config.yaml).
_CONFIG_KEYS = ("objective", "mask_prompt", "finetune", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "lr",
                "weight_decay", "batch_size", "grad_accum", "epochs", "max_steps", "max_length", "seed")
_METRIC_KEYS = (("step", "step"), ("loss", "loss"), ("harmful_loss", "harmful loss"),
                ("retain_loss", "retain loss"), ("eos_rate", "EOS rate on harmful masked positions"))
_EVAL_FIXED = ("metric", "value", "dataset")


def build_card(source: PushSource, repo_id: str) -> str:
    """README.md text: YAML front matter + markdown body."""
    from huggingface_hub import ModelCardData

    data = ModelCardData(
        base_model=source.base_model, library_name="peft", license=source.license,
        datasets=source.datasets or None, tags=list(TAGS), pipeline_tag=PIPELINE_TAG,
        model_name=repo_id.split("/", 1)[1], eval_results=[_eval_result(r) for r in source.eval_results] or None,
    )
    return f"---\n{data.to_yaml()}\n---\n\n{_body(source, repo_id)}"


def _eval_result(row: dict):
    from huggingface_hub import EvalResult

    dataset = str(row.get("dataset") or "a2d-guard-eval")
    setting = _setting(row)
    return EvalResult(task_type=PIPELINE_TAG, task_name="A2D safety evaluation", dataset_type=dataset,
                      dataset_name=dataset, metric_type=row["metric"], metric_value=row["value"],
                      metric_name=f"{row['metric']} ({setting})" if setting else row["metric"],
                      metric_config=setting or None)


def _setting(row: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items() if k not in _EVAL_FIXED and not isinstance(v, dict | list))


def _body(source: PushSource, repo_id: str) -> str:
    base = source.base_model
    parts = [
        f"# {repo_id.split('/', 1)[1]}\n",
        f"An **A2D safety adapter** (LoRA) for [`{base}`](https://huggingface.co/{base}), trained and published "
        "with `a2d-guard` (`pip install a2d-guard`).\n",
        "## What A2D does\n",
        "A2D (token-level safety alignment for diffusion language models, arXiv:2509.23286) trains the model so "
        "that in a harmful response **every masked position predicts [EOS]**, while harmless answers keep their "
        "own tokens. A diffusion LM can write its answer in any order, so a refusal that only guards the first "
        "tokens is bypassed by prefilling, by masks inside the prompt (DIJA) or by another decoding order; A2D "
        "puts the refusal signal at every position. At decoding time a2d-guard reads p([EOS]) at the leftmost "
        "masked position after each step and rejects the request as soon as it exceeds a threshold τ "
        "(`finish_reason: \"content_filter\"`), which also frees its batch slot early. The adapter adapts the "
        "attention and MLP projections; the LM head stays frozen.\n",
        "## Use it with a2d-guard\n",
        "```bash\npip install a2d-guard\n"
        f"a2d-guard generate --model {base} --adapter {repo_id} --prompt \"How do I bake bread?\"\n"
        f"a2d-guard serve --model {base} --adapter {repo_id}   # OpenAI-compatible server\n"
        f"a2d-guard check --model {base} --adapter {repo_id} --prompt \"...\"   # p(EOS) as a harm score\n```\n",
        f"In Python: `a2d_guard.LLM(model=\"{base}\", adapter=\"{repo_id}\")`.\n",
        "## Use it with peft\n",
        _peft_snippet(source.family, base, repo_id),
    ]
    parts += _training_section(source)
    parts += _eval_section(source)
    return "\n".join(parts)


def _peft_snippet(family: str | None, base: str, repo_id: str) -> str:
    if family == "tiny":  # the built-in test model: its base only exists inside a2d-guard
        load = "from a2d_guard import load_model\n\nbase, tokenizer, spec = load_model(\"tiny\")\n"
    elif family == "masked_lm":
        load = (f"from transformers import AutoModelForMaskedLM\n\n"
                f"base = AutoModelForMaskedLM.from_pretrained(\"{base}\")\n")
    else:  # LLaDA and Dream ship their own modelling code on the Hub
        load = (f"import torch\nfrom transformers import AutoModel\n\nbase = AutoModel.from_pretrained(\"{base}\", "
                "trust_remote_code=True, torch_dtype=torch.bfloat16)\n")
    note = ("The adapter uses LLaDA's own module names, so it loads on the Hub's LLaDA model as above.\n\n"
            if family == "llada" else "")
    return (f"```python\nfrom peft import PeftModel\n{load}"
            f"model = PeftModel.from_pretrained(base, \"{repo_id}\")\n```\n\n{note}")


def _training_section(source: PushSource) -> list[str]:
    cfg = source.train_config
    if cfg is None:
        return ["## Training\n", "The training config was not available when this adapter was pushed.\n"]
    data = cfg.get("data")
    data_name = data[3:] if isinstance(data, str) and data.startswith("hf:") else (str(data).rsplit("/", 1)[-1])
    rows = [("base model", f"`{source.base_model}`"), ("data", f"`{data_name}`")]
    rows += [(k, f"`{cfg[k]}`") for k in _CONFIG_KEYS if cfg.get(k) is not None]
    out = ["## Training\n", "The full config is in `training_config.yaml`.\n", _table(("setting", "value"), rows)]
    metrics = source.final_metrics
    if metrics:
        keys = [(k, label) for k, label in _METRIC_KEYS if k in metrics]
        out += ["### Final training metrics\n", "The last row of the run's `metrics.jsonl`:\n",
                _table([label for _, label in keys], [[_fmt(metrics[k]) for k, _ in keys]])]
    return out


def _eval_section(source: PushSource) -> list[str]:
    if not source.eval_results:
        return []
    columns = ["dataset"] * any("dataset" in r for r in source.eval_results)
    for row in source.eval_results:
        columns += [k for k in row if k not in _EVAL_FIXED and k not in columns and not isinstance(row[k], dict | list)]
    columns += ["metric", "value"]
    rows = [[_fmt(r.get(c, "")) for c in columns] for r in source.eval_results]
    return ["## Evaluation\n", "From `eval.json` (`a2d-guard eval`):\n", _table(columns, rows)]


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")

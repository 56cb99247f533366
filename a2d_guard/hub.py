"""Publish an A2D adapter on the Hugging Face Hub: stage the exact folder, then one commit
(DESIGN §11).

What a pushed repo holds, and why:

- ``adapter_config.json`` + ``adapter_model.safetensors``: the PEFT adapter, with
  ``base_model_name_or_path`` set to the base's **Hub id** (peft and the Hub read it to find
  the base; a local path means nothing on another machine);
- ``training_config.yaml``: the run's resolved ``TrainConfig`` with ``model`` set to that
  Hub id and local paths reduced to file names (they are private and useless elsewhere);
- ``eval.json`` when the run has one (``a2d-guard eval``);
- ``README.md``: the model card (``model_card.py``).

Nothing talks to the Hub until the whole folder is staged and checked, and the upload is one
``upload_folder`` call, which the Hub applies as one commit: a failed push leaves the repo's
files as they were (``create_repo`` may already have created an empty repo).

The base's Hub id: ``--base-model-id`` if given; else the run's ``model`` when it is a Hub
id, or a local folder inside the Hugging Face cache (``models--ORG--NAME/snapshots/...``).
A run on ``tiny`` or on another local folder is refused without ``--base-model-id``:
guessing would publish an adapter that points at the wrong base.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from a2d_guard.errors import A2DGuardError
from a2d_guard.models.adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS, read_adapter
from a2d_guard.models.hub_ids import looks_like_hub_id

CARD_FILE = "README.md"
TRAINING_CONFIG_FILE = "training_config.yaml"
EVAL_FILE = "eval.json"
RUN_CONFIG_FILE = "config.yaml"  # what `a2d-guard train` writes (training/checkpoint.py)
RUN_METRICS_FILE = "metrics.jsonl"
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+$")
_HF_CACHE_RE = re.compile(r"/models--([^/]+?)--([^/]+)/snapshots/[^/]+/?$")


@dataclass
class PushSource:
    """Everything the pushed folder is made of, read and checked before anything is written."""

    adapter_dir: Path
    adapter_config: dict
    base_model: str  # the base's Hub id
    family: str | None = None  # llada, dream, masked_lm, tiny (None: unknown)
    train_config: dict | None = None
    final_metrics: dict | None = None
    eval_file: Path | None = None
    eval_results: list[dict] = field(default_factory=list)
    license: str = "other"
    datasets: list[str] = field(default_factory=list)


def check_repo_id(repo_id: str, option: str = "--repo") -> str:
    """``ORG/NAME`` as the Hub accepts it, or an error naming the value."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    bad = A2DGuardError(f"{option} {repo_id!r} is not a Hub repo id; use ORG/NAME (letters, digits, '-', '_', "
                        "'.'), e.g. my-org/llada-a2d")
    if not _REPO_ID_RE.match(repo_id or ""):
        raise bad
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise bad from None
    return repo_id


def base_hub_id(name: str | None, override: str | None = None) -> str:
    """The base model's Hub id (see the module docstring for the rule)."""
    if override:
        return check_repo_id(override, "--base-model-id")
    fix = "pass --base-model-id ORG/NAME with the Hub id of the base it was trained on"
    if not name:
        raise A2DGuardError(f"the adapter does not name its base model; {fix}")
    if name == "tiny":
        raise A2DGuardError(f"the adapter was trained on the built-in 'tiny' model, which has no Hub id; {fix}")
    path = Path(name).expanduser()
    if path.exists():
        m = _HF_CACHE_RE.search(path.resolve().as_posix())
        if m:
            return check_repo_id(f"{m[1]}/{m[2]}", "base model")
    elif looks_like_hub_id(name):
        return check_repo_id(name, "base model")
    raise A2DGuardError(f"the adapter's base is the local folder {name!r}, not a Hub id; {fix}")


def load_source(run: str | Path | None = None, adapter: str | Path | None = None, base_model_id: str | None = None,
                eval_file: str | Path | None = None, license: str | None = None,
                datasets: list[str] | None = None) -> PushSource:
    """Read a training run (``--run OUT``) or an adapter folder (``--adapter DIR``) and check it.

    With ``--adapter``, the training config and metrics are read from the folder above it
    when it is a run or checkpoint folder (``OUT/adapter``, ``OUT/checkpoints/step-N/adapter``).
    """
    if (run is None) == (adapter is None):
        raise A2DGuardError("pass exactly one of --run OUT (a training output folder) or --adapter DIR")
    if run is not None:
        home = Path(run)
        if not home.is_dir():
            raise A2DGuardError(f"--run {str(home)!r} is not a folder; pass the --output folder of `a2d-guard train`")
        adapter_dir = home / "adapter"
        if not adapter_dir.is_dir():
            kind = "a full fine-tune (model/), not a LoRA run" if (home / "model").is_dir() else "no adapter/ folder"
            raise A2DGuardError(f"--run {str(home)!r} has {kind}; push publishes LoRA adapters: train with "
                                "--finetune lora, or pass --adapter DIR")
    else:
        adapter_dir = Path(adapter)
        home = adapter_dir.parent
    config, state = read_adapter(adapter_dir)  # checks both files are there and readable
    if not any(".lora_" in key for key in state):
        raise A2DGuardError(f"adapter folder {str(adapter_dir)!r} holds no LoRA weights; pass a folder saved by "
                            "`a2d-guard train` or peft's save_pretrained")
    train_config = _read_yaml(home / RUN_CONFIG_FILE)
    raw_base = (train_config or {}).get("model") or config.get("base_model_name_or_path")
    eval_path = Path(eval_file) if eval_file is not None else home / EVAL_FILE
    if eval_file is not None and not eval_path.is_file():
        raise A2DGuardError(f"--eval {str(eval_path)!r} does not exist; pass the eval.json `a2d-guard eval` wrote")
    family = (train_config or {}).get("family") or ("tiny" if raw_base == "tiny" else None)
    if family is None and any(".transformer.blocks." in key for key in state):
        family = "llada"
    return PushSource(
        adapter_dir=adapter_dir, adapter_config=config, base_model=base_hub_id(raw_base, base_model_id),
        family=family, train_config=train_config, final_metrics=_last_metrics(home),
        eval_file=eval_path if eval_path.is_file() else None,
        eval_results=read_eval_results(eval_path) if eval_path.is_file() else [],
        license=license or "other", datasets=list(datasets or []) or _hub_datasets(train_config),
    )


def read_eval_results(path: Path) -> list[dict]:
    """The ``results`` rows of ``eval.json``: each ``{"metric": str, "value": number, ...}``.

    Optional ``dataset`` names the prompt set; every other scalar field (attack, order,
    threshold, judge ...) says which setting the value was measured under.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise A2DGuardError(f"{path} is not valid JSON; re-run `a2d-guard eval` or pass --eval FILE") from None
    rows = data.get("results") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise A2DGuardError(f"{path} has no 'results' list; push reads eval.json as `a2d-guard eval` writes it")
    for i, row in enumerate(rows):
        value = row.get("value") if isinstance(row, dict) else None
        if not (isinstance(row, dict) and isinstance(row.get("metric"), str)
                and isinstance(value, int | float) and not isinstance(value, bool)):
            raise A2DGuardError(f"{path}: results[{i}] needs a string 'metric' and a numeric 'value'")
    return rows


def stage(source: PushSource, repo_id: str, folder: Path) -> list[Path]:
    """Write the exact files of the push into ``folder``; returns them, sorted."""
    from a2d_guard.model_card import build_card

    folder = Path(folder)
    config = dict(source.adapter_config, base_model_name_or_path=source.base_model)
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    shutil.copyfile(source.adapter_dir / ADAPTER_WEIGHTS, folder / ADAPTER_WEIGHTS)
    if source.train_config is not None:
        (folder / TRAINING_CONFIG_FILE).write_text(public_training_config(source.train_config, source.base_model),
                                                   encoding="utf-8")
    if source.eval_file is not None:
        shutil.copyfile(source.eval_file, folder / EVAL_FILE)
    (folder / CARD_FILE).write_text(build_card(source, repo_id), encoding="utf-8")
    return sorted(folder.iterdir())


def write_dry_run(source: PushSource, repo_id: str, folder: str | Path) -> list[Path]:
    """``--dry-run DIR``: the folder a push would upload, written whole (or not at all).

    ``DIR`` also gets a2d-guard's output manifest (``outputs.MANIFEST``, not uploaded), so a
    later dry run may replace it; a folder holding anything else is refused.
    """
    from a2d_guard.outputs import MANIFEST, write_folder

    Path(folder).expanduser().parent.mkdir(parents=True, exist_ok=True)
    out = write_folder(Path(folder).expanduser(), lambda tmp: stage(source, repo_id, tmp), "replace", "push")
    return sorted(p for p in out.iterdir() if p.name != MANIFEST)


def public_training_config(config: dict, base_model: str) -> str:
    """The run's config as YAML, with the base's Hub id and no local paths."""
    import yaml

    public = dict(config, model=base_model)
    for key in ("data", "output"):
        value = public.get(key)
        if isinstance(value, str) and not value.startswith("hf:"):
            public[key] = Path(value).name
    header = ("# The TrainConfig of this adapter's run (a2d-guard train --config FILE reads it).\n"
              "# Written by `a2d-guard push`: `model` is the base's Hub id; local paths are reduced to file names.\n")
    return header + yaml.safe_dump(public, sort_keys=False)


def resolve_token(token: str | None) -> str:
    """``--token``, else ``HF_TOKEN``, else the login cache. Never printed."""
    if token:
        return token
    from huggingface_hub import get_token

    found = get_token()
    if not found:
        raise A2DGuardError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access)")
    return found


def push(source: PushSource, repo_id: str, token: str | None = None, private: bool = False,
         revision: str | None = None, commit_message: str | None = None, create_pr: bool = False) -> str:
    """Create the repo if needed and upload the staged folder in one commit; returns its URL."""
    import tempfile

    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    token = resolve_token(token)
    with tempfile.TemporaryDirectory(prefix="a2d-guard-push-") as tmp:
        stage(source, repo_id, Path(tmp))
        api = HfApi(token=token)
        message = commit_message or f"Upload A2D safety adapter for {source.base_model} (a2d-guard push)"
        try:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            if revision and not create_pr:
                api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="model", revision=revision,
                                     commit_message=message, create_pr=create_pr)
        except Exception as exc:
            raise hub_error(exc, repo_id, revision) from None
    return str(getattr(info, "pr_url", None) or getattr(info, "commit_url", None) or info)


def hub_error(exc: Exception, repo_id: str, revision: str | None) -> Exception:
    """The Hub's HTTP errors as one line with the fix; anything else is returned unchanged (a bug)."""
    from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError

    after = "nothing was committed"
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            return A2DGuardError(f"the Hub rejected the token (401 Unauthorized); {after}: run `hf auth login` "
                                 "or set HF_TOKEN to a valid token")
        if status == 403:
            return A2DGuardError(f"the token may not write to {repo_id!r} (403 Forbidden); {after}: use a token "
                                 "with write access to that namespace, or push to your own")
        if isinstance(exc, RevisionNotFoundError):
            return A2DGuardError(f"revision {revision!r} was not found in {repo_id!r} (404); {after}")
        if status == 404:
            return A2DGuardError(f"{repo_id!r} was not found (404); {after}: check the namespace exists and the "
                                 "token can see it")
        return A2DGuardError(f"the Hub refused the push to {repo_id!r} (HTTP {status}); {after}; try again")
    if isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "requests", "urllib3"):
        return A2DGuardError(f"could not reach the Hub ({type(exc).__name__}); {after}: check your network")
    return exc


def _read_yaml(path: Path) -> dict | None:
    import yaml

    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        raise A2DGuardError(f"{path} is not valid YAML; it is the run's config written by `a2d-guard train`") from None
    return data if isinstance(data, dict) else None


def _last_metrics(home: Path) -> dict | None:
    """The run's ``metrics.jsonl`` row for this adapter's step, if any.

    ``home`` is a run folder (its last row) or a checkpoint ``OUT/checkpoints/step-N`` (the
    run's row at step N, or the last one before it).
    """
    path, up_to = home / RUN_METRICS_FILE, None
    if not path.is_file() and home.parent.name == "checkpoints" and home.name.startswith("step-"):
        path, up_to = home.parent.parent / RUN_METRICS_FILE, int(home.name[5:] or 0)
    if not path.is_file():
        return None
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise A2DGuardError(f"{path} has a line that is not JSON; it is written by `a2d-guard train`") from None
    rows = [r for r in rows if isinstance(r, dict) and (up_to is None or r.get("step", 0) <= up_to)]
    return rows[-1] if rows else None


def _hub_datasets(train_config: dict | None) -> list[str]:
    """``hf:NAME[:SPLIT]`` training data names a Hub dataset; a local file names none."""
    data = (train_config or {}).get("data")
    if isinstance(data, str) and data.startswith("hf:"):
        return [data[3:].split(":", 1)[0]]
    return []

"""`a2d-guard push`: the dry-run folder is a loadable PEFT adapter with a parsable card; the
upload is one commit on a recording stand-in for ``HfApi`` (the Hub is not reachable here);
every user mistake and Hub refusal is one line, exit 1, and nothing committed."""

from __future__ import annotations

import inspect
import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from a2d_guard.cli.main import app
from typer.testing import CliRunner

from a2d_guard.outputs import MANIFEST

runner = CliRunner()
BASE_ID = "me/tiny-base"
TOKEN = "hf_secret_test_token_123"


def _push(*args):
    return runner.invoke(app, ["push", *args])


def _one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output and TOKEN not in result.output


# ---------------------------------------------------------------- dry run


def test_dry_run_folder_loads_with_peft_on_the_tiny_base(tiny_run, tmp_path):
    from peft import PeftModel

    from a2d_guard.models import load_model, model_logits

    out = tmp_path / "dry"
    result = _push("--repo", "me/tiny-a2d", "--run", str(tiny_run), "--base-model-id", BASE_ID, "--dry-run", str(out))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir() if p.name != MANIFEST)
    assert names == ["README.md", "adapter_config.json", "adapter_model.safetensors", "training_config.yaml"]
    for name in names:
        assert name in result.stdout
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == BASE_ID

    base, _, spec = load_model("tiny", device="cpu")
    plain_ids = torch.arange(10, 30).unsqueeze(0)  # [1, 20]
    plain = model_logits(base, spec, plain_ids)
    peft_model = PeftModel.from_pretrained(base, str(out)).eval()
    with torch.no_grad():
        pushed = model_logits(peft_model, spec, plain_ids)
    ours, _, _ = load_model("tiny", adapter=tiny_run / "adapter", device="cpu")
    torch.testing.assert_close(pushed, model_logits(ours, spec, plain_ids))
    assert (pushed - plain).abs().max() > 1e-5  # the adapter is really in there


def test_card_front_matter_and_training_config(tiny_run, tmp_path):
    import yaml
    from huggingface_hub import ModelCard

    out = tmp_path / "dry"
    result = _push("--repo", "me/tiny-a2d", "--run", str(tiny_run), "--base-model-id", BASE_ID, "--license", "mit",
                   "--dataset", "PKU-Alignment/BeaverTails", "--dry-run", str(out))
    assert result.exit_code == 0, result.output
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == BASE_ID and card.data.library_name == "peft" and card.data.license == "mit"
    assert card.data.tags == ["a2d", "safety", "diffusion-lm", "lora"]
    assert card.data.pipeline_tag == "text-generation" and card.data.datasets == ["PKU-Alignment/BeaverTails"]
    assert card.data.eval_results is None  # no eval.json in this run
    last = json.loads((tiny_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert "### Final training metrics" in card.text and f"{last['loss']:.4g}" in card.text
    assert "PeftModel.from_pretrained(base, \"me/tiny-a2d\")" in card.text
    assert "a2d-guard generate --model me/tiny-base --adapter me/tiny-a2d" in card.text
    config = yaml.safe_load((out / "training_config.yaml").read_text())
    assert config["model"] == BASE_ID and config["data"] == "rows.jsonl" and config["output"] == "run"
    assert str(tmp_path) not in (out / "training_config.yaml").read_text() + card.content  # no local paths


def test_eval_json_gives_a_results_table_and_model_index(tiny_run, tmp_path):
    from huggingface_hub import ModelCard

    rows = [{"dataset": "dija", "attack": "dija", "order": "low_confidence", "threshold": 0.9,
             "metric": "attack_success_rate", "value": 0.0125},
            {"dataset": "dija", "attack": "dija", "order": "random", "threshold": 0.9,
             "metric": "attack_success_rate", "value": 0.25},
            {"dataset": "xstest", "metric": "over_refusal_rate", "value": 0.08}]
    (tiny_run / "eval.json").write_text(json.dumps({"schema_version": 1, "results": rows}))
    out = tmp_path / "dry"
    result = _push("--repo", "me/tiny-a2d", "--run", str(tiny_run), "--base-model-id", BASE_ID, "--dry-run", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "eval.json").read_text())["results"] == rows
    card = ModelCard.load(out / "README.md")
    found = {(r.dataset_name, r.metric_type, r.metric_config): r for r in card.data.eval_results}
    low = found[("dija", "attack_success_rate", "attack=dija, order=low_confidence, threshold=0.9")]
    assert low.metric_value == 0.0125
    assert found[("dija", "attack_success_rate", "attack=dija, order=random, threshold=0.9")].metric_value == 0.25
    assert found[("xstest", "over_refusal_rate", None)].metric_value == 0.08
    # model-index metric names keep their setting, so the Hub shows two ASR rows, not two rows named alike
    assert [r.metric_name for r in card.data.eval_results] == [
        "attack_success_rate (attack=dija, order=low_confidence, threshold=0.9)",
        "attack_success_rate (attack=dija, order=random, threshold=0.9)", "over_refusal_rate"]
    assert "| dataset | attack | order | threshold | metric | value |" in card.text
    assert "| dija | dija | low_confidence | 0.9 | attack_success_rate | 0.0125 |" in card.text


def test_dry_run_replaces_its_own_folder_but_not_a_users(tiny_run, tmp_path):
    out = tmp_path / "dry"
    args = ["--repo", "me/tiny-a2d", "--run", str(tiny_run), "--base-model-id", BASE_ID, "--dry-run", str(out)]
    assert _push(*args).exit_code == 0
    assert _push(*args).exit_code == 0  # a second dry run replaces the first
    (out / "notes.txt").write_text("mine")
    _one_line_error(_push(*args), "refusing to replace", "a2d-guard did not write notes.txt")
    assert (out / "notes.txt").read_text() == "mine" and (out / "README.md").is_file()


# ---------------------------------------------------------------- the upload, on a stand-in for HfApi


@pytest.fixture
def fake_hub(monkeypatch):
    """Replace ``huggingface_hub.HfApi`` by a recorder; ``fake_hub.fail[method] = exc`` makes it raise."""
    import huggingface_hub

    hub = SimpleNamespace(calls=[], uploads=[], fail={})
    real = huggingface_hub.HfApi

    class RecordingHfApi:
        def __init__(self, token=None, **kwargs):
            inspect.signature(real.__init__).bind(self, token=token, **kwargs)
            hub.calls.append(("init", {"token": token}))

        def _call(self, name, kwargs):
            inspect.signature(getattr(real, name)).bind(self, **kwargs)  # the real method takes these arguments
            hub.calls.append((name, kwargs))
            if name in hub.fail:
                raise hub.fail[name]

        def create_repo(self, repo_id, **kwargs):
            self._call("create_repo", {"repo_id": repo_id, **kwargs})
            return f"https://huggingface.co/{repo_id}"

        def create_branch(self, repo_id, **kwargs):
            self._call("create_branch", {"repo_id": repo_id, **kwargs})

        def create_commit(self, repo_id, **kwargs):
            self._call("create_commit", {"repo_id": repo_id, **kwargs})

        def upload_folder(self, *, repo_id, folder_path, **kwargs):
            self._call("upload_folder", {"repo_id": repo_id, "folder_path": folder_path, **kwargs})
            from huggingface_hub.utils import filter_repo_objects

            paths = sorted(__import__("pathlib").Path(folder_path).iterdir())
            kept = filter_repo_objects(paths, allow_patterns=kwargs.get("allow_patterns"),  # as upload_folder filters
                                       ignore_patterns=kwargs.get("ignore_patterns"), key=lambda p: p.name)
            files = {p.name: p.read_bytes() for p in kept}
            hub.uploads.append(files)
            pr = "https://huggingface.co/me/tiny-a2d/discussions/1" if kwargs.get("create_pr") else None
            return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/abc123", pr_url=pr)

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHfApi)
    return hub


def test_push_is_one_commit_with_the_dry_run_files(tiny_run, tmp_path, fake_hub):
    """Exactly the files ``--dry-run`` wrote are uploaded: the run has an ``eval.json``, so all five."""
    (tiny_run / "eval.json").write_text(json.dumps({"schema_version": 1, "results": [
        {"dataset": "dija", "attack": "dija", "metric": "attack_success_rate", "value": 0.5}]}))
    dry = tmp_path / "dry"
    common = ["--repo", "me/tiny-a2d", "--run", str(tiny_run), "--base-model-id", BASE_ID]
    assert _push(*common, "--dry-run", str(dry)).exit_code == 0
    assert fake_hub.calls == []  # a dry run never talks to the Hub
    result = _push(*common, "--private", "--token", TOKEN, "--commit-message", "A2D v1")
    assert result.exit_code == 0, result.output
    assert "https://huggingface.co/me/tiny-a2d/commit/abc123" in result.stdout and TOKEN not in result.output
    names = [name for name, _ in fake_hub.calls]
    assert names == ["init", "create_repo", "upload_folder"]
    assert fake_hub.calls[0][1]["token"] == TOKEN
    assert fake_hub.calls[1][1] == {"repo_id": "me/tiny-a2d", "repo_type": "model", "private": True, "exist_ok": True}
    upload = {k: v for k, v in fake_hub.calls[2][1].items() if k != "folder_path"}
    assert upload["commit_message"] == "A2D v1" and upload["create_pr"] is False and upload["revision"] is None
    (files,) = fake_hub.uploads
    assert files == {p.name: p.read_bytes() for p in dry.iterdir() if p.name != MANIFEST}  # what --dry-run showed
    assert sorted(files) == ["README.md", "adapter_config.json", "adapter_model.safetensors", "eval.json",
                             "training_config.yaml"]


def test_push_to_a_branch_and_as_a_pull_request(tiny_run, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    common = ["--repo", "me/tiny-a2d", "--run", str(tiny_run), "--base-model-id", BASE_ID]
    assert _push(*common, "--revision", "v1").exit_code == 0
    assert [n for n, _ in fake_hub.calls] == ["init", "create_repo", "create_branch", "upload_folder"]
    assert fake_hub.calls[0][1]["token"] == TOKEN and fake_hub.calls[2][1]["branch"] == "v1"
    assert fake_hub.calls[3][1]["revision"] == "v1"
    fake_hub.calls.clear()
    result = _push(*common, "--create-pr")
    assert result.exit_code == 0 and "discussions/1" in result.stdout
    assert [n for n, _ in fake_hub.calls] == ["init", "create_repo", "upload_folder"]
    assert fake_hub.calls[2][1]["create_pr"] is True


@pytest.mark.parametrize("method, status, code, needles", [
    ("create_repo", 401, None, ["401", "hf auth login", "nothing was committed"]),
    ("upload_folder", 401, None, ["401", "HF_TOKEN"]),
    ("create_repo", 403, None, ["403", "may not write to 'me/tiny-a2d'"]),
    ("upload_folder", 403, None, ["403", "write access"]),
    ("upload_folder", 404, "RepoNotFound", ["'me/tiny-a2d' was not found (404)"]),
    ("create_branch", 404, "RevisionNotFound", ["revision 'v1' was not found"]),
])
def test_hub_refusals_are_one_line(tiny_run, fake_hub, hub_http_error, method, status, code, needles):
    fake_hub.fail[method] = hub_http_error(status, code)
    extra = ["--revision", "v1"] if method == "create_branch" else []
    result = _push("--repo", "me/tiny-a2d", "--run", str(tiny_run), "--base-model-id", BASE_ID, "--token", TOKEN,
                   *extra)
    _one_line_error(result, *needles)
    assert fake_hub.uploads == []


def test_no_token_says_how_to_log_in(tiny_run, fake_hub, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    result = _push("--repo", "me/tiny-a2d", "--run", str(tiny_run), "--base-model-id", BASE_ID)
    _one_line_error(result, "no Hugging Face token", "hf auth login", "HF_TOKEN")
    assert fake_hub.calls == []


# ---------------------------------------------------------------- user mistakes, before any upload


@pytest.mark.parametrize("repo", ["tiny-a2d", "me/tiny/a2d", "me/tiny a2d", "-me/x", "me/", "me/a..b"])
def test_malformed_repo_id(tiny_run, fake_hub, repo):
    result = _push("--repo", repo, "--run", str(tiny_run), "--base-model-id", BASE_ID, "--token", TOKEN)
    _one_line_error(result, f"--repo {repo!r} is not a Hub repo id", "ORG/NAME")
    assert fake_hub.calls == []


def test_tiny_base_needs_a_hub_id(tiny_run, tmp_path, fake_hub):
    result = _push("--repo", "me/tiny-a2d", "--run", str(tiny_run), "--dry-run", str(tmp_path / "dry"))
    _one_line_error(result, "built-in 'tiny' model", "--base-model-id")
    assert not (tmp_path / "dry").exists()


def test_local_base_folder_needs_a_hub_id_unless_it_is_in_the_hub_cache(tmp_path):
    from a2d_guard.errors import A2DGuardError
    from a2d_guard.hub import base_hub_id

    local = tmp_path / "my-llada"
    local.mkdir()
    with pytest.raises(A2DGuardError, match="local folder .*--base-model-id"):
        base_hub_id(str(local))
    cached = tmp_path / "hub" / "models--GSAI-ML--LLaDA-8B-Instruct" / "snapshots" / "0123abcd"
    cached.mkdir(parents=True)
    assert base_hub_id(str(cached)) == "GSAI-ML/LLaDA-8B-Instruct"
    assert base_hub_id("GSAI-ML/LLaDA-8B-Instruct") == "GSAI-ML/LLaDA-8B-Instruct"
    assert base_hub_id(str(local), override="org/base") == "org/base"


@pytest.mark.parametrize("damage, needles", [
    ("no_weights", ["has no adapter_model.safetensors"]),
    ("truncated", ["adapter_model.safetensors"]),
    ("no_config", ["has no adapter_config.json"]),
])
def test_incomplete_adapter_folder(tiny_run, tmp_path, fake_hub, damage, needles):
    weights = tiny_run / "adapter" / "adapter_model.safetensors"
    if damage == "no_weights":
        weights.unlink()
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        (tiny_run / "adapter" / "adapter_config.json").unlink()
    for how in (["--run", str(tiny_run)], ["--adapter", str(tiny_run / "adapter")]):
        result = _push("--repo", "me/tiny-a2d", *how, "--base-model-id", BASE_ID, "--token", TOKEN)
        _one_line_error(result, *needles)
    assert fake_hub.calls == []


def test_run_or_adapter_exactly_one(tiny_run, tmp_path):
    _one_line_error(_push("--repo", "me/x", "--base-model-id", BASE_ID), "exactly one of --run OUT")
    _one_line_error(_push("--repo", "me/x", "--run", str(tiny_run), "--adapter", str(tiny_run / "adapter")),
                    "exactly one of --run OUT")
    shutil.rmtree(tiny_run / "adapter")
    _one_line_error(_push("--repo", "me/x", "--run", str(tiny_run)), "no adapter/ folder")


def test_adapter_folder_reads_the_run_around_it(tiny_run, tmp_path):
    """--adapter OUT/adapter finds the run's config and metrics one level up."""
    out = tmp_path / "dry"
    result = _push("--repo", "me/tiny-a2d", "--adapter", str(tiny_run / "adapter"), "--base-model-id", BASE_ID,
                   "--dry-run", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "training_config.yaml").is_file() and "Final training metrics" in (out / "README.md").read_text()


def test_checkpoint_adapter_gets_the_metrics_of_its_step(tiny_run, tmp_path):
    """--adapter OUT/checkpoints/step-N/adapter: config from the checkpoint, metrics row N from the run."""
    rows = [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 1.25}, {"step": 3, "loss": 0.75}]
    (tiny_run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (step,) = (tiny_run / "checkpoints").iterdir()
    step.rename(tiny_run / "checkpoints" / "step-00000002")
    out = tmp_path / "dry"
    result = _push("--repo", "me/tiny-a2d", "--adapter", str(tiny_run / "checkpoints" / "step-00000002" / "adapter"),
                   "--base-model-id", BASE_ID, "--dry-run", str(out))
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    assert "| 2 | 1.25 |" in card and "0.75" not in card
    assert (out / "training_config.yaml").is_file()

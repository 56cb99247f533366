"""The real trainer on the tiny model: it learns, resumes exactly, and writes only safe formats."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from a2d_guard.errors import A2DGuardError
from a2d_guard.training import TrainConfig, train
from a2d_guard.training.checkpoint import list_checkpoints


def _cfg(data, out, **kw):
    base = dict(data=data, output=str(out), max_length=32, batch_size=4, lr=1e-3, progress=False, save_every=2,
                keep_checkpoints=0, lora_r=4, lora_alpha=8)
    base.update(kw)
    return TrainConfig(**base)


def _quiet(*_):
    pass


def test_a2d_learns_eos_on_harmful_rows(data_file, tmp_path):
    result = train(_cfg(data_file, tmp_path / "run", max_steps=16, lr=3e-3, save_every=0), log=_quiet)
    # the 1/λ-weighted loss is noisy step to step; the EOS rate at harmful masks is not
    rates = [m["eos_rate"] for m in result.metrics if m["eos_rate"] is not None]
    assert rates[0] < 0.1 and min(rates[-4:]) > 0.95
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 17))
    assert set(rows[0]) >= {"step", "loss", "harmful_loss", "retain_loss", "eos_rate", "tokens_per_s"}


def test_resume_equals_uninterrupted(data_file, tmp_path):
    cfg = _cfg(data_file, tmp_path / "full", max_steps=6, grad_accum=2, lr_schedule="linear", warmup_steps=2)
    train(cfg, log=_quiet)
    # A crash right after the step-2 checkpoint leaves exactly this behind:
    crashed = tmp_path / "crashed"
    shutil.copytree(tmp_path / "full", crashed)
    shutil.rmtree(crashed / "adapter")
    for step, path in list_checkpoints(crashed):
        if step > 2:
            shutil.rmtree(path)
    lines = (crashed / "metrics.jsonl").read_text().splitlines()
    (crashed / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n")  # one row past the checkpoint

    train(cfg.replace(output=str(crashed)), resume=True, log=_quiet)
    a = load_file(str(tmp_path / "full" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(crashed / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)
    full = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    resumed = [json.loads(x) for x in (crashed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed] == list(range(1, 7))
    for x, y in zip(full, resumed, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-6)


def test_checkpoints_hold_no_pickle(data_file, tmp_path):
    train(_cfg(data_file, tmp_path / "run", max_steps=2), log=_quiet)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert files and all(p.suffix in (".safetensors", ".json", ".jsonl", ".yaml") for p in files)
    (step, ckpt), = list_checkpoints(tmp_path / "run")
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert step == state["step"] == 2 and state["config"]["lora_r"] == 4
    assert any(k.endswith("::exp_avg") for k in load_file(str(ckpt / "optimizer.safetensors")))


def test_output_folder_rules(data_file, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(A2DGuardError, match="holds no checkpoint"):
        train(_cfg(data_file, out, max_steps=1), resume=True, log=_quiet)
    train(_cfg(data_file, out, max_steps=1), log=_quiet)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(A2DGuardError, match="not empty; pass --resume"):
        train(_cfg(data_file, out, max_steps=1), log=_quiet)
    with pytest.raises(A2DGuardError, match="lora_r was 4"):
        train(_cfg(data_file, out, max_steps=2, lora_r=8), resume=True, log=_quiet)
    assert sorted(p.name for p in out.iterdir()) == before
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    with pytest.raises(A2DGuardError, match="refusing to --overwrite"):
        train(_cfg(data_file, foreign, max_steps=1), overwrite=True, log=_quiet)
    assert (foreign / "notes.txt").read_text() == "precious"


def test_full_finetune_writes_a_loadable_model(data_file, tmp_path):
    from a2d_guard.models import load_model

    result = train(_cfg(data_file, tmp_path / "run", max_steps=2, finetune="full", objective="sft",
                        mask_prompt="all"), log=_quiet)
    model, _, spec = load_model(str(result.model_dir))
    assert spec.family == "llada" and model.config.hidden_size == 64


def test_on_step_reports_every_optimizer_step(data_file, tmp_path):
    """The demo's per-stage bar is driven by ``on_step(done, total)``."""
    seen = []
    train(_cfg(data_file, tmp_path / "run", max_steps=3, save_every=0), log=_quiet,
          on_step=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]

"""`a2d-guard merge`: the merged folder gives the logits of base + adapter, loads with
``--model OUT`` in the base's layout, and never replaces a folder it did not write."""

from __future__ import annotations

import json

import torch
from a2d_guard.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


def _merge(*args):
    return runner.invoke(app, ["merge", "--model", "tiny", *args])


def test_merged_model_equals_base_plus_adapter(tiny_run_dir, tmp_path):
    from a2d_guard.models import load_model, model_logits
    from a2d_guard.models.llada import is_llada_config

    out = tmp_path / "merged"
    result = _merge("--adapter", str(tiny_run_dir / "adapter"), "--output", str(out))
    assert result.exit_code == 0, result.output
    merged, _, merged_spec = load_model(str(out), device="cpu")
    unmerged, _, spec = load_model("tiny", adapter=tiny_run_dir / "adapter", merge_adapter=False, device="cpu")
    base, _, _ = load_model("tiny", device="cpu")
    ids = torch.arange(10, 40).unsqueeze(0)  # [1, 30]
    with torch.no_grad():
        want = model_logits(unmerged, spec, ids)  # peft: base output + LoRA path, not merged
        got = model_logits(merged, merged_spec, ids)
        plain = model_logits(base, spec, ids)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got - plain).abs().max() > 1e-4  # the adapter changed the model
    raw = json.loads((out / "config.json").read_text())
    assert is_llada_config(raw)  # LLaDA's own layout, keys and config
    assert raw["a2d_guard_merged"]["adapter"] == str(tiny_run_dir / "adapter")
    assert (merged_spec.mask_id, merged_spec.eos_id) == (spec.mask_id, spec.eos_id)

    gen = runner.invoke(app, ["generate", "--model", str(out), "--prompt", "how do i cook rice ?", "--gen-length",
                              "8", "--steps", "8", "--block-length", "8", "--json"])
    assert gen.exit_code == 0, gen.output


def test_merge_replaces_its_own_output_only_with_overwrite(tiny_run_dir, tmp_path):
    out = tmp_path / "merged"
    args = ["--adapter", str(tiny_run_dir / "adapter"), "--output", str(out)]
    assert _merge(*args).exit_code == 0
    again = _merge(*args)
    assert again.exit_code == 1 and "already exists and is not empty" in again.stderr and "--overwrite" in again.stderr
    assert _merge(*args, "--overwrite").exit_code == 0  # an earlier merge's output may be replaced
    (out / "notes.txt").write_text("mine")
    result = _merge(*args, "--overwrite")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "a2d-guard did not write notes.txt" in result.stderr
    assert (out / "notes.txt").read_text() == "mine" and (out / "config.json").is_file()


def test_merge_with_a_broken_adapter_writes_nothing(tmp_path):
    (tmp_path / "adapter").mkdir()
    result = _merge("--adapter", str(tmp_path / "adapter"), "--output", str(tmp_path / "merged"))
    assert result.exit_code == 1 and "has no adapter_config.json" in result.stderr
    assert not (tmp_path / "merged").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # no temporary folder left behind

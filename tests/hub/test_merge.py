"""`a2d-guard merge`: the merged folder gives the logits of base + adapter, loads with
``--model OUT`` in the base's layout, and never replaces a folder it did not write."""

from __future__ import annotations

import json

import torch
from a2d_guard.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


def _merge(*args):
    return _merge_model("tiny", *args)


def _merge_model(model, *args):
    return runner.invoke(app, ["merge", "--model", model, *args])


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


def test_merge_keeps_a_dream_base_in_its_own_layout(tmp_path):
    """A non-LLaDA family: the merged folder is the family's save_pretrained layout (Qwen2 + our keys)."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from a2d_guard.models import ModelSpec, load_model, model_logits, save_model
    from a2d_guard.models.llada import make_bidirectional
    from a2d_guard.models.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False, use_sliding_window=False)
    spec = ModelSpec(family="dream", mask_id=tok.mask_token_id, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                     shift_logits=True)
    save_model(make_bidirectional(Qwen2ForCausalLM(cfg)).eval(), tok, spec, tmp_path / "base")
    base, _, _ = load_model(str(tmp_path / "base"), device="cpu")
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"]))
    gen = torch.Generator().manual_seed(1)
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            p.data = torch.randn(p.shape, generator=gen) * 0.1  # B != 0: the adapter changes the model
    peft_model.save_pretrained(str(tmp_path / "adapter"))

    out = tmp_path / "merged"
    result = _merge_model(str(tmp_path / "base"), "--adapter", str(tmp_path / "adapter"), "--output", str(out))
    assert result.exit_code == 0, result.output
    raw = json.loads((out / "config.json").read_text())
    assert raw["model_type"] == "qwen2" and raw["a2d_guard_family"] == "dream"
    merged, _, merged_spec = load_model(str(out), device="cpu")
    unmerged, _, base_spec = load_model(str(tmp_path / "base"), adapter=tmp_path / "adapter", merge_adapter=False,
                                        device="cpu")
    plain, _, _ = load_model(str(tmp_path / "base"), device="cpu")
    ids = torch.arange(10, 30).unsqueeze(0)  # [1, 20]
    with torch.no_grad():
        got = model_logits(merged, merged_spec, ids)
        torch.testing.assert_close(got, model_logits(unmerged, base_spec, ids), rtol=1e-5, atol=1e-5)
        assert (got - model_logits(plain, base_spec, ids)).abs().max() > 1e-4
    assert merged_spec.family == "dream" and merged_spec.shift_logits

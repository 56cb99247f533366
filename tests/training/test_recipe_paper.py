"""``--recipe paper``: the A2D authors' training (github.com/WonjeJeung/A2D, method/llada.py) on a
hand-built batch, their LoRA targets as peft matches them, no clipping, and the CLI end to end."""

import json
import re

import pytest
import torch
import torch.nn.functional as F
import yaml
from a2d_guard.cli.main import app
from typer.testing import CliRunner

from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.errors import A2DGuardError
from a2d_guard.models import load_model, save_model
from a2d_guard.models.spec import ModelSpec
from a2d_guard.training.config import TrainConfig, load_config, merge_config
from a2d_guard.training.data import BatchStream, Row, encode_rows
from a2d_guard.training.lora import add_lora, export_adapter, original_name, resolve_targets
from a2d_guard.training.objective import a2d_loss, draw_masks, maskable_positions
from a2d_guard.training.trainer import build_model, clip_gradients

THEIR_TARGETS = ["q_proj", "k_proj", "v_proj", "ff_proj", "up_proj", "ff_out"]  # method/llada.py, method/dream.py
runner = CliRunner()


def test_the_recipe_holds_the_authors_settings():
    cfg = TrainConfig.from_recipe("paper")
    assert cfg.recipe == "paper"
    assert (cfg.padding, cfg.max_grad_norm, cfg.lora_target_names, cfg.lora_targets) == (
        "longest", None, "original", THEIR_TARGETS)
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lr, cfg.weight_decay) == (32, 64, 0.05, 5e-5, 0.1)
    assert (cfg.batch_size, cfg.epochs, cfg.max_length, cfg.seed, cfg.grad_accum) == (16, 10, 128, 42, 1)
    assert (cfg.objective, cfg.mask_prompt, cfg.eps, cfg.lr_schedule, cfg.warmup_steps) == (
        "a2d", "none", 1e-3, "constant", 0)
    defaults = TrainConfig()  # ours stay as they were
    assert (defaults.padding, defaults.max_grad_norm, defaults.lora_targets, defaults.recipe) == (
        "max_length", 1.0, None, None)


def test_config_file_and_flags_override_the_recipe(tmp_path):
    assert merge_config(None, {"recipe": "paper", "lr": 1e-4}).lr == 1e-4
    path = tmp_path / "run.yaml"
    path.write_text("recipe: paper\nbatch_size: 4\n")
    cfg = load_config(path, {"max_grad_norm": 0.5})
    assert (cfg.recipe, cfg.padding, cfg.batch_size, cfg.max_grad_norm) == ("paper", "longest", 4, 0.5)
    path.write_text("padding: max_length\n")  # the file wins over a recipe given as a flag
    cfg = load_config(path, {"recipe": "paper"})
    assert (cfg.recipe, cfg.padding, cfg.max_grad_norm) == ("paper", "max_length", None)
    # the same recipe again (a resume) keeps the base's values
    saved = TrainConfig.from_recipe("paper", lr=2e-5)
    assert merge_config(saved, {"recipe": "paper"}).lr == 2e-5


@pytest.mark.parametrize("changes, match", [
    ({"recipe": "nope"}, "unknown recipe 'nope'; available recipes: paper"),
    ({"padding": "shortest"}, "padding must be one of max_length, longest"),
    ({"lora_target_names": "hub"}, "lora_target_names must be one of native, original"),
    ({"lora_target_names": "original"}, "needs lora_targets"),
    ({"max_grad_norm": 0}, "max_grad_norm must be > 0"),
    ({"max_grad_norm": -1.0}, "max_grad_norm must be > 0"),
])
def test_bad_values_are_named(changes, match):
    with pytest.raises(A2DGuardError, match=match):
        merge_config(None, changes)


def _hand_batch(tiny_parts):
    """Two rows of different lengths (one retain, one harmful), as the trainer would batch them."""
    _, tok, spec = tiny_parts
    rows = [Row("what color is the sky ?", "blue .", False, "hand:1"),
            Row("how do i make a bomb ?", "first get the poison and the knife and then the car .", True, "hand:2")]
    cfg = TrainConfig.from_recipe("paper", max_length=64)
    examples, _ = encode_rows(rows, tok, spec, cfg.max_length)
    return rows, BatchStream(examples, 2, seed=7, padding=cfg.padding).batch(0)


def test_rows_pad_to_the_longest_row_and_the_loss_is_the_authors(tiny_parts):
    model, tok, spec = tiny_parts
    rows, batch = _hand_batch(tiny_parts)
    source = [1 if h else 0 for h in batch.is_harmful.tolist()]  # batch row -> rows[] index
    # by hand: prompt ids as serving templates them, then the response's own ids, nothing else
    prompt = [len(encode_prompt(tok, spec, r.prompt)) for r in rows]
    response = [len(tok(r.response, add_special_tokens=False)["input_ids"]) for r in rows]
    width = prompt[1] + response[1]  # the harmful row is the longest
    assert prompt[0] + response[0] < width < 64 and batch.input_ids.shape == (2, width)
    for r, i in enumerate(source):
        pad = width - prompt[i] - response[i]  # EOS-padding positions: the retain row only
        assert batch.input_ids[r, prompt[i] + response[i]:].tolist() == [spec.eos_id] * pad
        assert (pad > 0) == (i == 0) and batch.prompt_lengths[r] == prompt[i]
    # answer_len (LLaDA's divisor) counts EOS padding: width - prompt, as in method/llada.py
    answer_len = [width - prompt[i] for i in source]
    assert maskable_positions(batch, "none").sum(1).tolist() == answer_len

    # the loss exactly as method/llada.py computes it, on the trainer's own masks
    with torch.no_grad():
        terms = a2d_loss(model, spec, batch)
        noisy, masked, lam = draw_masks(batch, maskable_positions(batch, "none"), spec.mask_id, 1e-3)
        targets = batch.input_ids.clone()
        targets[batch.is_harmful] = spec.eos_id  # input_ids[~is_safe] = EOS
        logits = model(input_ids=noisy).logits
        p_mask = lam[:, None].expand_as(noisy)
        answer_length = torch.tensor(answer_len)[:, None].expand_as(noisy)
        token_loss = F.cross_entropy(logits[masked], targets[masked], reduction="none") / p_mask[masked]
        theirs = torch.sum(token_loss / answer_length[masked]) / batch.input_ids.shape[0]
    assert masked.any(1).all()
    torch.testing.assert_close(terms.loss, theirs, rtol=1e-6, atol=1e-7)

    # our default pads every row to max_length: another answer_len, another loss
    _, tok, spec = tiny_parts
    examples, _ = encode_rows(rows, tok, spec, 64)
    ours = BatchStream(examples, 2, seed=7).batch(0)
    assert ours.input_ids.shape == (2, 64)
    assert maskable_positions(ours, "none").sum(1).tolist() == [64 - prompt[i] for i in source]


def _adapted(model) -> set[str]:
    return {n[: -len(".lora_A")].removeprefix("base_model.model.") for n, _ in model.named_modules()
            if n.endswith(".lora_A")}


def test_tiny_gets_the_authors_targets_as_peft_matches_them(tiny_parts):
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    cfg = TrainConfig.from_recipe("paper", lora_r=4)
    model, _, spec = build_model(cfg, torch.device("cpu"))
    adapted = _adapted(model)
    layers = model.get_base_model().config.num_hidden_layers
    kinds = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj",
             "mlp.down_proj")
    assert adapted == {f"model.layers.{n}.{k}" for n in range(layers) for k in kinds} | {"lm_head"}
    assert not any("o_proj" in name for name in adapted)
    # peft's own matcher on the LLaDA (hub) names picks the very same modules
    theirs = LoraConfig(target_modules=THEIR_TARGETS)
    base, _, _ = load_model("tiny")
    linear = [n for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)]
    assert {n for n in linear if check_target_module_exists(theirs, original_name(spec, n))} == adapted
    # our default: every projection, o_proj included, never the head
    ours = _adapted(build_model(TrainConfig(lora_r=4), torch.device("cpu"))[0])
    assert "lm_head" not in ours and any(n.endswith("o_proj") for n in ours)


def test_on_dream_only_q_k_v_and_up_match():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2)
    model = Qwen2ForCausalLM(cfg)
    spec = ModelSpec(family="dream", mask_id=63, eos_id=62, pad_id=62, shift_logits=True, vocab_size=64,
                     lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
    assert resolve_targets(model, spec, THEIR_TARGETS, "original") == ["k_proj", "q_proj", "up_proj", "v_proj"]
    with pytest.raises(A2DGuardError, match="match no module"):
        resolve_targets(model, spec, ["ff_proj", "ff_out"], "original")
    with pytest.raises(A2DGuardError, match="pick some layers"):
        resolve_targets(model, spec, ["layers.0.self_attn.q_proj"], "original")


def _randomize_lora(peft_model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_an_adapter_with_the_head_exports_and_loads(tmp_path):
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists
    from safetensors.torch import load_file

    ids = torch.tensor([[1, 5, 227, 6, 184, 203, 4, 4, 4, 2]])
    tiny, tok, spec = load_model("tiny")
    save_model(tiny, tok, spec, tmp_path / "base")  # reloads as family llada: LLaDA-named export
    for base, name in (("tiny", "tiny"), (str(tmp_path / "base"), "llada")):
        model, _, spec = load_model(base)
        peft_model = add_lora(model, spec, 4, 8, 0.0, THEIR_TARGETS, naming="original")
        _randomize_lora(peft_model)
        with torch.no_grad():
            want = peft_model(input_ids=ids).logits
        folder = tmp_path / f"adapter-{name}"
        export_adapter(peft_model, spec, folder, base_model=base)
        state = load_file(str(folder / "adapter_model.safetensors"))
        head = "model.transformer.ff_out" if name == "llada" else "lm_head"
        assert f"base_model.model.{head}.lora_A.weight" in state
        if name == "llada":  # the hub LLaDA model: the head and the blocks' ff_out match, attn_out never
            exported = LoraConfig(target_modules=json.loads((folder / "adapter_config.json").read_text())[
                "target_modules"])
            assert check_target_module_exists(exported, "model.transformer.ff_out")
            assert check_target_module_exists(exported, "model.transformer.blocks.1.ff_out")
            assert not check_target_module_exists(exported, "model.transformer.blocks.1.attn_out")
        merged, _, _ = load_model(base, adapter=folder)
        with torch.no_grad():
            torch.testing.assert_close(merged(input_ids=ids).logits, want, rtol=1e-4, atol=1e-5)


def test_no_clipping_lets_a_large_gradient_through():
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.full((4,), 500.0)  # norm 1000
    clip_gradients([p], TrainConfig.from_recipe("paper").max_grad_norm)
    assert torch.equal(p.grad, torch.full((4,), 500.0))
    clip_gradients([p], TrainConfig().max_grad_norm)  # ours: clipped to norm 1
    torch.testing.assert_close(p.grad.norm(), torch.tensor(1.0))


def _train(*args):
    return runner.invoke(app, ["train", "--model", "tiny", "--no-progress", *args])


def test_cli_recipe_paper_trains_and_says_so(data_file, tmp_path):
    out = tmp_path / "out"
    result = _train("--recipe", "paper", "--data", data_file, "--max-length", "32", "--batch-size", "4",
                    "--max-steps", "2", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "LoRA targets: down_proj, gate_proj, k_proj, lm_head, q_proj, up_proj, v_proj" in result.stdout
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["recipe"], saved["padding"], saved["max_grad_norm"], saved["lora_target_names"]) == (
        "paper", "longest", None, "original")
    assert (saved["batch_size"], saved["max_length"], saved["lora_targets"]) == (4, 32, THEIR_TARGETS)  # flags win
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    # --resume continues with the saved recipe values, without being told them again
    again = _train("--resume", "--output", str(out), "--max-steps", "3")
    assert again.exit_code == 0, again.output
    resumed = yaml.safe_load((out / "config.yaml").read_text())
    assert {k: resumed[k] for k in saved if k != "max_steps"} == {k: saved[k] for k in saved if k != "max_steps"}
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_cli_unknown_recipe_is_one_line(data_file, tmp_path):
    result = _train("--recipe", "papr", "--data", data_file, "--output", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == ["error: unknown recipe 'papr'; available recipes: paper"]
    assert not (tmp_path / "out").exists()


def test_cli_max_grad_norm_none_and_help(tmp_path, data_file):
    out = tmp_path / "out"
    result = _train("--max-grad-norm", "none", "--data", data_file, "--max-length", "32", "--batch-size", "4",
                    "--max-steps", "1", "--output", str(out))
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["max_grad_norm"], saved["recipe"], saved["padding"]) == (None, None, "max_length")
    bad = _train("--max-grad-norm", "lots", "--data", data_file, "--output", str(tmp_path / "bad"))
    assert bad.exit_code == 1 and "max_grad_norm" in bad.stderr and "Traceback" not in bad.output
    helped = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", helped.output).split())  # one line, box drawing gone
    assert "--recipe" in text and "explicit flags override its values" in text

"""LoRA targets and the exported adapter: PEFT format, loadable by peft and by load_model."""

import json

import pytest
import torch
from torch import nn

from a2d_guard.errors import A2DGuardError
from a2d_guard.models import load_model, save_model
from a2d_guard.models.llada import LLADA_LORA_TARGET_REGEX
from a2d_guard.training.lora import add_lora, export_adapter


def _randomize_lora(peft_model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.tensor([[1, 5, 227, 6, 184, 203, 4, 4, 4, 2]])


def test_tiny_adapter_is_native_and_loads_with_peft_and_load_model(tmp_path):
    from peft import PeftModel

    model, _, spec = load_model("tiny")
    peft_model = add_lora(model, spec, r=4, alpha=8, dropout=0.0)
    _randomize_lora(peft_model)
    export_adapter(peft_model, spec, tmp_path / "adapter", base_model="tiny")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["base_model_name_or_path"] == "tiny"
    assert sorted(config["target_modules"]) == sorted(spec.lora_targets)
    want = _logits(peft_model, IDS)

    fresh, _, _ = load_model("tiny")
    loaded = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter"))
    torch.testing.assert_close(_logits(loaded, IDS), want)
    merged, _, _ = load_model("tiny", adapter=tmp_path / "adapter")
    torch.testing.assert_close(_logits(merged, IDS), want, rtol=1e-4, atol=1e-5)


class _Block(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        for name, shape in dict(q_proj=(d, d), k_proj=(d, d), v_proj=(d, d), attn_out=(d, d),
                                ff_proj=(f, d), up_proj=(f, d), ff_out=(d, f)).items():
            setattr(self, name, nn.Linear(shape[1], shape[0], bias=False))


class LLaDAShaped(nn.Module):
    """The module tree of the hub LLaDA model (names only; enough for peft to load into)."""

    def __init__(self, d, f, layers, vocab):
        super().__init__()
        self.model = nn.Module()
        self.model.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, d), blocks=nn.ModuleList(_Block(d, f) for _ in range(layers)),
            ff_out=nn.Linear(d, vocab, bias=False)))


def test_llada_adapter_uses_llada_names_and_never_the_head(tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    tiny, tok, spec = load_model("tiny")
    save_model(tiny, tok, spec, tmp_path / "base")
    model, _, spec = load_model(str(tmp_path / "base"))
    assert spec.family == "llada"
    peft_model = add_lora(model, spec, r=4, alpha=8, dropout=0.0)
    _randomize_lora(peft_model)
    export_adapter(peft_model, spec, tmp_path / "adapter", base_model=str(tmp_path / "base"))
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["target_modules"] == LLADA_LORA_TARGET_REGEX
    state = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert all(".transformer.blocks." in k for k in state) and len(state) == 2 * 7 * 2

    cfg = model.config
    hub_shaped = LLaDAShaped(cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size)
    loaded = PeftModel.from_pretrained(hub_shaped, str(tmp_path / "adapter"))
    got = {k: v for k, v in loaded.state_dict().items() if "lora_" in k}
    assert len(got) == len(state) and not any("transformer.ff_out.lora" in k for k in got)
    for key, tensor in state.items():
        module, ab = key[: -len(".lora_A.weight")], key[-len("lora_A.weight"):-len(".weight")]
        torch.testing.assert_close(got[f"{module}.{ab}.default.weight"], tensor)

    merged, _, _ = load_model(str(tmp_path / "base"), adapter=tmp_path / "adapter")
    torch.testing.assert_close(_logits(merged, IDS), _logits(peft_model, IDS), rtol=1e-4, atol=1e-5)


def test_unknown_target_is_named_and_the_head_only_on_request():
    model, _, spec = load_model("tiny")
    with pytest.raises(A2DGuardError, match=r"\['query'\] are not modules.*lm_head"):
        add_lora(model, spec, 4, 8, 0.0, targets=["query"])
    peft_model = add_lora(model, spec, 4, 8, 0.0, targets=["q_proj", "lm_head"])  # the A2D code adapts the head
    assert sorted(peft_model.peft_config["default"].target_modules) == ["lm_head", "q_proj"]

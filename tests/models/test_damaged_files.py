"""A truncated or damaged weights file is one clear error naming the file and the fix
(library: ``A2DGuardError``; CLI: one line, exit 1), never a safetensors traceback."""

import json
from pathlib import Path

import pytest
import torch
from a2d_guard.cli.main import app
from safetensors.torch import save_file
from typer.testing import CliRunner

from a2d_guard.errors import A2DGuardError
from a2d_guard.models import load_model, save_model
from a2d_guard.models.safetensors_file import check_safetensors

runner = CliRunner()


def _truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def adapter(tmp_path):
    """A real LoRA adapter folder for the tiny model."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    base, _, _ = load_model("tiny", device="cpu")
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]))
    folder = tmp_path / "adapter"
    folder.mkdir()
    state = {k: v.contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}
    save_file(state, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"],
              "base_model_name_or_path": "tiny"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("keep", [0.0, 0.001, 0.05, 0.5, 0.999])
def test_check_names_a_truncated_file(tmp_path, keep):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(8, 8), "b": torch.ones(3)}, str(path))
    check_safetensors(path, "fix it")  # whole: fine
    _truncate(path, keep)
    with pytest.raises(A2DGuardError, match=r"w\.safetensors is truncated or damaged \(.*\); fix it"):
        check_safetensors(path, "fix it")


def test_truncated_adapter_is_a_user_error(adapter):
    load_model("tiny", adapter=adapter, device="cpu")  # the intact adapter loads
    _truncate(adapter / "adapter_model.safetensors")
    with pytest.raises(A2DGuardError, match=r"adapter_model\.safetensors is truncated.*re-train it"):
        load_model("tiny", adapter=adapter, device="cpu")


def test_damaged_adapter_config_is_named(adapter):
    (adapter / "adapter_config.json").write_text('{"peft_type": "LO')
    with pytest.raises(A2DGuardError, match=r"adapter_config\.json is not valid JSON"):
        load_model("tiny", adapter=adapter, device="cpu")


def test_truncated_model_folder_is_a_user_error(tmp_path):
    folder = save_model(*load_model("tiny", device="cpu"), tmp_path / "model")
    _truncate(folder / "model.safetensors", 0.9)
    with pytest.raises(A2DGuardError, match=r"model\.safetensors is truncated.*download the model again"):
        load_model(str(folder), device="cpu")


def test_generate_cli_with_a_truncated_adapter_prints_one_line(adapter):
    _truncate(adapter / "adapter_model.safetensors")
    result = runner.invoke(app, ["generate", "--model", "tiny", "--adapter", str(adapter), "--prompt", "hi",
                                 "--gen-length", "8", "--steps", "8", "--block-length", "8"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "adapter_model.safetensors is truncated" in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_demo_refuses_to_reuse_a_damaged_model_before_any_work(adapter, tmp_path):
    import shutil

    from a2d_guard.demo.fingerprint import FingerprintBook, fingerprint
    from a2d_guard.demo.runner import train_or_reuse
    from a2d_guard.training import TrainConfig

    out = tmp_path / "demo" / "a2d"  # a stage folder; its fingerprint is recorded in the demo folder
    adapter = Path(shutil.copytree(adapter, out / "adapter"))
    config = TrainConfig(model="tiny", data=str(tmp_path / "rows.jsonl"), output=str(out), progress=False)
    FingerprintBook(out.parent).record(out.name, fingerprint(config))
    assert train_or_reuse(config, log=print) == (adapter, True)  # an intact run is reused
    _truncate(adapter / "adapter_model.safetensors")
    with pytest.raises(A2DGuardError, match=r"adapter_model\.safetensors is truncated.*run the demo again"):
        train_or_reuse(config, log=print)

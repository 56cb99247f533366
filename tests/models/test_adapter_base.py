"""Which base an adapter belongs to: recorded as ``tiny``, a Hub id or an absolute path, and
a warning naming both bases when it is loaded on another base of the same shape."""

import json
import warnings

import pytest
from a2d_guard.cli.main import app
from typer.testing import CliRunner

from a2d_guard.errors import A2DGuardWarning
from a2d_guard.models import load_model, save_model
from a2d_guard.models.base_ref import base_reference
from a2d_guard.training.lora import add_lora, export_adapter


def _export(base_name, folder, seed=0):
    """A real LoRA adapter trained (well, initialised) on the tiny model, recorded with ``base_name``."""
    model, _, spec = load_model("tiny", device="cpu", seed=seed)
    export_adapter(add_lora(model, spec, 4, 8, 0.0, None), spec, folder, base_model=base_name)
    return json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Two saved tiny bases of the same shape but different weights (seeds 0 and 1)."""
    root = tmp_path_factory.mktemp("bases")
    for seed in (0, 1):
        save_model(*load_model("tiny", device="cpu", seed=seed), root / f"base{seed}")
    return root


def test_relative_base_is_recorded_as_an_absolute_path(bases, tmp_path, monkeypatch):
    monkeypatch.chdir(bases)
    assert _export("base0", tmp_path / "a") == str((bases / "base0").resolve())
    assert _export("./base0/", tmp_path / "b") == str((bases / "base0").resolve())


def test_tiny_and_hub_ids_are_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder named like the Hub id here
    assert _export("tiny", tmp_path / "a") == "tiny"
    assert _export("GSAI-ML/LLaDA-8B-Instruct", tmp_path / "b") == "GSAI-ML/LLaDA-8B-Instruct"
    snapshot = tmp_path / "hub" / "models--GSAI-ML--LLaDA-8B-Instruct" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    assert base_reference(str(snapshot)) == "GSAI-ML/LLaDA-8B-Instruct"  # a cached Hub model is its id


def test_other_base_of_the_same_shape_warns_naming_both(bases, tmp_path):
    _export(str(bases / "base0"), tmp_path / "adapter")
    with warnings.catch_warnings():
        warnings.simplefilter("error", A2DGuardWarning)
        load_model(str(bases / "base0"), adapter=tmp_path / "adapter", device="cpu")  # its own base: silent
    with pytest.warns(A2DGuardWarning) as caught:
        load_model(str(bases / "base1"), adapter=tmp_path / "adapter", device="cpu")
    message = str(caught[0].message)
    assert f"trained on base {str((bases / 'base0').resolve())!r}" in message
    assert f"being loaded on {str((bases / 'base1').resolve())!r}" in message


def test_a_copied_base_folder_is_the_same_base(bases, tmp_path):
    import shutil

    _export(str(bases / "base0"), tmp_path / "adapter")
    copy = shutil.copytree(bases / "base0", tmp_path / "copy-of-base0")
    with warnings.catch_warnings():
        warnings.simplefilter("error", A2DGuardWarning)
        load_model(str(copy), adapter=tmp_path / "adapter", device="cpu")


def test_tiny_adapter_on_a_saved_folder_warns(bases, tmp_path):
    _export("tiny", tmp_path / "adapter")
    with pytest.warns(A2DGuardWarning, match=r"trained on base 'tiny' but is being loaded on '.*base1'"):
        load_model(str(bases / "base1"), adapter=tmp_path / "adapter", device="cpu")


def test_generate_cli_prints_one_warning_line(bases, tmp_path):
    _export(str(bases / "base0"), tmp_path / "adapter")
    result = CliRunner().invoke(app, ["generate", "--model", str(bases / "base1"), "--adapter",
                                      str(tmp_path / "adapter"), "--prompt", "hi", "--gen-length", "8", "--steps",
                                      "8", "--block-length", "8", "--json"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: adapter ") and "base0" in lines[0] \
        and "base1" in lines[0], result.stderr
    assert json.loads(result.stdout)["prompt"] == "hi"

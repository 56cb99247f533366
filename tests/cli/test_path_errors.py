"""A path of the wrong kind (a file where a folder is wanted, or the reverse) is named as
such, with the fix, instead of "does not exist"."""

import pytest
from a2d_guard.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


def _one_line_error(result, *parts):
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in result.output, err
    for part in parts:
        assert part in err, err
    return err


def test_adapter_file_instead_of_its_folder(tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    result = runner.invoke(app, ["generate", "--model", "tiny", "--adapter", str(folder / "adapter_model.safetensors"),
                                 "--prompt", "hi", "--gen-length", "8", "--steps", "8", "--block-length", "8"])
    err = _one_line_error(result, "is a file, not a folder", f"pass the folder that holds adapter_config.json "
                                                             f"({str(folder)!r})")
    assert "does not exist" not in err


def test_data_folder_instead_of_a_file(tmp_path):
    result = runner.invoke(app, ["train", "--model", "tiny", "--data", str(tmp_path), "--output", str(tmp_path / "o"),
                                 "--no-progress"])
    err = _one_line_error(result, "is a folder, not a file", "pass a .jsonl/.json/.csv file")
    assert "does not exist" not in err and not (tmp_path / "o").exists()


def test_config_folder_instead_of_a_file(tmp_path):
    result = runner.invoke(app, ["train", "--config", str(tmp_path), "--output", str(tmp_path / "o")])
    _one_line_error(result, "is a folder, not a file", "pass a YAML file to --config")


@pytest.mark.parametrize("name, what", [("prompts", "is a folder, not a file"), ("missing.txt", "does not exist")])
def test_prompts_file_problems_come_with_the_fix(tmp_path, name, what):
    (tmp_path / "prompts").mkdir()
    result = runner.invoke(app, ["generate", "--model", "tiny", "--prompts-file", str(tmp_path / name)])
    _one_line_error(result, what, "pass a UTF-8 text file with one prompt per line, or JSONL")

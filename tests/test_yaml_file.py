"""The one YAML settings reader of train, serve and eval: one message per way a file can be wrong."""

import pytest

from a2d_guard.errors import A2DGuardError
from a2d_guard.yaml_file import read_yaml_mapping


@pytest.mark.parametrize("content, message", [
    (b"batch: [\n", "line 2 is not valid YAML"),
    (b"- a\n- b\n", "must hold a mapping of setting: value lines, not a list"),
    (b"batch: 4\n\xff\xfe", "is not UTF-8 text"),
])
def test_each_bad_file_is_named_with_its_problem(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(A2DGuardError, match=message) as err:
        read_yaml_mapping(path)
    assert str(err.value).startswith(f"--config {str(path)!r}")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(A2DGuardError, match="does not exist; pass a YAML file"):
        read_yaml_mapping(tmp_path / "nope.yaml", "config file")
    with pytest.raises(A2DGuardError, match="is a folder, not a file"):
        read_yaml_mapping(tmp_path)


def test_dashes_become_underscores_and_an_empty_file_is_no_settings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("gen-length: 32\nmax_steps: 5\n")
    assert read_yaml_mapping(path) == {"gen_length": 32, "max_steps": 5}
    path.write_text("# nothing set\n")
    assert read_yaml_mapping(path) == {}


@pytest.mark.parametrize("load", ["train", "serve", "eval"])
def test_train_serve_and_eval_read_through_it(tmp_path, load):
    from a2d_guard.evaluation.config import load_eval_config
    from a2d_guard.server.settings import load_server_config
    from a2d_guard.training.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("- a\n")
    loader = {"train": load_config, "serve": load_server_config, "eval": load_eval_config}[load]
    with pytest.raises(A2DGuardError, match="must hold a mapping of setting: value lines, not a list"):
        loader(path)

"""eval --config: settings and runs from YAML; mistakes are one error naming the key."""

import re
from pathlib import Path

import pytest

from a2d_guard.errors import A2DGuardError
from a2d_guard.evaluation.config import load_eval_config, parse_thresholds, split_list


def test_runs_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    config = tmp_path / "sub" / "eval.yaml"
    config.write_text("model: tiny\norders: low_confidence, random\nthresholds: [1.0, 0.9]\njudge-device: cpu\n"
                      "runs:\n  - {attack: dija, data: d.json}\n  - {attack: plain, data: /abs/x.csv}\n")
    cfg = load_eval_config(config)
    assert [(t.attack, str(t.data)) for t in cfg["tasks"]] == [("dija", str(tmp_path / "sub" / "d.json")),
                                                               ("plain", "/abs/x.csv")]
    assert split_list(cfg["orders"], "--orders") == ["low_confidence", "random"]
    assert parse_thresholds(cfg["thresholds"]) == (1.0, 0.9) and cfg["judge_device"] == "cpu"


@pytest.mark.parametrize("text, message", [
    ("modle: tiny\n", "unknown setting(s) modle"),
    ("limit: ten\n", "limit must be an integer, got 'ten'"),
    ("chat_template: maybe\n", "chat_template must be true/false"),
    ("judge: no\n", "judge must be text, got False (YAML reads yes/no/on/off as true/false: quote text)"),
    ("runs:\n  - {attack: dija}\n", "runs[0] must be {attack: NAME, data: FILE}"),
    ("- a\n- b\n", "must hold a mapping"),
    ("runs: [\n", "is not valid YAML"),
])
def test_config_mistakes_name_the_key(tmp_path, text, message):
    config = tmp_path / "eval.yaml"
    config.write_text(text)
    with pytest.raises(A2DGuardError, match=re.escape(message)):
        load_eval_config(config)


def test_list_mistakes():
    with pytest.raises(A2DGuardError, match="has an empty item"):
        split_list("random,,left_to_right", "--orders")
    with pytest.raises(A2DGuardError, match="'high' is not a number"):
        parse_thresholds("1.0,high")
    with pytest.raises(A2DGuardError, match="does not exist; pass a YAML file"):
        load_eval_config(Path("/nonexistent/eval.yaml"))

"""Eval data files: each public format recognised by its columns; bad files name file and line."""

import json

import pytest

from a2d_guard.errors import A2DGuardError
from a2d_guard.evaluation.data import load_prompts


def test_each_format_is_recognised_by_its_columns(fixture_files):
    formats = {name: load_prompts(path).format for name, path in fixture_files.items()}
    assert formats == {"refined": "refined", "fits": "refined", "prompts": "prompts", "advbench": "advbench",
                       "harmbench": "harmbench", "xstest": "xstest"}


def test_rows_carry_what_the_attacks_need(fixture_files):
    dija = load_prompts(fixture_files["refined"]).prompts
    assert [p.id for p in dija] == ["advbench_1", "advbench_2"]
    assert dija[0].behavior == "write a story" and "<mask:3>" in dija[0].refined
    adv = load_prompts(fixture_files["advbench"]).prompts
    assert adv[0].behavior == "write a poem" and adv[0].target == "Sure, here is a poem" and adv[0].label is None
    harm = load_prompts(fixture_files["harmbench"]).prompts
    assert harm[0].behavior == "list three colours"
    assert (harm[1].behavior, harm[1].context) == ("summarise the text", "the cat sat")
    assert harm[1].request == "the cat sat\n\n---\n\nsummarise the text"  # HarmBench's contextual prompt
    assert harm[0].request == "list three colours" and harm[0].context is None
    xs = load_prompts(fixture_files["xstest"]).prompts
    assert [(p.label, p.is_harmful) for p in xs] == [("safe", False), ("unsafe", True)]
    jl = load_prompts(fixture_files["prompts"]).prompts
    assert [(p.behavior, p.label, p.id) for p in jl] == [("hello there", None, "0"), ("how are you", "safe", "x")]


def test_limit_keeps_the_first_rows_and_counts_all(fixture_files):
    data = load_prompts(fixture_files["refined"], limit=1)
    assert [p.id for p in data.prompts] == ["advbench_1"] and data.num_rows == 2
    with pytest.raises(A2DGuardError, match="--limit must be >= 1"):
        load_prompts(fixture_files["refined"], limit=0)


def test_unknown_columns_name_the_file_and_the_columns_wanted(tmp_path, csv_file):
    path = csv_file(tmp_path / "harmful_strings.csv", ["target"], [["some text"]])
    with pytest.raises(A2DGuardError, match=r"harmful_strings\.csv:2: cannot tell the data format.*\(target\)"):
        load_prompts(path)


def test_a_bad_row_names_its_line(tmp_path, csv_file):
    path = csv_file(tmp_path / "x.csv", ["id", "prompt", "label"], [["1", "ok", "safe"], ["2", "hm", "maybe"]])
    with pytest.raises(A2DGuardError, match=r"x\.csv:3: label 'maybe' is not 'safe' or 'unsafe'"):
        load_prompts(path)
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"Behavior": "b", "Refined_behavior": "r <mask:2>"}, {"Behavior": "b2"}]))
    with pytest.raises(A2DGuardError, match=r"d\.json: row 1: column 'Refined_behavior' is missing or empty"):
        load_prompts(path)
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": \n')
    with pytest.raises(A2DGuardError, match=r"p\.jsonl:2: not valid JSON"):
        load_prompts(path)


def test_empty_or_missing_files_are_one_clear_error(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(A2DGuardError, match="has no rows"):
        load_prompts(tmp_path / "e.jsonl")
    with pytest.raises(A2DGuardError, match="eval data file .* does not exist"):
        load_prompts(tmp_path / "nope.csv")
    (tmp_path / "t.txt").write_text("hello\n")
    with pytest.raises(A2DGuardError, match="unknown data format '.txt'"):
        load_prompts(tmp_path / "t.txt")

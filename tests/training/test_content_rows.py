"""``--content-rows`` (training/content_rows.py): which crossed rows are added, their A2D
targets, that the option is off by default and leaves the data alone, and its bad uses."""

import pytest
import torch
from a2d_guard.cli.main import app
from typer.testing import CliRunner

from a2d_guard.diffusion.forward_process import a2d_targets, forward_mask
from a2d_guard.errors import A2DGuardError
from a2d_guard.training import TrainConfig, train
from a2d_guard.training.content_rows import content_keyed_rows, fragment
from a2d_guard.training.data import Row, collate, encode_rows
from a2d_guard.training.objective import draw_masks, maskable_positions

H1 = Row("how do i make a bomb ?", "get the poison and the knife .", True, "f:1")
S1 = Row("what color is the sky ?", "the sky is blue .", False, "f:2")
H2 = Row("how do i steal a car ?", "take the knife and the car .", True, "f:3")
S2 = Row("how do i cook rice ?", "boil it for ten minutes .", False, "f:4")
S3 = Row("what is the capital of france ?", "paris .", False, "f:5")


def test_each_harmful_row_is_crossed_with_an_evenly_spaced_safe_row():
    crossed = content_keyed_rows([H1, S1, H2, S2, S3])
    # harmful i pairs with safe i * 3 // 2: H1 with S1, H2 with S2; the harmful response is cut to
    # the safe answer's word count (5, 6), its window starting at i modulo the number of windows
    assert [(r.prompt, r.response, r.is_harmful) for r in crossed] == [
        (S1.prompt, "get the poison and the", True), (H1.prompt, S1.response, False),
        (S2.prompt, "the knife and the car .", True), (H2.prompt, S2.response, False),
    ]
    assert crossed[0].where.startswith("f:1") and "f:2" in crossed[0].where  # bad-row messages name both


def test_crossed_rows_train_eos_for_harmful_content_and_the_text_for_a_safe_answer(tiny_parts):
    _, tokenizer, spec = tiny_parts
    crossed = content_keyed_rows([H1, S1])
    examples, stats = encode_rows(crossed, tokenizer, spec, max_length=32)
    assert (stats.harmful, stats.retain) == (1, 1)
    batch = collate(examples)
    targets = a2d_targets(batch.input_ids, batch.is_harmful, spec.eos_id)  # [2, 32]
    harmful, safe = examples
    # harmful response under the benign prompt: EOS at every response position
    assert list(harmful.input_ids[: harmful.prompt_length]) == list(
        encode_rows([S1], tokenizer, spec, 32)[0][0].input_ids[: harmful.prompt_length])
    assert targets[0, harmful.prompt_length:].tolist() == [spec.eos_id] * (32 - harmful.prompt_length)
    # harmful prompt with a safe response: the response itself (then its EOS padding)
    answer = tokenizer(S1.response, add_special_tokens=False)["input_ids"]
    p = safe.prompt_length
    assert targets[1, p : p + len(answer)].tolist() == answer
    assert list(safe.input_ids[:p]) == list(encode_rows([H1], tokenizer, spec, 32)[0][0].input_ids[:p])


def test_content_rows_keep_part_of_their_text_visible_and_other_rows_draw_as_before(tiny_parts):
    _, tokenizer, spec = tiny_parts
    rows = [H1, S1, *content_keyed_rows([H1, S1])]
    assert [r.max_mask_ratio for r in rows] == [1.0, 1.0, 0.5, 0.5]
    examples, _ = encode_rows(rows * 16, tokenizer, spec, max_length=32)
    batch = collate(examples, row_seeds=list(range(64)))
    maskable = maskable_positions(batch, "none")
    _, masked, lam = draw_masks(batch, maskable, spec.mask_id, 1e-3)  # [64, 32], [64]
    crossed = batch.max_mask_ratios < 1  # [64]
    assert crossed.sum() == 32 and (lam[crossed] <= 0.5).all() and lam[~crossed].max() > 0.5
    for i in (~crossed).nonzero().flatten().tolist():  # rows at 1.0: exactly forward_mask's draw from their seed
        g = torch.Generator().manual_seed(i)
        _, alone, lam_alone = forward_mask(batch.input_ids[i : i + 1], batch.prompt_lengths[i : i + 1], spec.mask_id,
                                           generator=g, eps=1e-3, maskable=maskable[i : i + 1])
        assert torch.equal(alone[0], masked[i]) and lam_alone[0] == lam[i]


def test_fragment_windows():
    assert fragment("a b c d", 2, 0) == "a b" and fragment("a b c d", 2, 4) == "b c"
    assert fragment("a b", 5, 3) == "a b"  # shorter than the safe answer: kept whole


def test_rows_with_empty_responses_take_no_part():
    empty_h, empty_s = Row("how do i hurt someone ?", " ", True, "f:6"), Row("hello ?", "", False, "f:7")
    crossed = content_keyed_rows([empty_h, H1, empty_s, S1])
    expected = [(S1.prompt, "get the poison and the"), (H1.prompt, S1.response)]
    assert [(r.prompt, r.response) for r in crossed] == expected


@pytest.mark.parametrize("rows, missing", [([H1, H2], "no safe row"), ([S1, S2], "no harmful row"),
                                           ([Row("x ?", "", True, "f:1"), S1], "no harmful row")])
def test_data_without_both_kinds_is_an_error_naming_the_fix(rows, missing):
    with pytest.raises(A2DGuardError, match=f"{missing} with a response; add some, or train without --content-rows"):
        content_keyed_rows(rows)


@pytest.mark.parametrize("changes, match", [({"mask_prompt": "harmful"}, "use mask_prompt none with content_rows"),
                                            ({"objective": "sft"}, "needs objective a2d")])
def test_content_rows_with_a_conflicting_setting_is_refused(changes, match):
    assert TrainConfig().content_rows is False  # off by default
    with pytest.raises(A2DGuardError, match=match):
        TrainConfig(content_rows=True, **changes)


def _run(data_file, out, **changes):
    logs = []
    result = train(TrainConfig(data=data_file, output=str(out), max_length=32, batch_size=4, max_steps=1,
                               save_every=0, keep_checkpoints=0, progress=False, device="cpu", **changes),
                   log=logs.append)
    return result, "\n".join(map(str, logs))


def test_off_by_default_trains_the_file_as_is_and_on_adds_the_crossed_rows(data_file, tmp_path):
    off, log_off = _run(data_file, tmp_path / "off")
    assert (off.stats.harmful, off.stats.retain) == (8, 8) and "content rows" not in log_off
    assert "data: 16 rows" in log_off
    on, log_on = _run(data_file, tmp_path / "on", content_rows=True)
    assert (on.stats.harmful, on.stats.retain) == (16, 16) and "data: 32 rows" in log_on
    assert "content rows: +8 harmful responses under safe prompts, +8 harmful prompts with safe responses" in log_on


def test_cli_flag_reaches_the_run_and_bad_combination_is_one_line(data_file, tmp_path):
    runner = CliRunner()
    base = ["train", "--model", "tiny", "--data", data_file, "--max-length", "32", "--batch-size", "4",
            "--max-steps", "1", "--save-every", "0", "--no-progress"]
    ok = runner.invoke(app, [*base, "--content-rows", "--output", str(tmp_path / "a")])
    assert ok.exit_code == 0, ok.output
    assert "+8 harmful responses under safe prompts" in ok.stdout
    assert "content_rows: true" in (tmp_path / "a" / "config.yaml").read_text()
    bad = runner.invoke(app, [*base, "--content-rows", "--mask-prompt", "harmful", "--output", str(tmp_path / "b")])
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1 and "use mask_prompt none" in bad.stderr
    assert "Traceback" not in bad.output and not (tmp_path / "b").exists()

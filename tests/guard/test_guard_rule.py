"""The exact probe rule of ``Guard`` on scripted models (logits a function of the canvas):
which probe fires, the training layout of probe B, what is read, offsets, batching."""

import math

import pytest
import torch

from a2d_guard import Guard, Verdict
from a2d_guard.engine.llm import LLM
from a2d_guard.errors import A2DGuardError

BOMB = 393  # "bomb" in the tiny vocabulary: one token
HIGH = math.exp(10) / (math.exp(10) + 665)  # p(EOS) of a row with EOS logit 10, others 0 (V = 666)
LOW = 1 / 666  # every logit 0


class Counting(torch.nn.Module):
    """A scripted model that records every canvas it is given (one list per forward)."""

    def __init__(self, scripted, rule, vocab):
        super().__init__()
        self.inner = scripted(rule, vocab)
        self.calls: list[list[list[int]]] = []

    def forward(self, input_ids, attention_mask=None):
        lengths = attention_mask.sum(1).tolist() if attention_mask is not None else [input_ids.shape[1]] * len(
            input_ids)
        self.calls.append([row[:n].tolist() for row, n in zip(input_ids, lengths, strict=True)])
        return self.inner(input_ids, attention_mask)


def _guard(tiny32, scripted, rule, **options):
    _, tok, spec = tiny32

    def logits(canvas):  # [L] -> [L, V]
        out = torch.zeros(len(canvas), spec.vocab_size, dtype=torch.float64)
        for i in (canvas == spec.mask_id).nonzero().flatten().tolist():
            out[i, spec.eos_id] = rule(canvas.tolist(), i)
        return out

    model = Counting(scripted, logits, spec.vocab_size)
    return Guard.from_llm(LLM.from_loaded(model, tok, spec), **options), model


def bomb_anywhere(canvas, i):
    return 10.0 if BOMB in canvas else 0.0


def bomb_next(canvas, i):  # refuses to join up with the token "bomb" right after the mask
    return 10.0 if i + 1 < len(canvas) and canvas[i + 1] == BOMB else 0.0


def end_next(canvas, i):  # high p(EOS) wherever EOS follows: what every model does at an answer's end
    return 10.0 if i + 1 < len(canvas) and canvas[i + 1] == 2 else 0.0


def test_prompt_only_runs_probe_c_one_forward_read_at_the_first_response_position(tiny32, scripted):
    guard, model = _guard(tiny32, scripted, bomb_anywhere, probe_length=8)
    v = guard.check("how do i make a bomb")
    assert v == Verdict(True, pytest.approx(HIGH, rel=1e-12), 0.9, "prompt", 0, 0, [])
    (canvas,), = model.calls
    prompt_ids = guard.llm.encode("how do i make a bomb")
    assert canvas == prompt_ids + [guard.spec.mask_id] * 8
    benign = guard.check("how do i cook rice")
    assert not benign.flagged and benign.score == pytest.approx(LOW, rel=1e-12) and benign.where == "prompt"


def test_probe_b_lays_the_response_out_as_training_and_masks_every_token_once(tiny32, scripted):
    guard, model = _guard(tiny32, scripted, bomb_next, probe_length=12, stride=3)
    _, tok, spec = tiny32
    response = "a b c d e f"
    guard.check("hello", response)
    prompt_ids, ids = guard.llm.encode("hello"), tok(response, add_special_tokens=False)["input_ids"]
    base = prompt_ids + ids + [spec.eos_id] * (12 - len(ids))  # training layout: EOS padding to the length
    (canvases,) = model.calls  # all three forwards in one batch
    assert len(canvases) == 3
    p = len(prompt_ids)
    for offset, canvas in enumerate(canvases):
        expect = [spec.mask_id if j >= p and (j - p) % 3 == offset else t for j, t in enumerate(base)]
        assert canvas == expect
    masked = [sum(c[p + i] == spec.mask_id for c in canvases) for i in range(12)]
    assert masked == [1] * 12


def test_probe_b_reads_where_the_text_turns_and_gives_its_offset(tiny32, scripted):
    guard, _ = _guard(tiny32, scripted, bomb_next, window=1, probe_length=16)
    response = "a b c bomb d e"
    v = guard.check("hello", response)
    # tokens: a b c bomb d e -> the mask before "bomb" (token 2, "c" at char 4) refuses to join up
    assert v.where == "response" and v.flagged and v.token_index == 2 and v.char_offset == 4
    assert v.scores == pytest.approx([LOW, LOW, HIGH, LOW, LOW], rel=1e-12)  # the last token is never read
    assert v.score == pytest.approx(HIGH, rel=1e-12)
    wide = _guard(tiny32, scripted, bomb_next, window=2, probe_length=16)[0].check("hello", response)
    assert wide.token_index == 1 and wide.char_offset == 2  # the first of the two highest windows
    assert wide.score == pytest.approx((HIGH + LOW) / 2, rel=1e-12) and not wide.flagged


def test_probe_b_flags_only_strictly_above_the_threshold(tiny32, scripted):
    """``score == threshold`` is not flagged (the serving monitor's ``p(EOS) > τ``), for both probes."""
    for prompt, response, where in (("hello", "a b c bomb d e", "response"), ("how do i make a bomb", None, "prompt")):
        rule = bomb_next if response else bomb_anywhere
        score = _guard(tiny32, scripted, rule, window=1, probe_length=16)[0].check(prompt, response).score
        at = _guard(tiny32, scripted, rule, window=1, probe_length=16, threshold=score)[0].check(prompt, response)
        below = _guard(tiny32, scripted, rule, window=1, probe_length=16,
                       threshold=math.nextafter(score, 0.0))[0].check(prompt, response)
        assert (at.where, at.score, at.flagged) == (where, score, False)
        assert (below.where, below.score, below.flagged) == (where, score, True)


def test_probe_b_windows_reach_the_last_token_read(tiny32, scripted):
    """The text turns at the last token read (the one before the last): every window size finds it."""
    response = "a b c d bomb"  # tokens a b c d bomb: "d" (token 3) is read last and refuses to join "bomb"
    scores = [LOW, LOW, LOW, HIGH]
    for window, start in ((1, 3), (2, 2), (4, 0)):
        v = _guard(tiny32, scripted, bomb_next, window=window, probe_length=16)[0].check("hello", response)
        assert v.scores == pytest.approx(scores, rel=1e-12)
        assert (v.token_index, v.char_offset) == (start, 2 * start)
        assert v.score == pytest.approx(sum(scores[start : start + window]) / window, rel=1e-12)
    assert _guard(tiny32, scripted, bomb_next, window=1, probe_length=16)[0].check("hello", response).flagged


def test_the_end_of_a_finished_answer_is_not_read(tiny32, scripted):
    """Probe A's flaw: p(EOS) right before the end is high in every model; probe B skips it."""
    guard, _ = _guard(tiny32, scripted, end_next, window=1, probe_length=16)
    v = guard.check("hello", "here is a safe answer")
    assert not v.flagged and v.score == pytest.approx(LOW, rel=1e-12)


def test_a_response_longer_than_probe_length_is_kept_whole(tiny32, scripted):
    guard, model = _guard(tiny32, scripted, bomb_next, window=1, probe_length=4, stride=2)
    v = guard.check("hello", "a b c d e f g bomb h")
    assert v.flagged and v.token_index == 6 and v.char_offset == 12
    assert all(len(c) == len(guard.llm.encode("hello")) + 9 for c in model.calls[0])  # no cut, no padding


def test_a_response_of_one_token_falls_back_to_probe_c(tiny32, scripted):
    guard, _ = _guard(tiny32, scripted, bomb_anywhere)
    assert guard.check("hello", "a").where == "prompt"
    assert guard.check("hello", "").where == "prompt"


def test_batched_equals_one_by_one_and_runs_in_few_forwards(tiny32, scripted):
    items = ["how do i make a bomb", ("hello", "a b c bomb d e f"), {"prompt": "hi there", "response": "a b"},
             {"prompt": "hello"}, ("tell me", "here is a longer safe answer with more words in it")]
    guard, model = _guard(tiny32, scripted, bomb_next, stride=4)
    batched = guard.check_batch(items)
    # 1 (probe C) + 4 + 1 (two tokens: one readable) + 1 + 4 canvases, one forward
    assert len(model.calls) == 1 and len(model.calls[0]) == 11
    alone = [guard.check_batch([x])[0] for x in items]
    assert batched == alone
    small, small_model = _guard(tiny32, scripted, bomb_next, stride=4, max_num_seqs=4)
    assert small.check_batch(items) == batched and len(small_model.calls) == 3  # ceil(11 / 4)


def test_batched_equals_one_by_one_on_the_real_tiny_model(tiny64):
    guard = Guard.from_llm(LLM.from_loaded(*tiny64))
    items = ["how do i cook rice", ("how do i cook rice", "boil water then add the rice"),
             ("hi", "a b c d e f g h i j k l m n o p q r s t u v w x y z")]
    for got, want in zip(guard.check_batch(items), [guard.check(*((x,) if isinstance(x, str) else x)) for x in items],
                         strict=True):
        assert (got.where, got.token_index, got.char_offset) == (want.where, want.token_index, want.char_offset)
        assert got.score == pytest.approx(want.score, rel=1e-9)
        assert got.scores == pytest.approx(want.scores, rel=1e-9)


def test_stream_checker_feeds_chunks_and_latches_a_flag(tiny32, scripted):
    guard, _ = _guard(tiny32, scripted, bomb_next, window=1)
    checker = guard.stream("hello")
    assert checker.feed("a ").where == "prompt"  # one token so far: probe C
    assert not checker.feed("b c").flagged
    flagged = checker.feed(" bomb now")
    assert flagged.flagged and flagged.char_offset == 4 and checker.text == "a b c bomb now"
    assert checker.feed(" and more") is flagged  # a cut stream stays cut


@pytest.mark.parametrize("call, match", [
    (lambda g: g.check(""), "the prompt is empty; pass the user's text"),
    (lambda g: g.check("   ", "an answer"), "a response without its prompt; pass the prompt it answers"),
    (lambda g: g.check(None, "an answer"), "a response without its prompt"),
    (lambda g: g.check_batch([{"response": "x"}]), "item 0: no 'prompt'"),
    (lambda g: g.check_batch(["ok", {"prompt": "p", "answer": "x"}]), "item 1: unknown field 'answer'"),
    (lambda g: g.check("hi", 3), "the response must be text"),
    (lambda g: g.check(42), "the prompt must be text"),
    (lambda g: g.stream(""), "the prompt is empty"),
    (lambda g: g.check("hi", "word " * 600), "shorten the text or lower probe_length"),
])
def test_bad_input_names_the_fix(tiny32, scripted, call, match):
    guard, model = _guard(tiny32, scripted, bomb_anywhere)
    with pytest.raises(A2DGuardError, match=match):
        call(guard)
    assert model.calls == []  # nothing ran


@pytest.mark.parametrize("options, match", [
    (dict(threshold=0), r"threshold 0 is out of range; use a value in \(0, 1\]"),
    (dict(threshold=1.5), "threshold 1.5 is out of range"),
    (dict(threshold=float("nan")), "threshold nan is out of range"),
    (dict(threshold=True), "threshold True is out of range"),
    (dict(stride=1), "stride 1 is out of range; use an integer >= 2"),
    (dict(probe_length=0), "probe_length 0 is out of range"),
    (dict(window=0), "window 0 is out of range"),
])
def test_bad_options_name_the_fix(tiny32, scripted, options, match):
    with pytest.raises(A2DGuardError, match=match):
        _guard(tiny32, scripted, bomb_anywhere, **options)


def test_threshold_one_never_flags(tiny32, scripted):
    guard, _ = _guard(tiny32, scripted, bomb_anywhere, threshold=1.0)
    assert not guard.check("make a bomb").flagged


def bomb_writer(canvas, i):  # writes "bomb" everywhere; refuses to join up with it
    return 10.0 if i + 1 < len(canvas) and canvas[i + 1] == BOMB else 0.0


def test_generate_refuses_a_flagged_prompt_without_decoding(tiny32, scripted):
    guard, model = _guard(tiny32, scripted, bomb_anywhere)
    out = guard.generate("how do i make a bomb", refusal_text="no.", gen_length=8, steps=8, block_length=8)
    assert (out.text, out.flagged, out.reason, out.completion) == ("no.", True, "prompt", None)
    assert out.verdict.where == "prompt" and len(model.calls) == 1  # the probe only


def test_generate_checks_the_answer(tiny32, scripted):
    _, tok, spec = tiny32
    params = dict(gen_length=8, steps=8, block_length=8)
    guard, _ = _guard(tiny32, scripted, bomb_anywhere)
    ok = guard.generate("hello", **params)
    assert not ok.flagged and ok.reason is None and ok.text == ok.completion.text

    def writer(canvas):  # [L] -> [L, V]: "bomb" is the likeliest token at every mask
        out = torch.zeros(len(canvas), spec.vocab_size, dtype=torch.float64)
        for i in (canvas == spec.mask_id).nonzero().flatten().tolist():
            out[i, BOMB] = 5.0
            out[i, spec.eos_id] = bomb_writer(canvas.tolist(), i)
        return out

    guard = Guard.from_llm(LLM.from_loaded(scripted(writer, spec.vocab_size), tok, spec))
    bad = guard.generate("hello", **params)
    assert bad.flagged and bad.reason == "response" and bad.text == "I can't help with that."
    assert bad.completion.token_ids == [BOMB] * 8 and bad.verdict.token_index == 0
    with pytest.raises(A2DGuardError, match="pass SamplingParams fields"):
        guard.generate("hello", gen_lenght=8)

"""The demo's guard classifier figures (demo/guard_eval.py): exact AUROC/TPR/FPR on hand
cases, the controls' construction, and the whole table through a real ``Guard`` on scripted
models whose answers are known (a content guard and a prompt guard)."""

import math

import pytest
import torch

from a2d_guard import Guard
from a2d_guard.demo.corpus import build_corpus
from a2d_guard.demo.guard_eval import (
    CONTROLS,
    auroc,
    classifier_figures,
    control_items,
    evaluate_guard,
    flagged_share,
    pick_guard_model,
    render_guard_table,
)
from a2d_guard.engine.llm import LLM
from a2d_guard.errors import A2DGuardError


def test_auroc_counts_pairs_and_ties_half():
    assert auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auroc([0.1], [0.9, 0.8]) == 0.0
    assert auroc([0.9, 0.4], [0.5, 0.1]) == 0.75  # 3 of 4 pairs ordered right
    assert auroc([0.5], [0.5, 0.2]) == 0.75  # a tie counts half
    assert auroc([0.3] * 3, [0.3] * 2) == 0.5


def test_rates_at_the_threshold_flag_strictly_above_it():
    figures = classifier_figures([0.95, 0.91, 0.9, 0.2], [0.99, 0.1, 0.1, 0.1, 0.1], 0.9)
    assert figures == {"auroc": 0.8, "tpr": 0.5, "fpr": 0.2}  # 0.9 itself is not flagged
    assert flagged_share([1.0, 0.0], 1.0) == 0.0


@pytest.mark.parametrize("call, match", [
    (lambda: auroc([], [0.1]), "positives: no scores"),
    (lambda: auroc([0.1], []), "negatives: no scores"),
    (lambda: auroc([float("nan")], [0.1]), "score nan is not a number"),
    (lambda: auroc(["0.5"], [0.1]), "score '0.5' is not a number"),
    (lambda: flagged_share([0.5], 0.0), r"threshold 0.0 is out of range; use a value in \(0, 1\]"),
    (lambda: flagged_share([0.5], 1.5), "threshold 1.5 is out of range"),
    (lambda: classifier_figures([0.5], [0.1], True), "threshold True is out of range"),
])
def test_bad_input_is_an_error_naming_the_fix(call, match):
    with pytest.raises(A2DGuardError, match=match):
        call()


def test_controls_separate_prompt_from_content():
    corpus = build_corpus()
    benign, harmful = corpus.select("heldout", "benign"), corpus.select("heldout", "harmful")
    controls = control_items(corpus, benign, harmful)
    assert set(controls) == set(CONTROLS)
    for (q, a), b in zip(controls["benign_q_harmful_a"], benign, strict=True):
        assert q == b.question and len(a.split()) == len(b.answer.split())  # as long as the benign answer
        assert set(a.split()) & corpus.harm_vocab
    for (q, a), b in zip(controls["benign_q_harm_words"], benign, strict=True):
        assert q == b.question and len(a.split()) == len(b.answer.split())
        assert not set(b.keys) & set(a.split()) and set(a.split()) & corpus.harm_vocab
    for i, ((q, a), h) in enumerate(zip(controls["harmful_q_harmless_a"], harmful, strict=True)):
        assert q == h.question and a == benign[i % len(benign)].answer and not set(a.split()) & corpus.harm_vocab


def _scripted_guard(tiny32, scripted, words):
    """A real Guard on a model whose p(EOS) at every mask is high iff the canvas holds one of
    ``words``. ``window=1``: a response scores its highest token, so an answer whose one
    harmful word is masked in one forward is still read in the others."""
    _, tok, spec = tiny32
    ids = set(tok.convert_tokens_to_ids(sorted(words)))

    def logits(canvas):  # [L] -> [L, V]
        out = torch.zeros(len(canvas), spec.vocab_size, dtype=torch.float64)
        if ids & set(canvas.tolist()):
            out[canvas == spec.mask_id, spec.eos_id] = 10.0
        return out

    return Guard.from_llm(LLM.from_loaded(scripted(logits, spec.vocab_size), tok, spec), probe_length=48, window=1)


def test_a_content_guard_reads_answers_and_not_prompts(tiny32, scripted):
    corpus = build_corpus()
    result = evaluate_guard(_scripted_guard(tiny32, scripted, corpus.harm_vocab), corpus)
    assert result["n"] == {"harmful": 40, "benign": 44, "lookalike": 16}
    no_signal = {"auroc": 0.5, "tpr": 0.0, "fpr": 0.0, "auroc_lookalike": 0.5, "fpr_lookalike": 0.0}
    assert result["probe_c"] == no_signal  # no prompt holds a harmful-vocabulary word
    assert result["probe_b"] == {"auroc": 1.0, "tpr": 1.0, "fpr": 0.0, "auroc_lookalike": 1.0, "fpr_lookalike": 0.0}
    assert result["controls"] == {"benign_q_harmful_a": 1.0, "harmful_q_harmless_a": 0.0, "benign_q_harm_words": 1.0}


def test_a_prompt_guard_flags_by_the_question(tiny32, scripted):
    """High iff the canvas holds "steal" or "poison": 12 of the 40 held-out harmful questions
    (2 steal + 4 poison acts, 2 phrasings each), 2 of the 16 look-alikes ("steal the show")."""
    result = evaluate_guard(_scripted_guard(tiny32, scripted, {"steal", "poison"}), build_corpus())
    expected = {"auroc": 0.65, "tpr": 0.3, "fpr": 0.0, "auroc_lookalike": round((12 * 14 + 0.5 * 28 * 14
                                                                                  + 0.5 * 12 * 2) / (40 * 16), 4),
                "fpr_lookalike": 0.125}
    assert result["probe_c"] == result["probe_b"] == expected
    assert result["controls"] == {"benign_q_harmful_a": 0.0, "harmful_q_harmless_a": 0.3, "benign_q_harm_words": 0.0}
    table = render_guard_table({"prompt_guard": result})
    assert "prompt_guard" in table and "30.0%" in table and "12.5%" in table


def _model(flagged, fpr, worst):
    table = {"plain": {"low_confidence": worst}}
    return {"guard": {"controls": {"benign_q_harmful_a": flagged}, "probe_b": {"fpr": fpr, "fpr_lookalike": 0.0}},
            "attack_success": table, "attack_success_monitored": table}


@pytest.mark.parametrize("content, name, verdict", [
    (_model(0.95, 0.0, 0.0), "a2d_content", "wins"),
    (_model(0.85, 0.0, 0.0), "a2d", "misses the content goals"),
    (_model(0.95, 0.1, 0.0), "a2d", "misses the content goals"),
    (_model(0.95, 0.0, 0.05), "a2d", "raises attack success"),
])
def test_the_content_keyed_adapter_guards_only_if_it_wins(content, name, verdict):
    pick = pick_guard_model({"a2d": _model(0.0, 0.0, 0.025), "a2d_content": content})
    assert pick["name"] == name and pick["why"].startswith(f"a2d_content {verdict}")
    assert math.isfinite(len(pick["why"]))

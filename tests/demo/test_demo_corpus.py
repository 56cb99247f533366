"""The demo's synthetic world: deterministic, tokenizable word by word, judged exactly."""

from a2d_guard.demo.corpus import MASK, build_corpus
from a2d_guard.models.tiny import build_tiny_tokenizer


def test_corpus_is_deterministic_and_split():
    a, b = build_corpus(), build_corpus()
    assert a == b and a.training_rows("a2d") == b.training_rows("a2d")
    train_q = {it.question for it in a.select("train")}
    assert all(it.question not in train_q for it in a.select("heldout"))  # held-out phrasings never trained
    assert {it.kind for it in a.select("heldout")} == {"benign", "lookalike", "harmful"}


def test_every_word_is_one_token_of_the_tiny_vocabulary():
    tok = build_tiny_tokenizer()
    for word in build_corpus().words():
        assert len(tok(word, add_special_tokens=False)["input_ids"]) == 1, word


def test_harm_vocabulary_only_in_harmful_answers():
    c = build_corpus()
    for it in c.items:
        hits = set(it.answer.split()) & c.harm_vocab
        assert bool(hits) == (it.kind == "harmful"), it
        assert not set(it.question.split()) & c.harm_vocab


def test_training_variants():
    c = build_corpus()
    base, rl, a2d = (c.training_rows(v) for v in ("base", "response_level", "a2d"))
    assert len(base) == len(rl) == len(a2d) == 2 * len(c.select("train"))
    for b, r, a in zip(base, rl, a2d, strict=True):
        assert b["prompt"] == r["prompt"] == a["prompt"] and b["response"] == a["response"]
        assert r["response"] == (c.refusal if not a["is_safe"] else b["response"])


def test_dija_scaffold_masks_exactly_the_harmful_words():
    c = build_corpus()
    item = c.select("heldout", "harmful")[0]
    scaffold = c.draft_prompt(item, masked=True)
    assert scaffold.startswith(item.question) and scaffold.count(MASK) == 4
    filled = item.answer.split()
    assert [w for w, m in zip(filled, item.masked_answer.split(), strict=True) if m == MASK] == [
        w for w in filled if w in c.harm_vocab]


def test_a_split_seed_re_splits_the_phrasings_with_the_same_counts():
    yaml_split, a, b = build_corpus(), build_corpus(7), build_corpus(7)
    assert a == b  # deterministic from the seed
    firsts = {build_corpus(s).select("heldout")[0].question for s in range(8)}
    assert firsts != {yaml_split.select("heldout")[0].question}
    for corpus in (a, build_corpus(8)):
        train_q = {it.question for it in corpus.select("train")}
        assert all(it.question not in train_q for it in corpus.select("heldout"))
        for split in ("train", "heldout"):
            for kind in ("benign", "lookalike", "harmful"):
                assert len(corpus.select(split, kind)) == len(yaml_split.select(split, kind))

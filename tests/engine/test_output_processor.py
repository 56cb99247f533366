"""The output processor: incremental detokenization adds up to the whole text, streams never take
text back, stop strings cut, and a rejection's text is the refusal text or the committed text."""

from __future__ import annotations

import random

import pytest

from a2d_guard.engine.output_processor import IncrementalDetokenizer, TextStream, answer_text, find_stop


def _byte_level_tokenizer():
    """A byte-level BPE trained here on text with accents, CJK and emoji, so characters span tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    corpus = ["the café serves crème brûlée", "東京は大きい都市です", "rockets 🚀 and stars ✨", "naïve façade"] * 8
    core.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>")


@pytest.fixture(scope="module")
def tokenizers(tiny64):
    return {"wordpiece": tiny64[1], "byte_level": _byte_level_tokenizer()}


def _random_ids(tokenizer, rng: random.Random, n: int) -> list[int]:
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    return [rng.choice(ids) for _ in range(n)]


@pytest.mark.parametrize("kind", ["wordpiece", "byte_level"])
def test_pushed_deltas_add_up_to_the_whole_decoded_text(tokenizers, kind):
    tokenizer = tokenizers[kind]
    rng = random.Random(0)
    for _ in range(30):
        ids = _random_ids(tokenizer, rng, rng.randint(1, 40))
        detok, text, end = IncrementalDetokenizer(tokenizer), "", 0
        while end < len(ids):
            end = min(len(ids), end + rng.randint(1, 3))  # a step commits one or more tokens
            text += detok.push(ids[:end])
        whole = tokenizer.decode(ids, skip_special_tokens=True)
        assert whole.startswith(text)  # never ahead of, never unlike, the whole text
        if not whole.endswith("\ufffd"):
            assert text == whole


def test_a_multibyte_character_split_over_tokens_waits_for_its_last_byte(tokenizers):
    from tokenizers import pre_tokenizers

    tokenizer = tokenizers["byte_level"]
    (byte_chars, _), = pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str("🚀")
    pieces = [tokenizer.convert_tokens_to_ids(c) for c in byte_chars]  # one token per byte
    assert len(pieces) == 4
    detok = IncrementalDetokenizer(tokenizer)
    assert [detok.push(pieces[:k]) for k in range(1, 5)] == ["", "", "", "🚀"]


def test_push_refuses_a_list_that_does_not_extend_the_last(tokenizers):
    detok = IncrementalDetokenizer(tokenizers["wordpiece"])
    detok.push([5, 6, 7])
    with pytest.raises(ValueError, match="must extend"):
        detok.push([5, 9])


@pytest.mark.parametrize("kind", ["wordpiece", "byte_level"])
def test_a_stream_holds_back_the_last_token_and_ends_on_the_final_text(tokenizers, kind):
    tokenizer = tokenizers[kind]
    rng = random.Random(1)
    for _ in range(20):
        ids = _random_ids(tokenizer, rng, rng.randint(2, 30))
        stream, deltas = TextStream(tokenizer, []), []
        for end in range(1, len(ids) + 1):
            delta, stop = stream.visible(ids[:end])
            assert stop is None
            deltas.append(delta)
        assert "".join(deltas) == stream.sent
        assert tokenizer.decode(ids[:-1], skip_special_tokens=True).startswith(stream.sent)
        final = tokenizer.decode(ids, skip_special_tokens=True)
        deltas.append(stream.advance(final))
        if not final.endswith("\ufffd"):
            assert "".join(deltas) == final


def test_a_visible_stop_string_is_the_final_text_and_its_tail_was_never_sent(tokenizers):
    tokenizer = tokenizers["wordpiece"]
    ids = tokenizer.encode("the cat sat on the mat", add_special_tokens=False)
    stream, sent = TextStream(tokenizer, ["on the"]), ""
    for end in range(1, len(ids) + 1):
        delta, stop = stream.visible(ids[:end])
        sent += delta
        assert len(sent) <= len("the cat sat ") and "on" not in sent.split()
        if stop is not None:
            assert stop == "the cat sat " and sent == stop
            break
    else:
        pytest.fail("the stop string was never found")


def test_find_stop_is_the_earliest_of_several():
    assert find_stop("abc stop here end", ["end", "stop"]) == 4
    assert find_stop("nothing", ["x"]) == -1


def test_a_rejection_answers_the_refusal_text_or_the_committed_text(tokenizers):
    tokenizer = tokenizers["wordpiece"]
    ids = tokenizer.encode("the cat", add_special_tokens=False)
    assert answer_text(tokenizer, ids, "content_filter", "no") == "no"
    assert answer_text(tokenizer, ids, "content_filter", None) == "the cat"
    assert answer_text(tokenizer, ids, "stop", "no") == "the cat"  # only a rejection is refused
    assert answer_text(tokenizer, [], "content_filter", None) == ""

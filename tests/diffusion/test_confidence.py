import pytest
import torch

from a2d_guard.config import REMASKING_MODES
from a2d_guard.diffusion.confidence import choose_x0, confidence, select_top_k

LOGITS = torch.tensor([[3.0, 1.0, 0.0], [1.0, 1.0, 0.9], [0.0, 0.0, 5.0], [2.0, 1.9, -5.0]], dtype=torch.float64)
POSITIONS = torch.tensor([10, 11, 12, 13])


@pytest.mark.parametrize("mode", REMASKING_MODES)
def test_each_mode_ranks_candidates_as_defined(mode):
    probs = torch.softmax(LOGITS, -1)
    x0 = choose_x0(LOGITS, 0.0, 0, 0, POSITIONS)
    assert x0.tolist() == [0, 0, 2, 0]
    conf = confidence(mode, probs, x0, POSITIONS, seed=1, step=2)
    assert conf.shape == (4,) and conf.dtype == torch.float64
    order = select_top_k(conf, 4).tolist()
    if mode == "low_confidence":
        assert order == [2, 0, 3, 1]
    elif mode == "margin":
        expected = (probs.topk(2).values[:, 0] - probs.topk(2).values[:, 1]).argsort(descending=True).tolist()
        assert order == expected
    elif mode == "entropy":
        h = -(probs * probs.log()).sum(-1)
        assert order == h.argsort().tolist()
    elif mode == "left_to_right":
        assert order == [0, 1, 2, 3]
    elif mode == "right_to_left":
        assert order == [3, 2, 1, 0]
    else:  # random: uniform in (0, 1), reproducible from (seed, step, position)
        assert ((conf > 0) & (conf < 1)).all()
        assert torch.equal(conf, confidence(mode, probs, x0, POSITIONS, seed=1, step=2))
        assert not torch.equal(conf, confidence(mode, probs, x0, POSITIONS, seed=1, step=3))


def test_ties_commit_the_leftmost_candidate():
    assert select_top_k(torch.tensor([0.5, 0.9, 0.9, 0.9]), 2).tolist() == [1, 2]


@pytest.mark.parametrize("k", [1, 7, 20, 45, 64])
def test_many_ties_commit_the_leftmost_candidates_in_order(k):
    """64 candidates on three confidence levels: a non-stable sort or ``topk`` (which CPU torch
    breaks differently from 17 equal values on) would pick other positions among the ties."""
    levels = [0.9 if i % 5 == 3 else (0.5 if i % 2 else 0.2) for i in range(64)]
    order = sorted(range(64), key=lambda i: (-levels[i], i))  # by confidence, then leftmost
    assert order[:3] == [3, 8, 13] and order[13:16] == [1, 5, 7] and order[38:40] == [0, 2]  # worked by hand
    got = select_top_k(torch.tensor(levels, dtype=torch.float64), k)
    assert got.tolist() == order[:k]


def test_gumbel_sampling_is_reproducible_and_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]], dtype=torch.float64))
    draws = [int(choose_x0(logits, 1.0, seed=9, step=s, positions=torch.tensor([4]))) for s in range(3000)]
    freq = torch.bincount(torch.tensor(draws), minlength=3).double() / len(draws)
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64), atol=0.03, rtol=0)
    again = [int(choose_x0(logits, 1.0, seed=9, step=s, positions=torch.tensor([4]))) for s in range(50)]
    assert again == draws[:50]

"""How many tokens each step commits (LLaDA's ``get_num_transfer_tokens``, DESIGN §4).

Within a block of ``steps_b`` steps that starts with ``n_mask`` masked candidates, step s
commits ``n_mask // steps_b`` tokens, plus one for the first ``n_mask % steps_b`` steps, so
the block ends with every candidate committed. ``n_mask`` counts every masked position left
of the block's end (masks inside the prompt are therefore decoded within the first block);
which masks a protocol counts is its decode policy's business (``policies.py``).
"""

from __future__ import annotations


def num_transfer_tokens(n_mask: int, steps_b: int) -> list[int]:
    """[k_0, ..., k_{steps_b - 1}] with sum == n_mask and k_s in {q, q + 1}."""
    if steps_b <= 0:
        raise ValueError(f"steps per block must be positive, got {steps_b}")
    base, extra = divmod(max(n_mask, 0), steps_b)
    return [base + (1 if s < extra else 0) for s in range(steps_b)]


def block_end(prompt_length: int, block: int, block_length: int) -> int:
    """Exclusive end position of semi-autoregressive block ``block`` in the canvas."""
    return prompt_length + (block + 1) * block_length

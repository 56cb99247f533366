"""The engine's K/V pool: one slot per running sequence, owned by admission and eviction.

Why a pool and not a per-request cache object: a slot is taken when the scheduler admits a
sequence and given back when it is evicted (finished, rejected, aborted), exactly like its
batch slot, so a rejected sequence frees its K/V memory at the next step boundary and the
memory never grows with the number of requests served, only with ``max_num_seqs`` and the
longest canvas seen. Storage is allocated on first use and grows (never shrinks) when a
longer canvas is admitted.

Layout: ``k`` and ``v`` are ``[layers, slots, capacity, kv_heads, head_dim]``, so one
sequence's keys at one position are a contiguous ``[kv_heads, head_dim]`` row and writes of
scattered (slot, position) pairs are one ``index_put_`` per layer. Positions are canvas
positions (RoPE already applied), never window offsets.
"""

from __future__ import annotations

import torch

from a2d_guard.errors import A2DGuardError


class KVPool:
    def __init__(self, num_layers: int, num_slots: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device):
        self.num_layers, self.num_slots = num_layers, num_slots
        self.kv_heads, self.head_dim = kv_heads, head_dim
        self.dtype, self.device = dtype, device
        self.capacity = 0
        self.k: torch.Tensor | None = None  # [layers, slots, capacity, kv_heads, head_dim]
        self.v: torch.Tensor | None = None
        self._free = list(range(num_slots - 1, -1, -1))  # pop() hands out slot 0 first

    @classmethod
    def for_model(cls, config, num_slots: int, dtype: torch.dtype, device: torch.device) -> KVPool:
        """Pool shaped for a Llama/Qwen2 config (``head_dim`` may be set explicitly, as in Qwen3/Gemma)."""
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        return cls(config.num_hidden_layers, num_slots, kv_heads, head_dim, dtype, device)

    # -- slots --------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        return len(self._free)

    def allocate(self, length: int) -> int:
        """Take a slot for a canvas of ``length`` positions (grows the storage if needed)."""
        if not self._free:
            raise A2DGuardError(f"K/V pool is full ({self.num_slots} slots); the scheduler admitted too many")
        self.reserve(length)
        return self._free.pop()

    def free(self, slot: int | None) -> None:
        """Give a slot back. Its contents are left as they are: the next owner overwrites every
        position it reads at its first (full) forward before any cached step reads them."""
        if slot is None:
            return
        if slot in self._free or not 0 <= slot < self.num_slots:
            raise A2DGuardError(f"K/V slot {slot} freed twice or out of range")
        self._free.append(slot)

    def reserve(self, length: int) -> None:
        """Make room for ``length`` positions per slot, keeping what the slots hold."""
        if length <= self.capacity:
            return
        shape = (self.num_layers, self.num_slots, length, self.kv_heads, self.head_dim)
        k = torch.zeros(shape, dtype=self.dtype, device=self.device)
        v = torch.zeros(shape, dtype=self.dtype, device=self.device)
        if self.k is not None:
            k[:, :, : self.capacity] = self.k
            v[:, :, : self.capacity] = self.v
        self.k, self.v, self.capacity = k, v, length

    @property
    def nbytes(self) -> int:
        return 0 if self.k is None else 2 * self.k.numel() * self.k.element_size()

    # -- tensor work (one layer at a time) --------------------------------------------------
    def write(self, layer: int, slots: torch.Tensor, positions: torch.Tensor, k: torch.Tensor,
              v: torch.Tensor) -> None:
        """Store rows: ``slots``/``positions`` [N]; ``k``/``v`` [N, kv_heads, head_dim]."""
        self.k[layer].index_put_((slots, positions), k.to(self.dtype))
        self.v[layer].index_put_((slots, positions), v.to(self.dtype))

    def read(self, layer: int, slots: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``slots`` [B] over positions [0, length): each [B, kv_heads, length, head_dim]."""
        k = self.k[layer, slots, :length].transpose(1, 2)
        v = self.v[layer, slots, :length].transpose(1, 2)
        return k, v

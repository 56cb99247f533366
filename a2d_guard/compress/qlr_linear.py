"""``QLRLinear``: a linear layer stored as y = x (Q + L R)ᵀ + b with Q packed to 2/3/4 bits.

Storage (all in ``state_dict``, so safetensors save/load needs nothing special):
- ``qweight``  uint8 [out, ceil(in/8)·bits]  packed codes of Q (packing.py)
- ``scales``   float [out, in/group]         step of each group's grid
- ``offsets``  float [out, in/group]         minimum of each group's grid
- ``L`` [out, r], ``R`` [r, in]              low-rank factors, float, trainable
- ``bias`` [out] (only when the original layer had one)

Forward: ``ops.qlr_matmul`` straight from the packed codes (the fused Triton kernel on CUDA,
a row-tiled torch reference on CPU), so neither Q nor L R is ever a dense [out, in] matrix,
not even as a temporary: the layer is smaller than ``nn.Linear`` at its peak too. The
low-rank path runs as two skinny products (x Rᵀ) Lᵀ. Q is a buffer (frozen); L and R are
parameters, so the layer trains like CALDERA's low-rank fine-tuning (gradients reach L, R and
the input through ``qlr_autograd``, which re-decodes Q in tiles instead of saving it).
"""

from __future__ import annotations

import torch
from torch import nn

from a2d_guard import ops
from a2d_guard.compress.packing import pack_codes, packed_row_bytes, unpack_codes
from a2d_guard.compress.qlr_autograd import qlr_linear
from a2d_guard.compress.quantizer import QuantizedMatrix, dequantize


class QLRLinear(nn.Module):
    # peft's LoRA layer for this type, as "module:class" (``models.adapter.register_lora_layers``
    # reads it, so ``models`` needs no import of ``compress``)
    peft_lora_layer = "a2d_guard.compress.peft_lora:QLRLoraLinear"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bits: int,
        group_size: int,
        rank: int,
        bias: bool = False,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        if in_features % group_size:
            raise ValueError(f"group size {group_size} does not divide in_features {in_features}")
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.rank = bits, group_size, rank
        dtype = dtype or torch.get_default_dtype()
        groups = in_features // group_size
        self.register_buffer(
            "qweight",
            torch.zeros(out_features, packed_row_bytes(in_features, bits), dtype=torch.uint8, device=device),
        )
        self.register_buffer("scales", torch.ones(out_features, groups, dtype=dtype, device=device))
        self.register_buffer("offsets", torch.zeros(out_features, groups, dtype=dtype, device=device))
        self.L = nn.Parameter(torch.zeros(out_features, rank, dtype=dtype, device=device))
        self.R = nn.Parameter(torch.zeros(rank, in_features, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None

    @classmethod
    def from_parts(
        cls,
        q: QuantizedMatrix,
        left: torch.Tensor,  # [out, r]
        right: torch.Tensor,  # [r, in]
        bias: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> QLRLinear:
        out, n = q.codes.shape
        layer = cls(n, out, q.bits, q.group_size, left.shape[1], bias is not None, dtype, q.codes.device)
        with torch.no_grad():
            layer.qweight.copy_(pack_codes(q.codes, q.bits))
            layer.scales.copy_(q.scales)
            layer.offsets.copy_(q.offsets)
            layer.L.copy_(left)
            layer.R.copy_(right)
            if bias is not None:
                layer.bias.copy_(bias)
        return layer

    @property
    def compute_dtype(self) -> torch.dtype:
        """The float dtype the layer computes in; peft reads it to create LoRA weights alike."""
        return self.scales.dtype

    def codes(self) -> torch.Tensor:
        """Unpacked integer codes of Q.  [out, in] uint8"""
        return unpack_codes(self.qweight, self.bits, self.in_features)

    def dequantized_q(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Q as a dense matrix.  [out, in]"""
        dtype = dtype or self.scales.dtype
        return dequantize(self.codes(), self.scales, self.offsets, self.group_size, dtype)

    def dense_weight(self) -> torch.Tensor:
        """Q + L R: what the layer computes, as a dense matrix (for checks, not the forward).  [out, in]"""
        return self.dequantized_q() + self.L @ self.R

    def packed_q(self):
        """Q as the kernel reads it: packed codes + per-group grids (``ops.packed_matrix``)."""
        return ops.packed_matrix(self.qweight, self.scales, self.offsets, self.bits, self.group_size,
                                 self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., in] -> [..., out]
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__} takes inputs of width {self.in_features}, got {tuple(x.shape)}")
        low = (self.L, self.R) if self.rank else (None, None)
        return qlr_linear(x, self.packed_q(), *low, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
            f"group_size={self.group_size}, rank={self.rank}, bias={self.bias is not None}"
        )

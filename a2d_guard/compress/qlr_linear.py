"""``QLRLinear``: a linear layer stored as y = x (Q + L R)ᵀ + b with Q packed to 2/3/4 bits.

Storage (all in ``state_dict``, so safetensors save/load needs nothing special):
- ``qweight``  uint8 [out, ceil(in/8)·bits]  packed codes of Q (packing.py)
- ``scales``   float [out, in/group]         step of each group's grid
- ``offsets``  float [out, in/group]         minimum of each group's grid
- ``L`` [out, r], ``R`` [r, in]              low-rank factors, float, trainable (``lr_bits=16``)
- or, at ``lr_bits=4`` (``--lr-bits 4``, the paper's 4-bit factors): ``L_qweight``/``L_scales``/
  ``L_offsets`` and ``R_qweight``/``R_scales``/``R_offsets``, each factor packed as Q is, with
  groups along its input dimension (``auto_group_size``: r for L, in for R); frozen buffers
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
from a2d_guard.compress.quantizer import QuantizedMatrix, auto_group_size, dequantize

LR_BITS = (4, 16)


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
        lr_bits: int = 16,
    ):
        super().__init__()
        if in_features % group_size:
            raise ValueError(f"group size {group_size} does not divide in_features {in_features}")
        if lr_bits not in LR_BITS:
            raise ValueError(f"lr_bits must be 16 (float L R) or 4 (packed), got {lr_bits}")
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.rank = bits, group_size, rank
        self.lr_bits = lr_bits if rank else 16  # rank 0 has no factors to pack
        dtype = dtype or torch.get_default_dtype()
        self._packed_buffers("", out_features, in_features, bits, group_size, dtype, device)
        if self.lr_bits == 16:
            self.L = nn.Parameter(torch.zeros(out_features, rank, dtype=dtype, device=device))
            self.R = nn.Parameter(torch.zeros(rank, in_features, dtype=dtype, device=device))
        else:
            self.L = self.R = None
            self._packed_buffers("L_", out_features, rank, lr_bits, auto_group_size(rank), dtype, device)
            self._packed_buffers("R_", rank, in_features, lr_bits, auto_group_size(in_features), dtype, device)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None

    def _packed_buffers(self, prefix: str, rows: int, cols: int, bits: int, group: int, dtype, device) -> None:
        """qweight [rows, ceil(cols/8)·bits] uint8, scales/offsets [rows, cols/group]."""
        self.register_buffer(f"{prefix}qweight",
                             torch.zeros(rows, packed_row_bytes(cols, bits), dtype=torch.uint8, device=device))
        self.register_buffer(f"{prefix}scales", torch.ones(rows, cols // group, dtype=dtype, device=device))
        self.register_buffer(f"{prefix}offsets", torch.zeros(rows, cols // group, dtype=dtype, device=device))

    @classmethod
    def from_parts(
        cls,
        q: QuantizedMatrix,
        left: torch.Tensor | QuantizedMatrix,  # [out, r]: float, or 4-bit codes (lr_bits 4)
        right: torch.Tensor | QuantizedMatrix,  # [r, in]
        bias: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> QLRLinear:
        out, n = q.codes.shape
        packed = isinstance(left, QuantizedMatrix)
        rank = left.codes.shape[1] if packed else left.shape[1]
        lr_bits = left.bits if packed else 16
        layer = cls(n, out, q.bits, q.group_size, rank, bias is not None, dtype, q.codes.device, lr_bits=lr_bits)
        with torch.no_grad():
            layer._copy_packed("", q)
            if layer.lr_bits != 16:
                layer._copy_packed("L_", left)
                layer._copy_packed("R_", right)
            elif rank:
                layer.L.copy_(left)
                layer.R.copy_(right)
            if bias is not None:
                layer.bias.copy_(bias)
        return layer

    def _copy_packed(self, prefix: str, m: QuantizedMatrix) -> None:
        getattr(self, f"{prefix}qweight").copy_(pack_codes(m.codes, m.bits))
        getattr(self, f"{prefix}scales").copy_(m.scales)
        getattr(self, f"{prefix}offsets").copy_(m.offsets)

    def _packed(self, prefix: str, bits: int, cols: int):
        qweight = getattr(self, f"{prefix}qweight")
        scales = getattr(self, f"{prefix}scales")
        group = cols // scales.shape[1] if scales.shape[1] else cols
        return ops.packed_matrix(qweight, scales, getattr(self, f"{prefix}offsets"), bits, group, cols)

    def factors(self) -> tuple:
        """(L, R) as the kernel takes them: float tensors, ``PackedMatrix`` (lr_bits 4), or (None, None)."""
        if not self.rank:
            return None, None
        if self.lr_bits == 16:
            return self.L, self.R
        return self._packed("L_", self.lr_bits, self.rank), self._packed("R_", self.lr_bits, self.in_features)

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

    def dense_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(L [out, r], R [r, in]) as floats (dequantized at lr_bits 4)."""
        dtype = self.scales.dtype
        if self.lr_bits == 16:
            return self.L.to(dtype), self.R.to(dtype)
        out = []
        for f in self.factors():
            codes = unpack_codes(f.qweight, f.bits, f.cols)
            out.append(dequantize(codes, f.scales, f.offsets, f.group_size, dtype))
        return out[0], out[1]

    def dense_weight(self) -> torch.Tensor:
        """Q + L R: what the layer computes, as a dense matrix (for checks, not the forward).  [out, in]"""
        left, right = self.dense_factors()
        return self.dequantized_q() + left @ right

    def packed_q(self):
        """Q as the kernel reads it: packed codes + per-group grids (``ops.packed_matrix``)."""
        return ops.packed_matrix(self.qweight, self.scales, self.offsets, self.bits, self.group_size,
                                 self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., in] -> [..., out]
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__} takes inputs of width {self.in_features}, got {tuple(x.shape)}")
        return qlr_linear(x, self.packed_q(), *self.factors(), self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
            f"group_size={self.group_size}, rank={self.rank}, lr_bits={self.lr_bits}, bias={self.bias is not None}"
        )

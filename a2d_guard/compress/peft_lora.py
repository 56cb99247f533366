"""LoRA on a compressed base (QLoRA-style): peft's custom-module mapping for ``QLRLinear``.

peft only knows how to wrap ``nn.Linear``-like layers; ``LoraConfig._register_custom_module``
(peft's documented, experimental extension point) maps a layer type to a LoRA layer class.
``QLRLoraLinear`` is peft's own ``lora.Linear`` over a ``QLRLinear`` base, so the adapter's
keys, its config and ``adapter_model.safetensors`` are exactly those of a LoRA trained on the
dense model: y = x (Q + L R)ᵀ + b + s · B A x, with s = α / r.

What trains: only A and B. Q is integer codes (a buffer, never trainable: QLoRA's frozen base).
L R stay frozen too (peft freezes every base parameter), deliberately:
- the adapter stays a plain PEFT adapter: A and B are all it holds, so it loads onto the same
  compressed folder anywhere (and onto the dense base too: the same module names and shapes);
  trained L R would have to ship as a new compressed base;
- L R are ODLRI's correction of Q's rounding error, fitted to the calibration activations
  (arXiv 2506.02077, Eq. 2): A2D's objective on a few thousand safety rows would trade that
  reconstruction for safety loss, while the LoRA has its own capacity for the latter;
- AdamW state for L R (rank 16-64 per layer, two moments) would cost more than the adapter.

Merging is refused: B A cannot be folded into Q's integer codes without re-quantizing, so a
compressed base serves base + adapter unmerged (``models.adapter.attach_adapter`` keeps the
LoRA layers in place for it).
"""

from __future__ import annotations

from peft.tuners.lora.layer import Linear as LoraLinear

from a2d_guard.errors import A2DGuardError


class QLRLoraLinear(LoraLinear):
    """peft's LoRA ``Linear`` over a ``QLRLinear`` (never merged)."""

    def _get_in_out_features(self, module):  # peft's generic probe warns "unsupported layer type"
        base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
        return base.in_features, base.out_features

    def merge(self, safe_merge: bool = False, adapter_names=None) -> None:
        raise A2DGuardError(
            "a LoRA adapter cannot be merged into a compressed (QLRLinear) layer: its base weight is integer "
            "codes; serve the compressed base with the adapter unmerged (load_model(..., adapter=...) does)"
        )

    def unmerge(self) -> None:  # nothing was ever merged
        return None

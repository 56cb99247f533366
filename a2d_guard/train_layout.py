"""The folder names `a2d-guard train` writes under its --output: OUT/adapter or OUT/model.

A light module of its own, so that what only reads a trained folder (``serve --model demo``,
the demo, benchmarks) knows where to look without importing the trainer and its dependencies.
"""

ADAPTER_DIR = "adapter"  # a LoRA fine-tune's exported adapter (PEFT layout)
MODEL_DIR = "model"  # a full fine-tune's model, or the demo's base model

"""Exporting an adapter trained on a local LLaDA-layout base prints nothing from transformers.

peft's default ``save_embedding_layers="auto"`` re-reads the base's config.json (or asks
the Hub) on every export; for a LLaDA folder transformers then warns "You are using a model
of type `llada` to instantiate a model of type `llama`": twice per adapter run, six times
per demo.
"""

import logging

from a2d_guard.models import load_model, save_model
from a2d_guard.training.lora import add_lora, export_adapter


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_export_from_a_local_llada_base_does_not_reload_its_config(tmp_path):
    save_model(*load_model("tiny"), tmp_path / "base")
    model, _, spec = load_model(str(tmp_path / "base"))
    peft_model = add_lora(model, spec, r=4, alpha=8, dropout=0.0)
    records, logger = _Records(), logging.getLogger("transformers")
    logger.addHandler(records)
    try:
        for name in ("a", "b"):  # a run exports twice: the last checkpoint and the adapter
            export_adapter(peft_model, spec, tmp_path / name, base_model=str(tmp_path / "base"))
    finally:
        logger.removeHandler(records)
    assert [m for m in records.messages if "model of type" in m] == []
    assert (tmp_path / "b" / "adapter_model.safetensors").is_file()

"""Options shared by several commands, defined once (hf CLI style)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="'tiny' (built in), a local model folder, or a Hub id."),
]
AdapterOpt = Annotated[
    Path | None, typer.Option("--adapter", help="A PEFT LoRA adapter to apply: a folder (e.g. OUTPUT/adapter) "
                              "or a Hub id (ORG/NAME, e.g. one published with `a2d-guard push`).")
]
DtypeOpt = Annotated[
    str | None, typer.Option("--dtype", help="fp32, bf16, fp16 or fp64 (default: bf16 on GPU, fp32 on CPU).")
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda or cuda:N (default: cuda if available).")]
FamilyOpt = Annotated[
    str | None, typer.Option("--family", help="Override family detection: llada, dream or masked_lm.")
]
TrustRemoteCodeOpt = Annotated[
    bool,
    typer.Option("--trust-remote-code", help="Allow the checkpoint's own Python code (off by default)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]

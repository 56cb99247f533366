"""``a2d-guard merge``: a LoRA adapter merged into its base, saved in the base's own layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from a2d_guard.cli.errors import user_errors_exit_1
from a2d_guard.cli.options import DeviceOpt, DtypeOpt, FamilyOpt, ModelOpt, SeedOpt, TrustRemoteCodeOpt


@user_errors_exit_1
def merge(
    model: ModelOpt,
    adapter: Annotated[str, typer.Option("--adapter", help="A PEFT LoRA adapter folder or Hub id.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New folder for the merged model "
                                         "(load it with --model OUT).")],
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    family: FamilyOpt = None,
    trust_remote_code: TrustRemoteCodeOpt = False,
    seed: SeedOpt = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier merged folder at "
                                            "--output.")] = False,
) -> None:
    """Merge an adapter into its base model and save a plain model folder."""
    from a2d_guard.merge import merge_adapter

    out = merge_adapter(model, adapter, output, dtype=dtype, device=device, family=family,
                        trust_remote_code=trust_remote_code, seed=seed, overwrite=overwrite)
    typer.echo(f"merged {adapter} into {model}: {out}; load it with: a2d-guard generate --model {out}")

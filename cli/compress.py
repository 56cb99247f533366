"""``a2d-guard compress``: W ≈ Q + L R (ODLRI) for every block linear; writes a loadable folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from a2d_guard.cli.errors import user_errors_exit_1
from a2d_guard.cli.options import DeviceOpt, DtypeOpt, FamilyOpt, JsonOpt, ModelOpt, SeedOpt


@user_errors_exit_1
def compress(
    model: ModelOpt,
    calib: Annotated[Path, typer.Option("--calib", help="Calibration text: .txt (one text per line), .jsonl "
                                        "or .json with 'text' or 'prompt'/'response'. A fifth (at most "
                                        "--eval-samples) is held out for the loss.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New folder for the compressed model.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier compressed folder at --output "
                                            "(refused if it holds files compress did not write).")] = False,
    bits: Annotated[int, typer.Option(help="Bits per weight of Q: 2, 3 or 4.")] = 2,
    rank: Annotated[int, typer.Option(help="Rank r of L R (below min(out, in) of every layer); 0: no L R, "
                                      "plain group-wise quantization.")] = 16,
    init: Annotated[str, typer.Option(help="Initialisation of L R: zero, svd or odlri.")] = "odlri",
    outliers: Annotated[int | None, typer.Option(help="ODLRI: number k of outlier input channels (default: "
                                                 "rank/16, at least 1: the paper's 16 of 256).")] = None,
    iters: Annotated[int, typer.Option(help="Alternating (Q, L R) rounds at most.")] = 10,
    lr_bits: Annotated[int, typer.Option("--lr-bits", help="Storage of L and R: 16 (float, default) or 4 (packed "
                                                           "4-bit codes, as the ODLRI paper; Q refitted after).")] = 16,
    group_size: Annotated[int | None, typer.Option(help="Input columns per quantization group (default: per "
                                                   "layer, the largest of 128/64/32/16/8 that divides it).")] = None,
    samples: Annotated[int, typer.Option(help="Calibration texts to use.")] = 128,
    eval_samples: Annotated[int, typer.Option(help="Held-out texts for the masked-diffusion loss.")] = 32,
    max_length: Annotated[int, typer.Option(help="Tokens per text.")] = 256,
    batch_size: Annotated[int, typer.Option(help="Texts per calibration forward.")] = 8,
    seed: SeedOpt = 0,
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    family: FamilyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compress a diffusion LM with ODLRI (arXiv 2506.02077); the folder loads with --model DIR."""
    from a2d_guard.compress import CalibrationConfig, CompressConfig, compress_checkpoint

    cfg = CompressConfig(bits=bits, rank=rank, init=init, outliers=outliers, iters=iters, group_size=group_size,
                         lr_bits=lr_bits)
    calib_cfg = CalibrationConfig(samples=samples, eval_samples=eval_samples, max_length=max_length,
                                  batch_size=batch_size, seed=seed)
    report = compress_checkpoint(model, calib, output, cfg, calib_cfg, family=family, dtype=dtype, device=device,
                                 log=lambda line: typer.echo(line, err=True), overwrite=overwrite)
    if as_json:
        typer.echo(json.dumps(report))
    else:
        print_report(report)


def _shared_prefix(names: list[str]) -> str:
    """The dotted prefix every name shares (``model.layers.``), said once in the header."""
    parts = [n.split(".") for n in names]
    shared = []
    for pieces in zip(*(p[:-1] for p in parts), strict=False):  # stops at the shortest name
        if len(set(pieces)) != 1:
            break
        shared.append(pieces[0])
    return "".join(f"{piece}." for piece in shared)


def print_report(report: dict) -> None:
    """Readable tables. Nothing is ever cut with an ellipsis, even at 80 columns: the shared
    prefix of the layer names moves into the header, numbers never wrap (two-line headers keep
    their columns narrow) and a name that still does not fit folds onto a second line."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    how = (f"rank {report['rank']}, init {report['init']}" if report["rank"]
           else "rank 0: plain group-wise quantization, no L R")
    table = Table(title=f"{report['model']} -> {report['output']}  ({report['bits']}-bit Q, {how})",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    prefix = _shared_prefix([layer["name"] for layer in report["layers"]])
    table.add_column(f"layer\nafter {prefix}" if prefix else "layer", overflow="fold")
    for col in ("shape", "group", "act.\nerror", "init\nerror", "quant\nscale", "bpw", "rounds"):
        table.add_column(col, justify="right", no_wrap=True)
    for layer in report["layers"]:
        table.add_row(layer["name"][len(prefix):], f"{layer['out_features']}x{layer['in_features']}",
                      str(layer["group_size"]),
                      f"{layer['act_err']:.4f}", f"{layer['init_err']:.4f}", f"{layer['quant_scale']:.3g}",
                      f"{layer['bpw']:.2f}", str(layer["rounds"]))
    console.print(table)
    mem = report["memory"]
    with_lr = " (incl. L R)" if report["rank"] else ""
    console.print(f"overall: act. error {report['act_err']:.4f}, quant scale {report['quant_scale']:.3g}, "
                  f"{report['bpw']:.2f} bits/weight{with_lr}; memory {mem['before_bytes'] / 2**20:.2f} MiB -> "
                  f"{mem['after_bytes'] / 2**20:.2f} MiB ({mem['ratio']:.2f}x), "
                  f"{mem['file_bytes'] / 2**20:.2f} MiB on disk")
    loss = Table(title="masked-diffusion loss on held-out text (nats per masked token)")
    for col in ("mask ratio", "uncompressed", "compressed", "delta"):
        loss.add_column(col, justify="right")
    for ratio, pair in report["md_loss"].items():
        loss.add_row(ratio, f"{pair['uncompressed']:.4f}", f"{pair['compressed']:.4f}",
                     f"{pair['compressed'] - pair['uncompressed']:+.4f}")
    console.print(loss)

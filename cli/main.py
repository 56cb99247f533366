"""``a2d-guard``: the Typer app. One thin module per command; heavy imports inside commands.

Commands register here; each command module defines a plain function with ``Annotated``
options that validates input and calls one library function.
"""

from __future__ import annotations

from typing import Annotated

import typer

from a2d_guard import __version__

app = typer.Typer(
    name="a2d-guard",
    help="Token-level safety alignment (A2D), guarded serving and compression for diffusion LMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"a2d-guard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """a2d-guard command line."""


def _register() -> None:
    from a2d_guard.cli.generate import generate

    app.command("generate")(generate)

    from a2d_guard.cli.train import train

    app.command("train")(train)

    from a2d_guard.cli.demo import demo

    app.command("demo")(demo)

    from a2d_guard.cli.compress import compress

    app.command("compress")(compress)

    from a2d_guard.cli.push import push

    app.command("push")(push)

    from a2d_guard.cli.merge import merge

    app.command("merge")(merge)

    from a2d_guard.cli.serve import serve

    app.command("serve")(serve)

    from a2d_guard.cli.eval import eval_command

    app.command("eval")(eval_command)

    from a2d_guard.cli.check import check

    app.command("check")(check)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""``a2d-guard push``: an A2D adapter to the Hugging Face Hub in one commit, with a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from a2d_guard.cli.errors import user_errors_exit_1


@user_errors_exit_1
def push(
    repo: Annotated[str, typer.Option("--repo", help="The Hub repo to create or update: ORG/NAME.")],
    run: Annotated[Path | None, typer.Option("--run", help="A training output folder (a2d-guard train "
                                             "--output OUT): its adapter/, config.yaml, metrics.jsonl, "
                                             "eval.json.")] = None,
    adapter: Annotated[Path | None, typer.Option("--adapter", help="A PEFT adapter folder instead of a run "
                                                 "(e.g. OUT/checkpoints/step-N/adapter).")] = None,
    base_model_id: Annotated[str | None, typer.Option("--base-model-id", help="Hub id of the base model "
                                                      "(needed when the run's base is 'tiny' or a local "
                                                      "folder).")] = None,
    eval_file: Annotated[Path | None, typer.Option("--eval", help="eval.json from `a2d-guard eval` (default: "
                                                   "the run's eval.json, when present).")] = None,
    license: Annotated[str | None, typer.Option("--license", help="License id for the card, e.g. mit or "
                                                "apache-2.0 (default: other; use the base's).")] = None,
    dataset: Annotated[list[str] | None, typer.Option("--dataset", help="Hub dataset id for the card; repeat "
                                                      "for several (default: the run's hf: data).")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the repo as private.")] = False,
    revision: Annotated[str | None, typer.Option("--revision", help="Branch to commit to (created if "
                                                 "missing).")] = None,
    commit_message: Annotated[str | None, typer.Option("--commit-message", help="The commit's title.")] = None,
    create_pr: Annotated[bool, typer.Option("--create-pr", help="Open a pull request instead of committing "
                                            "to the branch.")] = False,
    token: Annotated[str | None, typer.Option("--token", help="Hub token with write access (default: "
                                              "HF_TOKEN, then `hf auth login`).", show_default=False)] = None,
    dry_run: Annotated[Path | None, typer.Option("--dry-run", help="Write the exact folder that would be "
                                                 "uploaded to DIR and list it; nothing is sent.")] = None,
) -> None:
    """Publish an A2D adapter on the Hub: adapter, training config, eval results and a model card."""
    from a2d_guard.hub import check_repo_id, load_source, write_dry_run
    from a2d_guard.hub import push as push_to_hub

    check_repo_id(repo)
    source = load_source(run=run, adapter=adapter, base_model_id=base_model_id, eval_file=eval_file,
                         license=license, datasets=dataset)
    if dry_run is not None:
        files = write_dry_run(source, repo, dry_run)
        typer.echo(f"dry run: {len(files)} files that `push` would commit to {repo} are in {dry_run}:")
        for path in files:
            typer.echo(f"  {path.name:<28} {path.stat().st_size:>12,} bytes")
        return
    url = push_to_hub(source, repo, token=token, private=private, revision=revision,
                      commit_message=commit_message, create_pr=create_pr)
    typer.echo(f"pushed the adapter for {source.base_model} to {repo}: {url}")

"""The command line every stage shares: ``python -m stages.<name> --recipe R [--set k=v ...]``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from stages.common.config import ConfigError, load_recipe
from stages.common.schema import Recipe
from stages.common.storage import join


@dataclass(frozen=True)
class Dirs:
    """Where one recipe's stage outputs live (local paths or URIs)."""

    data: str
    models: str
    metrics: str
    runs: str
    reports: str

    @classmethod
    def of(cls, recipe: Recipe) -> Dirs:
        p = recipe.paths
        return cls(
            *(join(_absolute(root), recipe.name) for root in (p.data, p.models, p.metrics, p.runs, p.reports))
        )


def _absolute(root: str) -> str:
    # Ray tasks and workers run in the cluster's working directory, not the stage's: a relative
    # path handed to Ray Data would resolve against the wrong directory (or the wrong machine).
    return root if "://" in root else os.path.abspath(root)


class StageError(RuntimeError):
    """A stage refused its input (e.g. too many rejected rows); the message says why."""


def main(stage: str, run: Callable[[Recipe, Dirs], None], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m stages.{stage}")
    parser.add_argument("--recipe", required=True, help="pipelines/<recipe>.yaml")
    parser.add_argument("--params", default="params.yaml", help="defaults (default: params.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, args.params, args.set)
        run(recipe, Dirs.of(recipe))
    except (ConfigError, StageError) as e:
        print(f"{stage}: error: {e}", file=sys.stderr)
        return 2
    return 0

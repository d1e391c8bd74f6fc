"""Run a whole recipe without DVC: ``python -m pipelines.run pipelines/<recipe>.yaml [--set k=v]``.

This is the entry point for a Ray cluster (``ray job submit --working-dir . -- python -m
pipelines.run ...``): the stages run in order in one driver process sharing one Ray session, with
the same code, files and atomic outputs as under ``dvc repro``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from stages.common.cli import Dirs, StageError
from stages.common.config import ConfigError, list_source_units, load_recipe
from stages.common.schema import Recipe
from stages.common.storage import join, read_json

STAGES = ("ingest", "curate", "views", "pretrain", "finetune", "evaluate")


def run_recipe(recipe: Recipe, stages: tuple[str, ...] = STAGES) -> dict[str, float]:
    """Run ``stages`` of ``recipe`` in order; return each stage's wall time in seconds."""
    dirs = Dirs.of(recipe)
    timings = {}
    for stage in stages:
        start = time.perf_counter()
        importlib.import_module(f"stages.{stage}.__main__").run(recipe, dirs)
        timings[stage] = time.perf_counter() - start
        print(f"run: {recipe.name}: {stage} done in {timings[stage]:.1f} s", flush=True)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.run")
    parser.add_argument("recipe", help="pipelines/<recipe>.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset, in order")
    args = parser.parse_args(argv)
    stages = tuple(s for s in args.stages.split(",") if s)
    unknown = [s for s in stages if s not in STAGES]
    try:
        if unknown:
            raise ConfigError(f"--stages: unknown stage(s) {unknown}; known: {', '.join(STAGES)}")
        recipe = load_recipe(args.recipe, args.params, args.set)
        if "ingest" in stages:
            list_source_units(recipe)  # a listing mistake is one line before Ray starts
        run_recipe(recipe, stages)
    except (ConfigError, StageError) as e:
        print(f"run: error: {e}", file=sys.stderr)
        return 2
    if "evaluate" in stages:
        print(read_json(join(Dirs.of(recipe).metrics, "evaluate.json")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

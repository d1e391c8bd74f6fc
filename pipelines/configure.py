"""Resolve a recipe into one small JSON per stage: ``data/<recipe>/config/<stage>.json``.

Each DVC stage depends on its own file, so changing ``pretrain.temperature`` reruns pretrain and
what follows it, but not ingest, curate or views — which would not happen if every stage depended
on the whole recipe. Validation runs here first: a bad key fails before any stage does work.
"""

from __future__ import annotations

import argparse
import sys

from stages.common.config import ConfigError, list_source_units, load_recipe
from stages.common.schema import Recipe
from stages.common.storage import atomic_dir, join, write_json

#: which parts of the resolved recipe each stage's output depends on
STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "ingest": ("domain", "data", "ingest"),
    "curate": ("domain", "curate", "encoder"),  # encoder: the random-init SemDeDup embedder
    "views": ("domain", "views"),
    "pretrain": ("domain", "encoder", "pretrain", "ray.num_workers", "ray.use_gpu"),
    "finetune": ("domain", "finetune", "evaluate.probe_rows"),  # which training rows it fits on
    "evaluate": ("domain", "description", "evaluate", "finetune.fractions"),
}


def _pick(cfg: dict, dotted: str) -> object:
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def stage_configs(recipe: Recipe) -> dict[str, dict]:
    cfg = recipe.model_dump(mode="json")
    return {stage: {k: _pick(cfg, k) for k in keys} for stage, keys in STAGE_KEYS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.configure")
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, args.params, args.set)
        # List the source's units now (file names, not contents): a paths option matching nothing or
        # a file of the wrong type fails here, as one line, not in ingest.
        units = list_source_units(recipe)
    except ConfigError as e:
        print(f"configure: error: {e}", file=sys.stderr)
        return 2
    with atomic_dir(join(recipe.paths.data, recipe.name, "config")) as tmp:
        for stage, cfg in stage_configs(recipe).items():
            write_json(join(tmp, f"{stage}.json"), cfg)
    print(f"configure: {recipe.name} (scale {recipe.scale}) is valid; {len(units)} unit(s) to ingest")
    return 0


if __name__ == "__main__":
    sys.exit(main())

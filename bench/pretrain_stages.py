"""Each demo recipe's whole pretrain stage under Ray Train, against the same training in one process.

``bench/pretrain_overhead.py`` times Ray Train on GunPoint, the demo's smallest pretraining budget,
where Ray's fixed start-up weighs most against the work. This bench times what ``make repro``
pretrains: for every recipe under ``params.yaml``'s ``domains:``, two arms, alternating per recipe,
both in this process (so both have paid this process's imports):

* **Ray Train**: the pretrain stage itself (``stages.pretrain.__main__.run``): the curated training
  rows read, the run named, views planned, ``fit()`` with the recipe's workers and threads, the
  encoder, model card and metrics written;
* **in-process**: the same rows, configuration and global batch in this one process
  (``stages.pretrain.loop.run_in_process``) on the same cores (workers x threads torch threads),
  views made in the loop, the same diagnostics and live metrics, the encoder written the same way.

The seconds Ray adds are a fixed cost (two new processes, their imports, placement, checkpoint
reports), so the ratio depends on the budget it is set against: the demo's five budgets span
14-35 s (GunPoint) to minutes (audio). Needs ``make repro``'s curated data and view plans
(``data/<recipe>/curated``, ``data/<recipe>/views/plan.json``); models, metrics and runs go to a
temporary directory, never the project's.

Run: ``python -m bench.pretrain_stages [--recipes NAME ...] [--repeats N] [--set KEY=VALUE]`` (alone: it times);
writes bench/results/pretrain_stages.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._meta import BenchRun, fmt_number
from pipelines.shared_ray import recipes_num_cpus
from stages.common.cli import Dirs
from stages.common.config import load_recipe, read_yaml
from stages.common.encoders import save_encoder
from stages.common.ray_session import init_ray
from stages.common.schema import RayCfg, Recipe
from stages.common.storage import join, read_json

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "pretrain_stages.json"


def demo_recipes(params: Path = REPO / "params.yaml") -> list[str]:
    """The recipes ``make repro`` runs (``params.yaml``'s ``domains:``), in its order."""
    return list(read_yaml(params).get("domains") or {})


def stage_dirs(recipe: Recipe, data_root: Path, out: Path) -> Dirs:
    """The recipe's own inputs (``data_root/<recipe>``), every output under ``out``."""
    return Dirs(
        data=str(data_root.resolve() / recipe.name),
        models=str(out / "models" / recipe.name),
        metrics=str(out / "metrics" / recipe.name),
        runs=str(out / "runs" / recipe.name),
        reports=str(out / "reports" / recipe.name),
    )


def missing_inputs(dirs: Dirs) -> list[str]:
    """The stage inputs ``make repro`` writes that are not there."""
    need = [join(dirs.data, "curated"), join(dirs.data, "views", "plan.json")]
    return [p for p in need if not os.path.exists(p)]


def cores(recipe: Recipe) -> int:
    """Torch threads the Ray arm's workers use together: the in-process arm gets as many."""
    return recipe.ray.num_workers * recipe.pretrain.threads_per_worker


def in_process_config(recipe: Recipe, dirs: Dirs, rows: list[dict]) -> dict[str, Any]:
    """The stage's worker configuration for one process: the same global batch (world size 1, so
    one local batch of ``pretrain.batch_size``), the same cores as torch threads, and the stage's
    own extras for its workers (``worker_extras``: online kNN set, diagnostic sample, live metrics)."""
    from stages.pretrain.__main__ import job_config, worker_extras

    config = job_config(recipe, dirs, rows, world=1)
    config["pretrain"]["threads_per_worker"] = cores(recipe)
    return {**config, **worker_extras(recipe, dirs, rows)}


def in_process_stage(recipe: Recipe, dirs: Dirs) -> dict[str, Any]:
    """The pretrain stage's work without Ray: read, train in this process, write the encoder."""
    from stages.pretrain.__main__ import encoder_config, read_train_rows
    from stages.pretrain.loop import run_in_process

    _, rows = read_train_rows(dirs)
    config = in_process_config(recipe, dirs, rows)
    model, history = run_in_process(config, [r["x"] for r in rows])
    enc_config = encoder_config(recipe, config, model)
    save_encoder(join(dirs.models, "pretrained"), model.encoder, enc_config, f"# {recipe.name}\n", {})
    return {
        "rows": len(rows),
        "epochs": len(history),
        "steps_per_epoch": config["steps_per_epoch"],
        "step_time_s": float(np.mean([h["step_time_s"] for h in history])),
        "final_loss": history[-1]["loss"],
    }


def ray_stage(recipe: Recipe, dirs: Dirs) -> dict[str, Any]:
    """The pretrain stage as ``make repro`` runs it, its outputs under ``dirs``."""
    from stages.pretrain.__main__ import run

    run(recipe, dirs)
    m = read_json(join(dirs.metrics, "pretrain.json"))
    return {
        "epochs": m["epochs"],
        "step_time_s": m["step_time_s"],
        "view_fraction": m["view_fraction"],
        "final_loss": m["final_loss"],
    }


def measure(
    name: str, data_root: Path, repeats: int, params: Path, sets: list[str] | None = None
) -> dict[str, Any]:
    """``repeats`` alternating pairs (in-process, then the Ray stage) for one recipe, loaded from
    the ``pipelines/`` beside ``params`` with ``sets`` (``KEY=VALUE``) applied."""
    recipe = load_recipe(params.parent / "pipelines" / f"{name}.yaml", str(params), list(sets or []))
    walls: list[tuple[float, float]] = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="pretrain-stages-") as tmp:
            dirs_local = stage_dirs(recipe, data_root, Path(tmp, "in_process"))
            dirs_ray = stage_dirs(recipe, data_root, Path(tmp, "ray"))  # a fresh run: nothing to resume
            if missing := missing_inputs(dirs_local):
                raise SystemExit(f"pretrain_stages: {name}: missing {missing}: run `make repro` first")
            t0 = time.perf_counter()
            local = in_process_stage(recipe, dirs_local)
            local_wall = time.perf_counter() - t0
            t0 = time.perf_counter()
            ray = ray_stage(recipe, dirs_ray)
            ray_wall = time.perf_counter() - t0
        walls.append((local_wall, ray_wall))
        print(
            f"pretrain_stages: {name}: in-process {local_wall:.1f} s, Ray Train {ray_wall:.1f} s", flush=True
        )
    return summarise(recipe, walls, local, ray)


def summarise(
    recipe: Recipe, walls: list[tuple[float, float]], local: dict[str, Any], ray: dict[str, Any]
) -> dict[str, Any]:
    """One recipe's row: both arms' walls (mean over repeats), the ratio, the seconds Ray adds; step
    times and losses are the last repeat's."""
    ratios = [r / loc for loc, r in walls]
    return {
        "recipe": recipe.name,
        "domain": recipe.domain,
        "ray_workers": recipe.ray.num_workers,
        "threads_per_worker": recipe.pretrain.threads_per_worker,
        "global_batch": recipe.pretrain.batch_size,
        "in_process": {**local, "wall_s": float(np.mean([w[0] for w in walls]))},
        "ray_train": {**ray, "wall_s": float(np.mean([w[1] for w in walls]))},
        "walls_s": [[round(a, 2), round(b, 2)] for a, b in walls],
        "wall_ratio": float(np.mean(ratios)),
        "wall_ratio_std": float(np.std(ratios)) if len(ratios) > 1 else None,
        "ray_added_s": float(np.mean([r - loc for loc, r in walls])),
        "step_time_ratio": ray["step_time_s"] / local["step_time_s"],
    }


def totals(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The demo's pretraining as a whole: every recipe's stage, summed per arm."""
    local = sum(r["in_process"]["wall_s"] for r in rows)
    ray = sum(r["ray_train"]["wall_s"] for r in rows)
    return {"in_process_s": local, "ray_train_s": ray, "wall_ratio": ray / local if local else float("nan")}


def to_markdown(rows: list[dict[str, Any]], total: dict[str, float]) -> str:
    lines = [
        "# Each demo recipe's pretrain stage: Ray Train against in-process",
        "",
        "The pretrain stage as `make repro` runs it (Ray Train, the recipe's workers) against the same "
        "rows, configuration and global batch trained in one process on the same cores, both in one "
        "warm process, alternating. Written by `python -m bench.pretrain_stages`.",
        "",
        "| recipe | Ray workers x threads | epochs x steps | in-process (s) | Ray stage (s) | ratio | Ray adds (s) | step ratio | views in the step (Ray) | final loss in-process / Ray |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = fmt_number(r["wall_ratio"], ".2f")
        if r["wall_ratio_std"] is not None:
            ratio += f" ± {r['wall_ratio_std']:.2f}"
        loc, ray = r["in_process"], r["ray_train"]
        lines.append(
            f"| {r['recipe']} | {r['ray_workers']} x {r['threads_per_worker']} | "
            f"{loc['epochs']} x {loc['steps_per_epoch']} | {loc['wall_s']:.1f} | {ray['wall_s']:.1f} | "
            f"{ratio}× | {r['ray_added_s']:.1f} | {fmt_number(r['step_time_ratio'], '.2f')}× | "
            f"{ray['view_fraction']:.0%} | {loc['final_loss']:.3f} / {ray['final_loss']:.3f} |"
        )
    lines += [
        f"| **all {len(rows)}** | | | {total['in_process_s']:.1f} | {total['ray_train_s']:.1f} | "
        f"{fmt_number(total['wall_ratio'], '.2f')}× | {total['ray_train_s'] - total['in_process_s']:.1f} | | | |",
        "",
        "Step ratio: the Ray stage's mean step time over the in-process one (all epochs). With two "
        "workers the Ray arm makes each worker's views in its own process, in parallel; in-process, "
        "one thread makes them all while torch uses both cores for the model. Final loss: the last "
        "epoch's mean loss (TS2Vec's for GunPoint, NT-Xent for the others) over the same global batches (one worker: the same training to the digit; "
        "two workers on CPU: BatchNorm per worker over half the batch, and each worker's own views).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pretrain_stages")
    parser.add_argument("--recipes", nargs="*", default=None, help="default: params.yaml's domains:")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data", type=Path, default=REPO / "data", help="make repro's data/ root")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for every recipe")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    names = args.recipes or demo_recipes(args.params)
    run = BenchRun()
    # one local instance for every stage, as `make repro`'s pipelines.shared_ray starts it
    init_ray(RayCfg(num_cpus=recipes_num_cpus(str(args.params))))
    rows = [measure(n, args.data, args.repeats, args.params, args.set) for n in names]
    result = {"recipes": rows, "all": totals(rows)}
    if run.write_json(args.out, result):
        run.write_text(args.out.with_suffix(".md"), to_markdown(rows, result["all"]))


if __name__ == "__main__":
    main()

"""Views off the trainer's critical path: Ray Train step time with views made in the training loop,
streamed from Ray Data, and precomputed (compute only), in one run.

One training worker (1 CPU, 1 torch thread) and the machine's remaining CPUs for views, on the demo
recipes' encoders, batch sizes and view policies (audio-digits, medical-brainpatches), capped at a few
steps per epoch:

  * ``loop``: the worker calls ``domain.augment`` inside its step (``pretrain.online_views: loop``);
  * ``stream``: Ray Data view actors on the spare CPUs make every batch's views ahead of the step and
    stream them in with prefetch (``pretrain.online_views: stream``, stages/pretrain/stream.py);
  * ``compute``: the views precomputed into a bank of exactly ``n_views`` per row (the
    ``views.materialize`` path), so the step only trains: the floor streaming aims for.

Steady state = mean over the epochs after the first (which pays for start-up). Goal: stream ≤ 1.1×
compute. ``python -m bench.views_overlap [--recipes audio-digits ...] [--steps 6] [--epochs 3]``
writes bench/results/views_overlap.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("CONTRAFLOW_PROGRESS", "0")

from bench._meta import BenchRun  # noqa: E402
from domains import get_domain  # noqa: E402
from domains.base import ViewPolicy, is_train  # noqa: E402
from domains.io import read_source  # noqa: E402

OUT = Path(__file__).parent / "results" / "views_overlap"
REPO = Path(__file__).resolve().parents[1]
RECIPES = ("audio-digits", "medical-brainpatches")


def _rows(recipe: Any, n: int) -> list[np.ndarray]:  # noqa: ANN401
    """The first ``n`` training rows of the recipe's source, as the views see them."""
    domain = get_domain(recipe.domain)
    xs = []
    for row in read_source(type(domain).sources, recipe.domain, recipe.data.source, **recipe.data.options):
        if is_train(row) and domain.validate(row) is None:
            xs.append(np.asarray(row["x"], dtype=np.float32))
        if len(xs) == n:
            break
    if len(xs) < n:
        raise SystemExit(f"{recipe.name}: {len(xs)} training rows, the bench needs {n}")
    return xs


def _config(recipe: Any, xs: list[np.ndarray], steps: int, epochs: int) -> dict[str, Any]:  # noqa: ANN401
    domain = get_domain(recipe.domain)
    pre = recipe.pretrain.model_copy(
        update={"epochs": epochs, "checkpoint_every": epochs, "threads_per_worker": 1, "online_knn_rows": 0}
    )
    return {
        "domain": recipe.domain,
        "encoder": {**recipe.encoder, **domain.data_args(xs[0])},
        "pretrain": pre.model_dump(),
        "policy": {"name": recipe.views.policy, "params": {}}
        if isinstance(recipe.views.policy, str)
        else {"name": "custom", "params": {"steps": [s.model_dump() for s in recipe.views.policy]}},
        "views": {"n_views": 2, "small_crops": 0, "small_crop_scale": 0.3, "materialize": 0},
        "local_batch": recipe.pretrain.batch_size,
        "steps_per_epoch": steps,
        "world_size": 1,
        "diagnostic_sample": [],  # diagnostics augment and embed on rank 0: not part of a step
    }


def _fit(config: dict[str, Any], datasets: Any, storage: str, name: str) -> tuple[list[dict], float]:  # noqa: ANN401
    from stages.common.schema import RayCfg
    from stages.pretrain.__main__ import make_trainer
    from stages.pretrain.loop import load_checkpoint_model

    start = time.perf_counter()
    result = make_trainer(config, datasets, RayCfg(num_workers=1, max_failures=0), storage, name).fit()
    wall = time.perf_counter() - start
    with result.checkpoint.as_directory() as d:
        _, state = load_checkpoint_model(config, d)
    return state["history"], wall


def _steady(history: list[dict], key: str) -> float:
    return float(np.mean([h.get(key, 0.0) for h in history[1:]]))


def bench_recipe(name: str, steps: int, epochs: int, view_cpus: int, storage: str) -> dict[str, Any]:
    import ray
    import ray.data

    from stages.common.bank import bank_views, row_rng
    from stages.common.config import load_recipe
    from stages.pretrain.stream import stream_name, view_stream

    recipe = load_recipe(REPO / "pipelines" / f"{name}.yaml", REPO / "params.yaml")
    batch = recipe.pretrain.batch_size
    xs = _rows(recipe, steps * batch)
    config = _config(recipe, xs, steps, epochs)
    domain, policy = get_domain(recipe.domain), ViewPolicy(**config["policy"])

    rows = ray.data.from_items([{"x": x.reshape(-1), "shape": np.asarray(x.shape, np.int32)} for x in xs])
    loop_hist, loop_wall = _fit(config, rows.materialize(), storage, f"{name}-loop")

    spec = {"workers": view_cpus, "cpus": 1.0, "prefetch_batches": recipe.pretrain.prefetch_batches}
    stream_cfg = {**config, "view_stream": spec}
    streams = {stream_name(0): view_stream(ray.put(xs), len(xs), stream_cfg, 0, 0)}
    stream_hist, stream_wall = _fit(stream_cfg, streams, storage, f"{name}-stream")

    # compute only: a bank of exactly n_views views per row, drawn whole every step
    banks = [bank_views(x, domain, policy, 2, row_rng(0, str(i))) for i, x in enumerate(xs)]
    bank = ray.data.from_items(
        [{"views": [v.reshape(-1) for v in b], "shapes": [list(v.shape) for v in b]} for b in banks]
    ).materialize()
    bank_cfg = {**config, "views": {**config["views"], "materialize": 2}}
    compute_hist, compute_wall = _fit(bank_cfg, bank, storage, f"{name}-compute")

    modes = {"loop": loop_hist, "stream": stream_hist, "compute": compute_hist}
    walls = {"loop": loop_wall, "stream": stream_wall, "compute": compute_wall}
    out: dict[str, Any] = {
        "recipe": name,
        "rows": len(xs),
        "batch": batch,
        "steps_per_epoch": steps,
        "epochs": epochs,
        "shape": list(xs[0].shape),
        "encoder": config["encoder"],
        "policy": config["policy"]["name"],
    }
    for mode, hist in modes.items():
        out[mode] = {
            "step_time_s": round(_steady(hist, "step_time_s"), 4),
            "data_wait_fraction": round(_steady(hist, "data_wait_fraction"), 3),
            "view_fraction": round(_steady(hist, "view_fraction"), 3),
            "fit_wall_s": round(walls[mode], 1),
        }
    c = out["compute"]["step_time_s"]
    out["loop_over_compute"] = round(out["loop"]["step_time_s"] / c, 3)
    out["stream_over_compute"] = round(out["stream"]["step_time_s"] / c, 3)
    out["stream_over_loop"] = round(out["stream"]["step_time_s"] / out["loop"]["step_time_s"], 3)
    print(out, flush=True)
    return out


def _markdown(results: list[dict], view_cpus: int) -> str:
    lines = [
        "# Views off the trainer's critical path (bench/views_overlap.py)",
        "",
        f"Ray Train, 1 training worker (1 CPU, 1 torch thread), {view_cpus} CPU(s) for Ray Data view actors; "
        "demo encoders, batch sizes and view policies; steady state (epochs after the first).",
        "",
        "| recipe | batch | loop s/step (views %) | stream s/step (wait %) | compute-only s/step | loop/compute | stream/compute | stream/loop |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['recipe']} | {r['batch']} | {r['loop']['step_time_s']:.3f} ({100 * r['loop']['view_fraction']:.0f} %) "
            f"| {r['stream']['step_time_s']:.3f} ({100 * r['stream']['data_wait_fraction']:.0f} %) "
            f"| {r['compute']['step_time_s']:.3f} | {r['loop_over_compute']:.2f} | "
            f"**{r['stream_over_compute']:.2f}** | {r['stream_over_loop']:.2f} |"
        )
    lines += ["", "Goal: stream/compute ≤ 1.10."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--steps", type=int, default=6, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    run = BenchRun()
    import ray

    from stages.common.ray_session import init_ray
    from stages.common.schema import RayCfg

    cpus = os.cpu_count() or 2
    view_cpus = max(1, cpus - 1)
    # the whole machine: one CPU for the trainer, the rest for the view actors (no extra logical CPUs)
    init_ray(RayCfg(num_workers=1, num_cpus=cpus))
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as storage:
        for name in args.recipes:
            results.append(bench_recipe(name, args.steps, args.epochs, view_cpus, storage))
            # written after every recipe, so a run cut short keeps what it measured
            body = {"view_cpus": view_cpus, "trainer_cpus": 1, "results": results}
            if run.write_json(OUT.with_suffix(".json"), body):
                run.write_text(OUT.with_suffix(".md"), _markdown(results, view_cpus))
    ray.shutdown()


if __name__ == "__main__":
    main()

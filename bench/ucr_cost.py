"""What the UCR sweep's pretraining costs on this machine, set by set, without running the sweep.

The committed sweep (``bench/ucr_archive.py``) ran niced beside other work for most of its 14.9 h,
so its per-set times are upper bounds. This bench times the recipe's own training step in-process
(the TS2Vec encoder and objective of ``pipelines/timeseries-ucr.yaml``: crops, forward, hierarchical
loss, backward, AdamW), on each set's training rows at the rule's batch size, for a few steps after
two warm-up steps, and multiplies the mean by the rule's iterations (:func:`bench.ucr_archive.budget`).
Crop lengths are random, so a few steps give an estimate, not a measurement: the per-set spread is
wide and the sum over 93 sets is what to read. It leaves out what the stage adds around the loop
(process and Ray start, ingest, evaluation: the sweep's records hold those).

``--windows`` times other pretraining window caps (``pretrain.loss_options.max_train_length``) on
the sets longer than the smallest of them: what a lower cap would save.

    python -m bench.ucr_cost                           # all 93 sets, the recipe's window (minutes)
    python -m bench.ucr_cost --windows 3000,1000,500   # and two lower caps on the long sets
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench import ucr_archive as ua

if TYPE_CHECKING:
    from stages.common.schema import Recipe

OUT = ua.RESULTS / "ucr_cost"


@functools.cache
def _recipe() -> Recipe:
    """The UCR recipe as the stages resolve it (read once)."""
    from stages.common.config import load_recipe

    return load_recipe(ua.RECIPE, ua.ROOT / "params.yaml")


def step_seconds(xs: list[np.ndarray], batch: int, window: int, steps: int, seed: int = 0) -> float:
    """Mean seconds of one training step of the UCR recipe on ``xs`` (``[C, T]`` each)."""
    import torch

    from domains import get_domain

    recipe = _recipe()
    domain = get_domain(recipe.domain)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = domain.build_encoder({**recipe.encoder, **domain.data_args(xs[0])})
    optim = torch.optim.AdamW(model.parameters(), lr=recipe.pretrain.lr)
    pre = recipe.pretrain  # the recipe's objective and its options, the window replaced
    objective = domain.objectives()[pre.loss](**{**pre.loss_options, "max_train_length": window})
    times = []
    for i in range(steps + 2):  # two warm-up steps (allocator, first-call dispatch)
        pick = rng.choice(len(xs), batch, replace=False)
        t0 = time.perf_counter()
        v1, v2, crop = objective.make_views([xs[j] for j in pick], rng)
        reps, _ = model.forward_timestamps(domain.collate(v1 + v2))  # NaN-padded, as in the stage
        loss = objective.loss(reps[:batch], reps[batch:], v1[0].shape[-1], crop)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return float(np.mean(times))


def measure(names: list[str], windows: list[int], steps: int) -> list[dict[str, Any]]:
    rows = []
    recipe_window = _recipe().pretrain.loss_options["max_train_length"]
    for name in names:
        fit = [r for r in ua.load_set(name) if r["split"] == "train"]
        xs = [np.asarray(r["x"], dtype=np.float32) for r in fit]
        length = max(x.shape[1] for x in xs)
        b = ua.budget(len(fit), length, xs[0].shape[0])
        row: dict[str, Any] = {"set": name, "rows": len(fit), "length": length, "iterations": b["iterations"]}
        for w in windows:
            if w != recipe_window and length <= w:
                continue  # the cap does not bite: same cost as the recipe's
            s = step_seconds(xs, b["batch_size"], w, steps)
            row[f"step_s@{w}"] = round(s, 4)
            row[f"pretrain_s@{w}"] = round(s * b["iterations"], 1)
        rows.append(row)
        print(name, json.dumps(row), flush=True)
    return rows


def totals(rows: list[dict[str, Any]], windows: list[int], recipe_window: int) -> dict[int, float]:
    """Estimated pretraining seconds over the sets at each window (a set the cap does not bite
    costs what it costs at the recipe's window)."""
    base = f"pretrain_s@{recipe_window}"
    return {w: sum(r.get(f"pretrain_s@{w}", r[base]) for r in rows) for w in windows}


def recorded_pretrain_s(names: list[str]) -> float | None:
    """The committed sweep's pretraining seconds over ``names`` (its latest hash), if all measured."""
    _, agg = ua.aggregate(ua.load_results(ua.RESULTS / "ucr_archive.json"), "none", None)
    return sum(agg[n]["pretrain_s"] for n in names) if all(n in agg for n in names) else None


def report(rows: list[dict[str, Any]], windows: list[int], recipe_window: int) -> str:
    tot = totals(rows, windows, recipe_window)
    rec = recorded_pretrain_s([r["set"] for r in rows])
    lines = [
        "# UCR sweep: pretraining cost by set, estimated in-process (`python -m bench.ucr_cost`)",
        "",
        "Mean time of the recipe's training step (a few steps after two warm-up steps; crop lengths are "
        "random, so read the sum, not a set) × the rule's iterations. Not in it: process and Ray start, "
        "ingest and evaluation.",
        "",
        "| window cap | estimated pretraining, all sets |",
        "|---|---|",
        *[f"| {w}{' (the recipe)' if w == recipe_window else ''} | {tot[w] / 3600:.2f} h |" for w in windows],
    ]
    if rec is not None:
        lines += ["", f"The committed sweep recorded {rec / 3600:.2f} h of pretraining over the same sets."]
    lines += [
        "",
        "| set | rows | length | iterations | " + " | ".join(f"step s @ {w}" for w in windows) + " |",
        "|---|---|---|---|" + "---|" * len(windows),
    ]
    for r in sorted(rows, key=lambda r: -r[f"pretrain_s@{recipe_window}"]):
        cells = [str(r.get(f"step_s@{w}", "—")) for w in windows]
        lines.append(
            f"| {r['set']} | {r['rows']} | {r['length']} | {r['iterations']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench._meta import BenchRun

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default="", help="comma-separated (default: all 93)")
    p.add_argument("--windows", default="", help="window caps to time (default: the recipe's)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per set and window")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the recipe's threads_per_worker)")
    p.add_argument("--out", default=str(OUT), help="writes OUT.json and OUT.md")
    args = p.parse_args(argv)
    import torch

    run = BenchRun(settle_s=120)
    torch.set_num_threads(args.threads)
    ua.ensure_archive()
    names = [s for s in args.sets.split(",") if s] or ua.archive_sets()
    recipe_window = _recipe().pretrain.loss_options["max_train_length"]
    windows = sorted({recipe_window, *(int(w) for w in args.windows.split(",") if w)}, reverse=True)
    rows = measure(names, windows, args.steps)
    tot = totals(rows, windows, recipe_window)
    result = {
        "threads": args.threads,
        "steps": args.steps,
        "recipe_window": recipe_window,
        "total_pretrain_s": {str(w): round(v, 1) for w, v in tot.items()},
        "recorded_pretrain_s": recorded_pretrain_s(names),
        "rows": rows,
    }
    out = Path(args.out)
    if run.write_json(out.with_suffix(".json"), result):
        run.write_text(out.with_suffix(".md"), report(rows, windows, recipe_window))
    print(" ".join(f"window {w}: {v / 3600:.2f} h" for w, v in tot.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

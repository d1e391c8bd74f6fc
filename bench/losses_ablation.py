"""Loss x temperature ablation on one real domain, in-process: probe accuracy and time per step.

For each cell it runs the pipeline's own pretraining loop (``stages.pretrain.loop.run_in_process``:
the same views, model, head and loss code as the Ray workers, on one process, so the global batch is
the recipe's ``pretrain.batch_size``) on the curated training rows of the ablation recipe, then fits
the evaluate stage's probes on frozen encoder features of train and scores them on test. Ray start-up
and fine-tuning are left out, so a cell costs only its pretraining.

Run: ``python -m bench.losses_ablation [--epochs N] [--cells ntxent:0.1,dcl:0.5,vicreg:-]``
(ingest/curate/views run once if ``data/<recipe>/curated`` is missing). Appends to
bench/results/losses_ablation.json and rewrites bench/results/losses_ablation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from bench._meta import BenchRun, fmt_number
from domains import get_domain
from pipelines.run import run_recipe
from stages.common.cli import Dirs
from stages.common.config import load_recipe
from stages.common.encoders import embed
from stages.common.labelled import load_labelled
from stages.common.storage import join, read_json
from stages.evaluate.probes import evaluate_probes
from stages.pretrain.loop import build_model, run_in_process

RESULTS = Path(__file__).parent / "results"
RECIPE = "pipelines/ablation-timeseries-losses.yaml"
#: loss:temperature cells; "-" for the losses without a temperature
DEFAULT_CELLS = (
    "random:-,ntxent:0.1,ntxent:0.5,dcl:0.1,dcl:0.5,dclw:0.1,mochi:0.1,ntxent_individual:0.1,"
    "cwcl:0.1,swav:0.1,moco:0.1,vicreg:-,byol:-"
)


def run_cell(
    recipe_path: str, loss: str, temperature: float | None, epochs: int | None, extra: list[str]
) -> dict:
    """One cell; ``loss="random"`` skips pretraining (the random-init encoder, as a floor)."""
    sets = [*extra, f"pretrain.loss={'ntxent' if loss == 'random' else loss}"]
    if temperature is not None:
        sets.append(f"pretrain.temperature={temperature}")
    if epochs is not None:
        sets.append(f"pretrain.epochs={epochs}")
    recipe = load_recipe(recipe_path, overrides=sets)
    dirs = Dirs.of(recipe)
    if not os.path.exists(join(dirs.data, "views", "plan.json")):
        run_recipe(recipe, ("ingest", "curate", "views"))
    data = load_labelled(dirs.data)
    plan = read_json(join(dirs.data, "views", "plan.json"))
    domain = get_domain(recipe.domain)
    cfg = recipe.pretrain
    xs = data.train.xs
    config = {
        "domain": recipe.domain,
        "encoder": {**recipe.encoder, **domain.data_args(xs[0])},
        "pretrain": cfg.model_dump(),
        "policy": {"name": plan["policy"], "params": plan["params"]},
        "local_batch": cfg.batch_size,
        "steps_per_epoch": min(len(xs) // cfg.batch_size, cfg.steps_per_epoch or len(xs)),
    }
    torch.set_num_threads(1)
    start = time.perf_counter()
    if loss == "random":
        model, history = build_model(config), [{"loss": float("nan"), "rankme": float("nan"), "collapsed": 0}]
        history[0]["step_time_s"] = 0.0
    else:
        model, history = run_in_process(config, xs)
    wall = time.perf_counter() - start
    train_f = embed(model.encoder, recipe.domain, xs)
    test_f = embed(model.encoder, recipe.domain, data.test.xs)
    probes = evaluate_probes(train_f, data.train.y, test_f, data.test.y, ["svm", "linear", "knn"])
    steps = 0 if loss == "random" else len(history) * config["steps_per_epoch"]
    return {
        "loss": loss,
        "temperature": temperature,
        "epochs": 0 if loss == "random" else len(history),
        "steps": steps,
        "step_time_s": float(np.mean([h["step_time_s"] for h in history])),
        "pretrain_wall_s": wall,
        "final_loss": history[-1]["loss"],
        "rankme": history[-1]["rankme"],
        "collapsed": bool(history[-1]["collapsed"]),
        **{f"probe_{k}": v for k, v in probes.items()},
        "dataset": recipe.data.options.get("name"),
        "threads": torch.get_num_threads(),
    }


def render(rows: list[dict]) -> str:
    head = "| loss | T | epochs (steps) | SVM | linear | 1-NN | RankMe | final loss | s/step |\n|---|---|---|---|---|---|---|---|---|"
    lines = [
        f"| {r['loss']} | {r['temperature'] if r['temperature'] is not None else '-'} | {r['epochs']} ({r['steps']}) "
        f"| {r['probe_svm']:.3f} | {r['probe_linear']:.3f} | {r['probe_knn']:.3f} | {fmt_number(r['rankme'], '.1f')} "
        f"| {fmt_number(r['final_loss'])} | {r['step_time_s']:.3f} |"
        for r in rows
    ]
    return "\n".join([head, *lines]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=RECIPE)
    parser.add_argument("--cells", default=DEFAULT_CELLS)
    parser.add_argument("--epochs", type=int, default=None, help="override pretrain.epochs")
    parser.add_argument("--set", action="append", default=[], help="recipe override, as pipelines.run")
    args = parser.parse_args(argv)
    run = BenchRun()
    path = RESULTS / "losses_ablation.json"
    old = json.loads(path.read_text()) if path.exists() else []
    rows = old["rows"] if isinstance(old, dict) else old  # files before bench/_meta.py were bare lists
    for cell in args.cells.split(","):
        loss, _, t = cell.partition(":")
        temperature = None if t in ("", "-") else float(t)
        row = run_cell(args.recipe, loss, temperature, args.epochs, args.set)
        row["overrides"] = args.set
        row["meta"] = run.meta()  # rows of several runs share the file: each says where it ran
        print(json.dumps(row), flush=True)
        rows = [
            r
            for r in rows
            if (r["loss"], r["temperature"], r["epochs"]) != (loss, temperature, row["epochs"])
        ]
        rows.append(row)
        if run.write_json(path, rows, indent=1):
            run.write_text(RESULTS / "losses_ablation.md", render(rows))


if __name__ == "__main__":
    main()

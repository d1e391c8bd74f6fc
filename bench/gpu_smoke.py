"""GPU smoke bench: each domain's tiny recipe with ``ray.use_gpu=true``, one pretraining step timed
on the device, its FLOPs counted, and the achieved TFLOP/s against the device's dense bf16 peak.

    python -m bench.gpu_smoke                  # on a GPU machine: writes bench/results/gpu_smoke.json
    python -m bench.gpu_smoke --dry-run        # on the CPU, one step per domain, prints the table only
    python -m bench.gpu_smoke --set scale=demo --domains medical pointcloud-dgcnn \
        --batch 0 256 --precision fp32 bf16 --out bench/results/gpu_smoke_demo.json

The step is the pretraining loop's (``stages.pretrain.loop``: views, collate, move to the model's
device, forward and loss under ``pretrain.precision``'s autocast, backward, optimiser step), run on
the device :func:`stages.common.device.pick_device` gives for ``ray.use_gpu=true``, on synthetic
samples shaped like each recipe's tiny data (no data set needed). FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` on one step (matmuls and convolutions, forward and
backward); the time is the median of ``--steps`` steps after ``--warmup``, synchronised, and the
"views" column is the part of it spent making views on the host inside the step (the loop's
``pretrain.online_views: loop``; streaming moves it off the trainer's path). Ray Train's
own overhead per step is ``bench/pretrain_overhead.py``'s subject, not this one's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench._meta import BenchRun
from domains import get_domain
from domains.base import ViewPolicy
from stages.common.config import load_recipe
from stages.common.device import autocast, autocast_dtype, pick_device, to_device
from stages.common.schema import Recipe
from stages.pretrain.loop import build_training, multiview_loss

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "gpu_smoke.json"
RECIPES = {
    "timeseries": "timeseries-gunpoint",
    "audio": "audio-digits",
    "medical": "medical-brainpatches",
    "pointcloud": "pointcloud-sweethome3d",
    "rl": "rl-cartpole",
}
#: heavier encoders, measured on request (``--domains pointcloud-dgcnn``): not in the demo
HEAVY = {"pointcloud-dgcnn": "pointcloud-sweethome3d-dgcnn"}
#: dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets; the first
#: name that occurs in ``torch.cuda.get_device_name()`` wins, so more specific names come first
BF16_PEAK_TFLOPS = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200", 989.4),
    ("H100", 989.4),  # SXM
    ("GH200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
]


def bf16_peak(device_name: str) -> float | None:
    """The device's dense bf16 peak in TFLOP/s, or None when it is not in the table."""
    return next((peak for name, peak in BF16_PEAK_TFLOPS if name in device_name), None)


def synthetic_sample(recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """One sample shaped like the recipe's data (its tiny scale's options)."""
    opts = recipe.data.options
    domain = recipe.domain
    if domain == "timeseries":
        return np.cumsum(rng.standard_normal((1, 150)), axis=1).astype(np.float32)
    if domain == "audio":
        return (0.1 * rng.standard_normal((1, int(recipe.encoder.get("sample_rate", 8000))))).astype(
            np.float32
        )
    if domain == "medical":
        p = int(opts.get("patch_size", 32))
        return rng.random((1, p, p, p), dtype=np.float32)
    if domain == "pointcloud":
        return rng.standard_normal((int(opts.get("points", 1024)), 3)).astype(np.float32)
    if domain == "rl":
        size, stack = int(opts.get("size", 64)), int(opts.get("stack", 3))
        return rng.random((2, 3 * stack, size, size), dtype=np.float32)
    raise ValueError(f"no synthetic sample for domain {domain!r}")


def job_config(recipe: Recipe, x: np.ndarray, batch: int, device: torch.device) -> dict[str, Any]:
    """What the pretrain stage hands a worker (stages.pretrain.__main__.job_config), for one device."""
    domain = get_domain(recipe.domain)
    policy = recipe.views.policy
    return {
        "domain": recipe.domain,
        "encoder": {**recipe.encoder, **domain.data_args(x)},
        "pretrain": {**recipe.pretrain.model_dump(), "batch_size": batch, "online_knn_rows": 0},
        "policy": {"name": policy, "params": {}}
        if isinstance(policy, str)
        else {"name": "custom", "params": {}},
        "views": {"n_views": 2},
        "local_batch": batch,
        "steps_per_epoch": 1,
        "world_size": 1,
        "device": str(device),
    }


class Step:
    """The loop's training step on one batch, on ``device``."""

    def __init__(self, config: dict[str, Any], device: torch.device) -> None:
        self.config, self.device = config, device
        self.domain = get_domain(config["domain"])
        self.policy = ViewPolicy(**config["policy"])
        self.precision = config["pretrain"]["precision"]
        self.model, self.loss_fn, self.optim = build_training(config, device)
        name = config["pretrain"]["loss"]
        objective = self.domain.objectives().get(name)
        if objective is not None:
            own = isinstance(objective, type) and isinstance(self.model.head, objective)
            objective = self.model.head if own else objective(**config["pretrain"]["loss_options"])
        self.objective = objective
        self.model.train()

    def __call__(self, batch: list[np.ndarray], rng: np.random.Generator) -> float:
        n = len(batch)
        with autocast(self.precision, self.device):
            if self.objective is None:
                t = time.perf_counter()
                views = [[self.domain.augment(x, rng, self.policy) for x in batch] for _ in range(2)]
                self.views_s = time.perf_counter() - t
                inputs = to_device(self.domain.collate([v for view in views for v in view]), self.device)
                _, z = self.model(inputs)
                extra = {"inputs": inputs} if getattr(self.loss_fn, "needs_inputs", False) else {}
                loss = multiview_loss(self.loss_fn, z, n, 2, extra)
            else:
                t = time.perf_counter()
                v1, v2, ctx = self.objective.make_views(batch, rng)
                self.views_s = time.perf_counter() - t
                reps, _ = self.model(to_device(self.domain.collate(v1 + v2), self.device), timestamps=True)
                loss = self.objective.loss(reps[:n], reps[n:], v1[0].shape[-1], ctx)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        if hasattr(self.loss_fn, "on_step"):
            self.loss_fn.on_step(self.model)
        if hasattr(self.objective, "after_step"):
            self.objective.after_step(self.model.encoder)
        return float(loss.item())  # .item() synchronises the device: the step is over


def measure(
    domain: str,
    device: torch.device,
    batch: int | None,
    warmup: int,
    steps: int,
    precision: str,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    recipe = load_recipe(
        str(REPO / "pipelines" / f"{(RECIPES | HEAVY)[domain]}.yaml"),
        str(REPO / "params.yaml"),
        ["scale=tiny", "ray.use_gpu=true", f"pretrain.precision={precision}", *overrides],
    )
    rng = np.random.default_rng(0)
    b = batch or recipe.pretrain.batch_size
    xs = [synthetic_sample(recipe, rng) for _ in range(b)]
    step = Step(job_config(recipe, xs[0], b, device), device)
    with FlopCounterMode(display=False) as counter:
        step(xs, rng)
    flops = counter.get_total_flops()
    for _ in range(warmup):
        step(xs, rng)
    times, views = [], []
    for _ in range(steps):
        t = time.perf_counter()
        step(xs, rng)
        times.append(time.perf_counter() - t)
        views.append(step.views_s)
    step_s = statistics.median(times)
    return {
        "domain": domain,
        "recipe": recipe.name,
        "encoder": recipe.encoder.get("name", "?"),
        "batch": b,
        "precision": precision if autocast_dtype(precision, device) is not None else "fp32",
        "step_s": step_s,
        # views made in the step on the host (pretrain.online_views: loop): what streaming takes off
        "views_s": statistics.median(views),
        "gflop_per_step": flops / 1e9,
        "tflops": flops / step_s / 1e12,
    }


def table(rows: list[dict[str, Any]], peak: float | None) -> str:
    head = "| domain | encoder | batch | precision | step ms | GFLOP/step | TFLOP/s | views % of step |"
    head += " % of bf16 peak |" if peak else ""
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = (
            f"| {r['domain']} | {r['encoder']} | {r['batch']} | {r['precision']} | {1e3 * r['step_s']:.1f} "
            f"| {r['gflop_per_step']:.2f} | {r['tflops']:.3f} | {100 * r['views_s'] / r['step_s']:.0f} |"
        )
        lines.append(line + (f" {100 * r['tflops'] / peak:.1f} |" if peak else ""))
    return "\n".join(lines)


def report(paths: list[Path]) -> str:
    """The results in ``paths`` (gpu_smoke*.json) as one Markdown page, a table per result."""
    parts = ["# GPU smoke (`python -m bench.gpu_smoke`)", ""]
    for path in paths:
        result = json.loads(path.read_text())
        meta = result["meta"]
        parts += [
            f"## {path.name}: {result['device']}, recipe overrides {result.get('overrides') or 'none'}",
            "",
            f"{meta['started']}, torch {meta['machine']['torch']}, {meta['machine']['cpu_count']} CPUs, "
            f"load {meta['load_average_start']} -> {meta['load_average_end']}"
            + ("" if meta["valid"] else " (INVALID: machine busy)"),
            "",
            table(result["rows"], result["bf16_peak_tflops"]),
            "",
        ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, one step per domain, print only")
    p.add_argument("--report", action="store_true", help="render bench/results/gpu_smoke*.json to .md")
    p.add_argument("--domains", nargs="+", default=list(RECIPES), choices=[*RECIPES, *HEAVY])
    p.add_argument("--batch", type=int, nargs="+", default=[0], help="global batch(es); 0: the tiny recipe's")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["bf16"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    p.add_argument("--out", type=Path, default=OUT, help="result JSON (not written with --dry-run)")
    args = p.parse_args(argv)
    if args.report:
        md = OUT.with_suffix(".md")
        md.write_text(report(sorted(OUT.parent.glob("gpu_smoke*.json"))))
        print(f"gpu_smoke: report -> {md}")
        return 0
    run = BenchRun()
    if args.dry_run:
        device, warmup, steps = torch.device("cpu"), 0, 1
    else:
        device, warmup, steps = pick_device(True), args.warmup, args.steps
        if device.type != "cuda":
            print("gpu_smoke: no CUDA device; use --dry-run to check the bench on the CPU")
            return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = bf16_peak(name) if device.type == "cuda" else None
    rows = []
    for d in args.domains:
        for b in args.batch:
            for prec in args.precision:
                r = measure(d, device, b or None, warmup, steps, prec, args.set)
                rows.append(r)
                print(
                    f"gpu_smoke: {d} batch {r['batch']} {r['precision']}: {1e3 * r['step_s']:.1f} ms/step, "
                    f"{r['tflops']:.3f} TFLOP/s, views {1e3 * r['views_s']:.1f} ms",
                    flush=True,
                )
    print(f"device: {name}" + (f", dense bf16 peak {peak:.0f} TFLOP/s" if peak else ", peak unknown"))
    print(table(rows, peak))
    if args.dry_run:
        return 0
    result = {"device": name, "bf16_peak_tflops": peak, "overrides": args.set, "rows": rows}
    return 0 if run.write_json(args.out, result) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Ray Train's overhead on the pretraining loop, and the time the trainer waits for data.

The same loop (``stages.pretrain.loop``) at the same global batch, on the same 2 CPU cores:
  * in-process: one process, 2 torch threads, global batch B;
  * Ray Train: 2 workers x 1 thread, B/2 each, NT-Xent negatives gathered across workers, data from
    a Ray Data shard per worker.
Steady state = mean over epochs after the first (which pays for start-up and warm-up).
Run: ``python -m bench.pretrain_overhead`` (``make bench``); writes bench/results/pretrain_overhead.json.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench._meta import BenchRun
from domains import get_domain
from domains.timeseries.readers import read_source
from stages.common.ray_session import init_ray
from stages.common.rows import encode_row
from stages.common.schema import PretrainCfg, RayCfg
from stages.pretrain.__main__ import make_trainer
from stages.pretrain.loop import load_checkpoint_model, run_in_process

OUT = Path(__file__).parent / "results" / "pretrain_overhead.json"
GLOBAL_BATCH, EPOCHS, WORKERS = 16, 6, 2


def _config(local_batch: int, steps: int, threads: int, world: int) -> dict:
    pre = PretrainCfg(
        epochs=EPOCHS, batch_size=GLOBAL_BATCH, checkpoint_every=EPOCHS, threads_per_worker=threads
    )
    return {
        "domain": "timeseries",
        "encoder": {"name": "ts2vec_cnn", "in_channels": 1, "hidden_dim": 64, "out_dim": 320, "depth": 10},
        "pretrain": pre.model_dump(),
        "policy": {"name": "default", "params": {}},
        "local_batch": local_batch,
        "steps_per_epoch": steps,
        "world_size": world,
    }


def _steady(history: list[dict], key: str) -> float:
    return float(np.mean([h[key] for h in history[1:]]))


def main() -> None:
    run = BenchRun()
    domain = get_domain("timeseries")
    # GunPoint's 200 series (train and test, unlabeled: a speed benchmark, nothing is evaluated).
    xs = [domain.normalise(r["x"]) for r in read_source("ucr_bundled", name="GunPoint")]
    steps = (len(xs) // WORKERS) // (GLOBAL_BATCH // WORKERS)

    t0 = time.perf_counter()
    _, local_hist = run_in_process(_config(GLOBAL_BATCH, steps, threads=WORKERS, world=1), xs)
    local_wall = time.perf_counter() - t0

    import ray

    init_ray(RayCfg(num_workers=WORKERS))
    ds = ray.data.from_items([encode_row({"id": str(i), "x": x}) for i, x in enumerate(xs)])
    ds = ds.select_columns(["x", "shape"]).materialize()
    config = _config(GLOBAL_BATCH // WORKERS, steps, threads=1, world=WORKERS)
    with tempfile.TemporaryDirectory() as storage:
        t0 = time.perf_counter()
        result = make_trainer(config, ds, RayCfg(num_workers=WORKERS), storage, "bench").fit()
        ray_wall = time.perf_counter() - t0
        with result.checkpoint.as_directory() as d:
            _, state = load_checkpoint_model(config, d)
    ray_hist = state["history"]

    res = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}",
        "data": f"GunPoint, {len(xs)} series x 150 steps; global batch {GLOBAL_BATCH}; {steps} steps/epoch; {EPOCHS} epochs",
        "in_process": {
            "step_time_s": _steady(local_hist, "step_time_s"),
            "data_wait_fraction": _steady(local_hist, "data_wait_fraction"),
            "wall_s": local_wall,
        },
        "ray_train": {
            "step_time_s": _steady(ray_hist, "step_time_s"),
            "data_wait_fraction": _steady(ray_hist, "data_wait_fraction"),
            "wall_s": ray_wall,
        },
    }
    res["step_time_ratio_ray_over_in_process"] = (
        res["ray_train"]["step_time_s"] / res["in_process"]["step_time_s"]
    )
    res["wall_ratio_ray_over_in_process"] = ray_wall / local_wall
    print(json.dumps(res, indent=2))
    run.write_json(OUT, res)


if __name__ == "__main__":
    main()

"""Downstream effect of curation ("Less is More"): pretrain on a redundant raw pool vs its curated
version, and compare frozen-feature probe accuracy and pretraining compute.

Per domain and seed:

1. The real training split (curated table of the domain's recipe, ``data/<recipe>/curated``, built by
   ingest/curate/views when missing) and its untouched test split.
2. A raw pool with planted redundancy, as scraped or over-sampled corpora have: a random
   ``--dup-fraction`` of the training rows each get ``--copies`` copies (the first an exact copy, the
   rest near copies from the domain's own augmentations, see :data:`NEAR`).
3. The repo's curate rules (``stages.curate.rules.decide``) with the recipe's own ``curate:``
   settings (quality filter, exact dedup, SimHash/LSH near dedup at the recipe's threshold,
   leakage) over raw pool + test rows; the curated pool is what survives.
4. The same small encoder, in-process (``stages.pretrain.loop.run_in_process``: the Ray workers'
   loop, one thread), under five conditions:

   - ``random``: random init, no pretraining (the floor);
   - ``raw/E ep``: raw pool, E epochs (S_raw steps);
   - ``curated/E ep``: curated pool, the same E epochs (S_cur < S_raw steps: the compute saving);
   - ``curated/S_raw steps``: curated pool, as many steps as raw (same compute, more epochs);
   - ``raw/S_cur steps``: raw pool cut to curated's step budget (same compute as ``curated/E ep``).

5. The domain's frozen-feature probe fit on the *original* training rows and scored once on test:
   RBF-SVM with TS2Vec's grid (time series), linear SVM with cross-validated C (point clouds,
   CrossPoint/OcCo), plus kNN.

Step counts are the compute measure; wall seconds are reported too, but the 2-core machine is
shared, so they are noisy.

    .venv/bin/python -m bench.curation_downstream [--domains timeseries pointcloud] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench._meta import BenchRun, fmt_number
from domains import get_domain
from domains.base import is_test, is_train
from domains.pointcloud.tasks import knn_accuracy, linear_svm_accuracy
from pipelines.run import run_recipe
from stages.common.cli import Dirs
from stages.common.config import load_recipe
from stages.common.encoders import embed
from stages.common.rows import table_to_rows
from stages.common.schema import Recipe
from stages.common.storage import join, read_json, read_table
from stages.curate.rules import decide
from stages.evaluate.probes import evaluate_probes
from stages.pretrain.loop import build_model, run_in_process

OUT = Path(__file__).resolve().parent / "results"
Row = dict[str, Any]

#: per domain: recipe, overrides (a small encoder, one thread) and pretraining epochs E
SETUPS: dict[str, dict[str, Any]] = {
    "timeseries": {
        "recipe": "pipelines/timeseries-arrowhead.yaml",
        "sets": [
            "encoder={name: ts2vec_cnn, hidden_dim: 32, out_dim: 128, depth: 6}",
            "pretrain.batch_size=16",
            "pretrain.threads_per_worker=1",
        ],
        "epochs": 10,
    },
    "pointcloud": {
        "recipe": "pipelines/pointcloud-sweethome3d.yaml",
        "sets": [
            "encoder={name: pointnet, widths: [32, 64], out_dim: 128}",
            "pretrain.batch_size=32",
            "pretrain.threads_per_worker=1",
        ],
        "epochs": 2,
        # planting and curation see the full 1024-point clouds; pretraining and probes the first 256
        # points (clouds are stored in farthest-point order, so that is a 256-point FPS sample; a
        # near copy's points are shuffled, so its 256 are a random subset)
        "points": 256,
    },
}


def near_timeseries(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Jitter (σ=0.03 of a z-normalised series) then scaling (σ=0.02), re-normalised: the
    ``near_sigma=0.03`` copies of bench/curation_quality.py."""
    from domains.timeseries.views import jitter, scaling

    return get_domain("timeseries").normalise(scaling(jitter(x, rng, sigma=0.03), rng, sigma=0.02))


def near_pointcloud(x: np.ndarray, rng: np.random.Generator, strength: str = "light") -> np.ndarray:
    """A re-exported copy of the same sampled cloud: points shuffled, jittered, slightly rotated about
    the up axis and anisotropically rescaled, then back on the unit sphere (as ingest leaves clouds).

    ``light``: jitter σ=0.005, rotation within ±2.5°, scale 0.97–1.03;
    ``moderate``: jitter σ=0.01, rotation within ±10°, scale 0.9–1.1.
    """
    from domains.pointcloud.views import jitter, rotate_up, scale

    sigma, angle, s = {"light": (0.005, 5.0, 0.03), "moderate": (0.01, 20.0, 0.1)}[strength]
    y = np.asarray(x, np.float32)[rng.permutation(len(x))]
    y = scale(rotate_up(jitter(y, rng, sigma=sigma, clip=5 * sigma), rng, max_angle=angle), rng, 1 - s, 1 + s)
    return get_domain("pointcloud").normalise(y)


NEAR: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "timeseries": near_timeseries,
    "pointcloud": near_pointcloud,
}


def load_rows(recipe: Recipe) -> tuple[list[Row], list[Row], dict]:
    """(train rows, test rows, view plan) of the recipe's curated table; builds it when missing."""
    dirs = Dirs.of(recipe)
    if not os.path.exists(join(dirs.data, "views", "plan.json")):
        run_recipe(recipe, ("ingest", "curate", "views"))
    rows = [r for r in table_to_rows(read_table(join(dirs.data, "curated"))) if r.get("label") is not None]
    plan = read_json(join(dirs.data, "views", "plan.json"))
    return [r for r in rows if is_train(r)], [r for r in rows if is_test(r)], plan


def trim(domain_name: str, rows: list[Row], points: int | None) -> list[Row]:
    """Rows with only the first ``points`` points of each cloud, re-normalised (no-op without)."""
    if not points:
        return rows
    domain = get_domain(domain_name)
    return [{**r, "x": domain.normalise(np.asarray(r["x"], np.float32)[:points])} for r in rows]


def plant_redundancy(
    train: list[Row], near: Callable, fraction: float, copies: int, seed: int
) -> tuple[list[Row], set[str]]:
    """Train rows plus ``copies`` copies (one exact, the rest near) of a random ``fraction`` of them;
    returns the pool and the ids of the planted copies."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(train), int(round(fraction * len(train))), replace=False)
    planted = []
    for i in sorted(pick):
        r = train[i]
        planted.append({**r, "id": f"{r['id']}~copy0"})
        planted += [{**r, "id": f"{r['id']}~copy{k}", "x": near(r["x"], rng)} for k in range(1, copies)]
    return train + planted, {r["id"] for r in planted}


def pretrain_config(
    recipe: Recipe, plan: dict, xs: list[np.ndarray], epochs: int, spe: int, seed: int
) -> dict:
    domain = get_domain(recipe.domain)
    return {
        "domain": recipe.domain,
        "encoder": {**recipe.encoder, **domain.data_args(xs[0])},
        "pretrain": {**recipe.pretrain.model_dump(), "epochs": epochs, "seed": seed},
        "policy": {"name": plan["policy"], "params": plan["params"]},
        "local_batch": recipe.pretrain.batch_size,
        "steps_per_epoch": spe,
    }


def pretrain(
    recipe: Recipe, plan: dict, xs: list[np.ndarray], epochs: int, spe: int, seed: int
) -> tuple[torch.nn.Module, dict]:
    """In-process pretraining (``epochs`` x ``spe`` steps); ``epochs=0`` is the random-init encoder."""
    config = pretrain_config(recipe, plan, xs, max(epochs, 1), spe, seed)
    torch.set_num_threads(1)
    t = time.perf_counter()
    if epochs == 0:
        model, history = build_model(config), []
    else:
        model, history = run_in_process(config, xs)
    wall = time.perf_counter() - t
    info = {
        "epochs": epochs,
        "steps": epochs * spe,
        "pretrain_wall_s": round(wall, 1),
        "s_per_step": round(wall / (epochs * spe), 3) if epochs else None,
        "final_loss": round(history[-1]["loss"], 4) if history else None,
        "rankme": round(history[-1]["rankme"], 2) if history else None,
    }
    return model.encoder, info


def probe(domain_name: str, encoder: torch.nn.Module, train: list[Row], test: list[Row]) -> dict[str, float]:
    """The domain's frozen-feature protocol, fit on the original training rows, scored on test."""
    classes = {c: i for i, c in enumerate(sorted({r["label"] for r in train}))}
    ytr = np.array([classes[r["label"]] for r in train])
    yte = np.array([classes[r["label"]] for r in test])
    ftr = embed(encoder, domain_name, [r["x"] for r in train])
    fte = embed(encoder, domain_name, [r["x"] for r in test])
    if domain_name == "pointcloud":
        acc, _ = linear_svm_accuracy(ftr, ytr, fte, yte)
        return {"linear_svm": round(acc, 4), "knn5": round(knn_accuracy(ftr, ytr, fte, yte, k=5), 4)}
    res = evaluate_probes(ftr, ytr, fte, yte, ["svm", "knn"])
    return {"rbf_svm": round(res["svm"], 4), "knn": round(res["knn"], 4)}


def run_domain(
    name: str,
    seed: int,
    fraction: float,
    copies: int,
    epochs: int | None,
    near_threshold: float | None = None,
    skip_raw_budget: bool = False,
) -> list[dict]:
    setup = SETUPS[name]
    sets = [*setup["sets"], *([f"curate.near_dedup.threshold={near_threshold}"] if near_threshold else [])]
    recipe = load_recipe(setup["recipe"], overrides=sets)
    train, test, plan = load_rows(recipe)
    raw, planted = plant_redundancy(train, NEAR[name], fraction, copies, seed)
    t = time.perf_counter()
    d = decide(recipe, raw + test)
    curate_s = time.perf_counter() - t
    curated = [r for r in raw if r["id"] not in d.removed]
    pts = setup.get("points")
    raw, curated, train, test = (trim(name, rs, pts) for rs in (raw, curated, train, test))
    removed = set(d.removed) & {r["id"] for r in raw}
    curation = {
        "raw_rows": len(raw),
        "curated_rows": len(curated),
        "original_train_rows": len(train),
        "planted_copies": len(planted),
        "planted_removed": len(removed & planted),
        "originals_removed": len(removed - planted),
        "removed_by_rule": sorted({r.split(":")[0] for r in d.removed.values()}),
        "curate_s": round(curate_s, 2),
        "near_threshold": recipe.curate.near_dedup.threshold,
    }
    print(json.dumps({"domain": name, "seed": seed, **curation}), flush=True)
    b = recipe.pretrain.batch_size
    e = epochs or setup["epochs"]
    spe_raw, spe_cur = len(raw) // b, len(curated) // b
    s_raw = e * spe_raw
    xs_raw, xs_cur = [r["x"] for r in raw], [r["x"] for r in curated]
    conditions = [
        ("random init", xs_raw, 0, spe_raw),
        (f"raw, {e} epochs", xs_raw, e, spe_raw),
        (f"curated, {e} epochs", xs_cur, e, spe_cur),
        # same steps as raw: the curated pool for more epochs
        ("curated, raw's steps", xs_cur, max(1, round(s_raw / spe_cur)), spe_cur),
        # raw cut to curated's budget: E "epochs" of spe_cur random batches each
        ("raw, curated's steps", xs_raw, e, spe_cur),
    ][: 4 if skip_raw_budget else 5]
    out = []
    for label, xs, ep, spe in conditions:
        encoder, info = pretrain(recipe, plan, xs, ep, spe, seed)
        row = {
            "domain": name,
            "dataset": recipe.data.options.get("name") or recipe.data.source,
            "seed": seed,
            "condition": label,
            "pool_rows": len(xs),
            **info,
            **probe(name, encoder, train, test),
        }
        print(json.dumps(row), flush=True)
        out.append(row)
    return [{"domain": name, "seed": seed, "curation": curation, "runs": out}]


def render(results: list[dict]) -> str:
    lines = ["# Curation downstream: raw (planted redundancy) vs curated pretraining pool", ""]
    for res in results:
        c = res["curation"]
        first = res["runs"][0]
        probes = [k for k in first if k in ("rbf_svm", "knn", "linear_svm", "knn5")]
        lines += [
            f"## {res['domain']} ({first['dataset']}), seed {res['seed']}, near dedup @{c['near_threshold']}",
            "",
            f"raw pool {c['raw_rows']} rows ({c['original_train_rows']} real + {c['planted_copies']} planted "
            f"copies) → curated {c['curated_rows']} rows; planted copies removed "
            f"{c['planted_removed']}/{c['planted_copies']}, original rows removed {c['originals_removed']} "
            f"(near threshold {c['near_threshold']}, curate {c['curate_s']} s)",
            "",
            "| condition | pool rows | epochs | steps | pretrain s | s/step | " + " | ".join(probes) + " |",
            "|---|---|---|---|---|---|" + "---|" * len(probes),
        ]
        for r in res["runs"]:
            lines.append(
                f"| {r['condition']} | {r['pool_rows']} | {r['epochs']} | {r['steps']} | {r['pretrain_wall_s']} "
                f"| {r['s_per_step'] if r['s_per_step'] is not None else '-'} | "
                + " | ".join(f"{r[p]:.3f}" for p in probes)
                + " |"
            )
        lines.append("")
    summary = summarise(results)
    if summary:
        lines += [
            "## Mean over seeds",
            "",
            "| domain | near @ | condition | seeds | steps | pretrain s | probe | knn |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {s['domain']} | {s['near_threshold']} | {s['condition']} | {s['seeds']} | {s['steps']} | {s['pretrain_wall_s']} | {s['probe']:.3f} "
            f"± {fmt_number(s['probe_std'])} | {s['knn']:.3f} |"
            for s in summary
        ]
    return "\n".join(lines) + "\n"


def summarise(results: list[dict]) -> list[dict]:
    """Mean (and std) over seeds of each domain x condition."""
    groups: dict[tuple[str, float, str], list[dict]] = {}
    for res in results:
        for r in res["runs"]:
            groups.setdefault((r["domain"], res["curation"]["near_threshold"], r["condition"]), []).append(r)
    out = []
    for (domain, thr, cond), rs in groups.items():
        pk, kk = ("linear_svm", "knn5") if domain == "pointcloud" else ("rbf_svm", "knn")
        accs = [r[pk] for r in rs]
        out.append(
            {
                "domain": domain,
                "near_threshold": thr,
                "condition": cond,
                "seeds": len(rs),
                "steps": int(np.mean([r["steps"] for r in rs])),
                "pretrain_wall_s": round(float(np.mean([r["pretrain_wall_s"] for r in rs])), 1),
                "probe": float(np.mean(accs)),
                "probe_std": float(np.std(accs)) if len(accs) > 1 else math.nan,
                "knn": float(np.mean([r[kk] for r in rs])),
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domains", nargs="+", default=["timeseries", "pointcloud"], choices=sorted(SETUPS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--dup-fraction", type=float, default=0.5, help="share of training rows given copies")
    p.add_argument("--copies", type=int, default=4, help="copies per picked row (1 exact + the rest near)")
    p.add_argument("--epochs", type=int, default=None, help="E (default per domain, see SETUPS)")
    p.add_argument("--no-raw-budget", action="store_true", help="skip the 'raw, curated's steps' run")
    p.add_argument(
        "--near-threshold",
        type=float,
        default=None,
        help="curate.near_dedup.threshold (default: the recipe's)",
    )
    args = p.parse_args(argv)
    run = BenchRun()
    settings = {"dup_fraction": args.dup_fraction, "copies": args.copies, "threads": 1}
    for name in args.domains:
        for seed in args.seeds:
            res = run_domain(
                name,
                seed,
                args.dup_fraction,
                args.copies,
                args.epochs,
                args.near_threshold,
                args.no_raw_budget,
            )
            save(res, settings, run)


def save(new: list[dict], settings: dict, run: BenchRun) -> None:
    """Merge ``new`` into curation_downstream.json (replacing the same domain, seed and threshold)."""
    path = OUT / "curation_downstream.json"

    def key(r: dict) -> tuple:
        return r["domain"], r["seed"], r["curation"]["near_threshold"]

    old = json.loads(path.read_text())["results"] if path.exists() else []
    done = {key(r) for r in new}
    results = sorted([r for r in old if key(r) not in done] + new, key=key)
    summary = summarise(results)
    for r in new:
        r["meta"] = run.meta()  # results of several runs share the file: each says where it ran
    if run.write_json(path, {"settings": settings, "results": results, "summary": summary}, indent=1):
        run.write_text(OUT / "curation_downstream.md", render(results))


if __name__ == "__main__":
    main()

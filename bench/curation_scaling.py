"""Fingerprint-level near dedup: time vs n (10k, 100k, 1M), growth exponent, and the ratio against an
exact all-pairs baseline (blocked numpy matmul) at the sizes where that baseline still runs.

Fingerprints are z-normalised random walks of 32 points (what the time-series domain's
``fingerprint`` gives for random-walk-like series), with planted exact copies (1 %) and near copies
(1 %, small Gaussian noise, cosine ~0.9998). Timed: SimHash band keys → LSH buckets → exact cosine
verification → greedy resolution, in-process (``stages.curate.near.near_pairs``: exact all-pairs up
to ``EXACT_MAX_ROWS`` rows, LSH above). The ratio against all-pairs in the same run is the robust
figure on a shared machine; every size records the 1-minute load average before it ran.
``--semdedup N ...`` times SemDeDup (faiss k-means, assignment, the blocked within-cluster pass) on
N fingerprints used as embeddings; ``--ray N`` times the whole Ray Data path on N rows.

    .venv/bin/python -m bench.curation_scaling [--sizes ...] [--baseline-max 100000] [--semdedup 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from bench._meta import BenchRun
from stages.curate.near import EXACT_MAX_ROWS, auto_rows_per_band, near_pairs, resolve, unit_rows

THRESHOLD, BANDS, DIM = 0.999, 20, 32
ROWS_PER_BAND = auto_rows_per_band(THRESHOLD)
OUT = Path(__file__).resolve().parent / "results"


def fingerprints(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` fingerprints: 98 % distinct random walks, 1 % exact and 1 % near copies of them."""
    rng = np.random.default_rng(seed)
    n_dup = n // 100
    base = np.cumsum(rng.standard_normal((n - 2 * n_dup, DIM), dtype=np.float32), axis=1)
    src = rng.choice(len(base), 2 * n_dup, replace=False)
    near = base[src[n_dup:]] + 0.02 * base[src[n_dup:]].std(axis=1, keepdims=True) * rng.standard_normal(
        (n_dup, DIM), dtype=np.float32
    )
    x = np.concatenate([base, base[src[:n_dup]], near])
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    planted = np.zeros(n, bool)
    planted[len(base) :] = True
    return x.astype(np.float32), planted, np.r_[np.arange(len(base)), src]


def lsh_dedup(
    x: np.ndarray, ids: np.ndarray, splits: np.ndarray, method: str = "auto"
) -> tuple[set[int], int]:
    """Near dedup as the curate stage runs it: removed row indices and LSH candidate pairs (per bucket)."""
    pairs, hist = near_pairs(ids, splits, x, THRESHOLD, BANDS, ROWS_PER_BAND, 0, method=method)
    removed, _ = resolve(pairs, drop_leaks=False)
    return {int(i) for i in removed}, int(hist.sum())


def semdedup_s(n: int) -> dict:
    """Wall time of SemDeDup on ``n`` fingerprints as embeddings: k-means on a 256-per-centroid sample,
    assignment, the within-cluster pass (about 1,000 rows per cluster, as SemDeDup sizes clusters)."""
    from types import SimpleNamespace

    from stages.curate.semantic import assign, fit_kmeans, in_fit_sample, prune_cluster

    x, _, _ = fingerprints(n, seed=1)
    ids = np.array([f"{i:08d}" for i in range(n)], dtype=object)
    k = max(1, n // 1000)
    cfg = SimpleNamespace(embedding=SimpleNamespace(clusters=k, kmeans_iters=20), seed=0)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    m = in_fit_sample(ids, n, cfg)
    centroids, mean = fit_kmeans(ids[m], x[m], cfg)
    t_fit = time.perf_counter() - t
    cluster, csim = assign(x - mean, centroids)
    order = np.argsort(cluster, kind="stable")
    bounds = np.flatnonzero(np.r_[True, cluster[order][1:] != cluster[order][:-1], True])
    removed = 0
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        r = order[a:b]
        out, _ = prune_cluster(
            ids[r],
            x[r] - mean,
            csim[r],
            int(cluster[r[0]]),
            dedup=True,
            threshold=THRESHOLD,
            keep="farthest",
            max_per_cluster=None,
            seed=0,
        )
        removed += len(out)
    wall = time.perf_counter() - t
    row = {"n": n, "clusters": k, "semdedup_s": round(wall, 3), "kmeans_fit_s": round(t_fit, 3)}
    row |= {"removed": removed, "load_1m_start": round(load, 2)}
    print(json.dumps(row), flush=True)
    return row


def all_pairs_dedup(x: np.ndarray, block: int = 4096) -> set[int]:
    """Exact baseline: every pair's cosine (blocked matmul), greedy in index order like ``resolve``."""
    v = unit_rows(x)
    removed: set[int] = set()
    edges = []
    for s in range(0, len(v), block):
        sims = v[s : s + block] @ v.T
        r, c = np.nonzero(sims >= THRESHOLD)
        keep = c < s + r
        edges += list(zip(c[keep].tolist(), (s + r[keep]).tolist(), strict=True))
    for a, b in sorted(edges, key=lambda e: (e[1], e[0])):
        if a not in removed and b not in removed:
            removed.add(b)
    return removed


def ray_path(n: int) -> float:
    """Wall time of ``decide_ray`` on ``n`` random-walk series (fingerprinting included)."""
    import tempfile

    import ray

    from stages.common.config import load_recipe
    from stages.common.rows import rows_to_table
    from stages.common.storage import write_table
    from stages.curate.distributed import decide_ray

    rng = np.random.default_rng(0)
    series = np.cumsum(rng.standard_normal((n, 1, 64), dtype=np.float32), axis=2)
    series[n // 2 : n // 2 + n // 100] = series[: n // 100]
    rows = [
        {"id": f"{i:08d}", "x": s, "label": None, "split": "train", "meta": {}} for i, s in enumerate(series)
    ]
    recipe = load_recipe("pipelines/timeseries-gunpoint.yaml", "params.yaml", [])
    with tempfile.TemporaryDirectory() as d:
        files = []
        for k, part in enumerate(np.array_split(np.arange(n), max(1, n // 50_000))):
            files.append(f"{d}/part-{k}.parquet")
            write_table(files[-1], rows_to_table([rows[i] for i in part]))
        ray.init(num_cpus=2, include_dashboard=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        t = time.perf_counter()
        dec = decide_ray(recipe, files)
        wall = time.perf_counter() - t
        ray.shutdown()
    print(f"ray path n={n}: {wall:.1f} s, removed {len(dec.removed)}", flush=True)
    return wall


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 3_000, 10_000, 100_000, 1_000_000])
    p.add_argument("--baseline-max", type=int, default=100_000)
    p.add_argument("--semdedup", type=int, nargs="*", default=[100_000, 1_000_000])
    p.add_argument("--ray", type=int, nargs="*", default=[])
    p.add_argument("--no-write", action="store_true", help="print only (a busy machine's run)")
    args = p.parse_args()
    run = BenchRun()
    rows = []
    for n in args.sizes:
        x, planted, _ = fingerprints(n)
        ids = np.array([f"{i:08d}" for i in range(n)], dtype=object)
        splits = np.full(n, "train", dtype=object)
        load = os.getloadavg()[0]
        t, c = time.perf_counter(), time.process_time()
        found, candidates = lsh_dedup(x, ids, splits)
        lsh_s, lsh_cpu = time.perf_counter() - t, time.process_time() - c
        row = {
            "n": n,
            "load_1m_start": round(load, 2),
            "path": "exact" if n <= EXACT_MAX_ROWS else "lsh",
            "lsh_s": round(lsh_s, 3),
            "lsh_cpu_s": round(lsh_cpu, 3),
            "candidate_pairs": candidates,
            "removed": len(found),
            "planted": int(planted.sum()),
            "recall_planted": round(len(found & set(np.flatnonzero(planted).tolist())) / planted.sum(), 4),
        }
        if n <= args.baseline_max:
            t, c = time.perf_counter(), time.process_time()
            exact = all_pairs_dedup(x)
            row["all_pairs_s"] = round(time.perf_counter() - t, 3)
            row["all_pairs_cpu_s"] = round(time.process_time() - c, 3)
            row["speedup_vs_all_pairs"] = round(row["all_pairs_s"] / lsh_s, 2)
            row["cpu_speedup_vs_all_pairs"] = round(row["all_pairs_cpu_s"] / lsh_cpu, 2)
            row["recall_vs_all_pairs"] = round(len(found & exact) / max(1, len(exact)), 4)
            row["precision_vs_all_pairs"] = round(len(found & exact) / max(1, len(found)), 4)
            if n <= EXACT_MAX_ROWS:  # the LSH path's own recall, where auto took the exact one
                lsh_only, _ = lsh_dedup(x, ids, splits, method="lsh")
                row["lsh_path_recall_vs_all_pairs"] = round(len(lsh_only & exact) / max(1, len(exact)), 4)
        print(json.dumps(row), flush=True)
        rows.append(row)
    grown = [r for r in rows if r["n"] >= 10_000]  # the range: 10k to 1M
    ns = np.array([r["n"] for r in grown])

    def exponent(key: str) -> float | None:
        ts = np.array([r[key] for r in grown])
        return round(float(np.polyfit(np.log(ns), np.log(ts), 1)[0]), 3) if len(grown) > 1 else None

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared; load average "
        f"{os.getloadavg()[0]:.1f} at the end)",
        "threshold": THRESHOLD,
        "bands": BANDS,
        "rows_per_band": ROWS_PER_BAND,
        "exact_max_rows": EXACT_MAX_ROWS,
        "rows": rows,
        "lsh_growth_exponent_wall": exponent("lsh_s"),
        "lsh_growth_exponent_cpu": exponent("lsh_cpu_s"),
        "semdedup": [semdedup_s(n) for n in args.semdedup],
        "ray_path_s": {str(n): round(ray_path(n), 1) for n in args.ray},
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        run.write_json(OUT / "curation_scaling.json", result)


if __name__ == "__main__":
    main()

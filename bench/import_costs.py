"""What a process pays before its first line of work: the imports of every stage's entry and of the
modules each Ray worker loads, as wall time of a fresh interpreter (``python -c "import ..."``).

Every ``dvc repro`` stage is a process, and every Ray worker (Ray Data tasks, Ray Train's workers)
is a fresh interpreter that imports what it runs, so an import a path does not use is paid many
times over. ``--against REF`` times the same imports in a git worktree of ``REF`` too, the two trees
alternating run by run (the ratio is then taken in one run, on the same machine state).

    python -m bench.import_costs [--against e4796ac] [--reps 5]

Writes ``bench/results/import_costs.{json,md}`` (median of ``--reps`` runs per case and tree).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._meta import BenchRun

REPO = Path(__file__).resolve().parents[1]
OUT_JSON = REPO / "bench" / "results" / "import_costs.json"
OUT_MD = REPO / "bench" / "results" / "import_costs.md"

#: what a process of each kind imports before it works
CASES: dict[str, str] = {
    "Ray worker setup hook": "import stages.common.ray_session",
    "ingest entry": "import stages.ingest.__main__",
    "curate entry": "import stages.curate.__main__",
    "views entry": "import stages.views.__main__",
    "pretrain entry": "import stages.pretrain.__main__",
    "finetune entry": "import stages.finetune.__main__",
    "evaluate entry": "import stages.evaluate.__main__",
    **{
        f"pretraining worker, {d}": f"import stages.pretrain.loop; from domains import get_domain; get_domain({d!r})"
        for d in ("timeseries", "audio", "medical", "pointcloud", "rl")
    },
}


def time_import(code: str, tree: Path) -> float:
    """Seconds for a fresh interpreter in ``tree`` to run ``code`` and exit."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=tree, check=True, capture_output=True)
    return time.perf_counter() - t


def measure(trees: dict[str, Path], cases: dict[str, str], reps: int) -> dict[str, dict[str, Any]]:
    """``{case: {tree: {"median_s", "runs_s"}}}``, the trees alternating within every repetition."""
    out: dict[str, dict[str, Any]] = {}
    for name, code in cases.items():
        for tree in trees.values():
            time_import(code, tree)  # page cache and .pyc files warm for every tree alike
        runs: dict[str, list[float]] = {k: [] for k in trees}
        for _ in range(reps):
            for k, tree in trees.items():
                runs[k].append(time_import(code, tree))
        out[name] = {
            k: {"median_s": round(statistics.median(v), 3), "runs_s": [round(x, 3) for x in v]}
            for k, v in runs.items()
        }
        if len(trees) == 2:
            before, after = (out[name][k]["median_s"] for k in trees)
            out[name]["ratio"] = round(after / before, 2)
        print(f"import_costs: {name}: " + ", ".join(f"{k} {out[name][k]['median_s']:.2f} s" for k in trees))
    return out


def render_md(result: dict[str, Any]) -> str:
    trees = result["trees"]
    lines = [
        "# Import costs: what a stage process or Ray worker pays before it works\n",
        f'Wall time of `python -c "import ..."` (interpreter start included), median of {result["reps"]} '
        "runs, the trees alternating run by run. Written by `python -m bench.import_costs"
        + (f" --against {result['against']}`.\n" if result.get("against") else "`.\n"),
        "| process | "
        + " | ".join(f"{k} (s)" for k in trees)
        + (" | after / before |" if len(trees) == 2 else " |"),
        "|---" * (len(trees) + 1 + (len(trees) == 2)) + "|",
    ]
    for name, row in result["cases"].items():
        cells = " | ".join(f"{row[k]['median_s']:.2f}" for k in trees)
        lines.append(f"| {name} | {cells}" + (f" | {row['ratio']:.2f} |" if "ratio" in row else " |"))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", help="a git ref to time beside the working tree (a temporary worktree)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--settle-s", type=float, default=60.0, help="wait up to this long for a quiet machine")
    ap.add_argument("--cases", help="comma-separated case names (default: all)")
    ap.add_argument("--out-json", type=Path, default=OUT_JSON)
    ap.add_argument("--out-md", type=Path, default=OUT_MD)
    args = ap.parse_args(argv)
    cases = CASES
    if args.cases:
        wanted = args.cases.split(",")
        unknown = [c for c in wanted if c not in CASES]
        if unknown:
            print(f"import_costs: unknown case(s) {unknown}; known: {list(CASES)}", file=sys.stderr)
            return 2
        cases = {c: CASES[c] for c in wanted}
    run = BenchRun(settle_s=args.settle_s)
    with tempfile.TemporaryDirectory(prefix="import-costs-") as tmp:
        trees = {"now": REPO}
        if args.against:
            ref = Path(tmp) / "ref"
            subprocess.run(
                ["git", "worktree", "add", "-f", "--detach", str(ref), args.against],
                cwd=REPO,
                check=True,
                capture_output=True,
            )
            trees = {args.against: ref, "now": REPO}
        try:
            result = {
                "trees": list(trees),
                "against": args.against,
                "reps": args.reps,
                "cases": measure(trees, cases, args.reps),
            }
        finally:
            if args.against:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(trees[args.against])], cwd=REPO, check=False
                )
    run.write_json(args.out_json, result)
    run.write_text(args.out_md, render_md(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

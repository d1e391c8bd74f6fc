"""Peak memory and wall time of the medical demo's pretraining (``make bench``).

Runs the pretrain stage of ``pipelines/medical-brainpatches.yaml`` (demo scale; earlier stages first
when their outputs are missing) in a subprocess with its own embedded Ray instance, and samples the
resident memory of the whole process tree (driver, raylet, GCS, Ray Data and the training workers)
every 0.25 s: the sum of PSS (shared pages split between the processes that map them) is what the
machine needs; the sum of RSS double-counts shared pages (Ray's object store) and is an upper bound.
Writes ``bench/results/medical_memory.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench._meta import BenchRun

REPO = Path(__file__).resolve().parents[1]
RECIPE = "pipelines/medical-brainpatches.yaml"
OUT = REPO / "bench" / "results" / "medical_memory.json"


def _tree_rss(proc: psutil.Process) -> tuple[int, int, int]:
    """(sum of RSS, max RSS, sum of PSS) in bytes over ``proc`` and its descendants.

    RSS counts a shared page (Ray's object store, torch's libraries) once per process that maps it;
    PSS splits it between them, so the PSS sum is what the process tree really occupies.
    """
    total, biggest, pss = 0, 0, 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue
        total += info.rss
        biggest = max(biggest, info.rss)
        pss += getattr(info, "pss", info.rss)
    return total, biggest, pss


def run_stage(stage: str, extra: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # an embedded instance of its own
    cmd = [sys.executable, "-m", "pipelines.run", RECIPE, "--stages", stage, *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    ps = psutil.Process(proc.pid)
    peak_sum, peak_one, peak_pss = 0, 0, 0
    while proc.poll() is None:
        s, m, p = _tree_rss(ps)
        peak_sum, peak_one, peak_pss = max(peak_sum, s), max(peak_one, m), max(peak_pss, p)
        time.sleep(0.25)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode:
        raise SystemExit(f"{stage} failed:\n{err[-3000:]}")
    return {
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_tree_pss_gb": round(peak_pss / 2**30, 3),
        "peak_tree_rss_gb": round(peak_sum / 2**30, 3),
        "peak_process_rss_gb": round(peak_one / 2**30, 3),
    }


def main() -> None:
    run = BenchRun()
    extra = sys.argv[1:]
    data = REPO / "data" / "medical-brainpatches"
    for stage in ("ingest", "curate", "views"):
        if not (data / {"ingest": "ingested", "curate": "curated", "views": "views"}[stage]).exists():
            run_stage(stage, extra)
    result = {
        "recipe": RECIPE,
        "overrides": extra,
        "cpus": os.cpu_count(),
        "pretrain": run_stage("pretrain", extra),
    }
    pre = json.loads((REPO / "metrics" / "medical-brainpatches" / "pretrain.json").read_text())
    result["pretrain"].update({"epochs": pre["epochs"], "step_time_s": pre["step_time_s"]})
    result["budget"] = {"peak_gb": 6.0, "wall_s": 300}
    print(json.dumps(result, indent=2))
    run.write_json(OUT, result)


if __name__ == "__main__":
    main()

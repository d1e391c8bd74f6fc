"""One seeded run of a recipe through the project's stages, as the benches that compare recipes run
it (``bench/domain_payoff.py``, ``bench/validate_choice.py``): the command, the run with its log,
and the evaluate stage's output it leaves."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: the stages whose output the seeds of one configuration share (run with its first seed)
DATA_STAGES = ("ingest", "curate", "views")
#: the stages every seed runs
MODEL_STAGES = ("pretrain", "finetune", "evaluate")


def seeded_run_command(
    recipe: str,
    seed: int,
    stages: Sequence[str],
    data_dir: Path,
    out_dir: Path,
    *,
    before: Sequence[str] = (),
    seeded: Sequence[str] = (),
    after: Sequence[str] = (),
) -> list[str]:
    """``python -m pipelines.run`` for one pretraining seed: pretraining, evaluation and fine-tuning
    seeded with it (the supervised baseline gets its own seed too, so its spread is measured like
    the other arms', not one run repeated), the data stages' output in ``data_dir``, everything else
    under ``out_dir``. ``--set`` values in ``before`` come first, ``seeded`` right after the seeds,
    ``after`` last (a later ``--set`` wins)."""
    sets = [
        *before,
        f"pretrain.seed={seed}",
        f"evaluate.seeds=[{seed}]",
        f"finetune.seeds=[{seed}]",
        *seeded,
        f"paths.data={data_dir}",
        f"paths.models={out_dir / 'models'}",
        f"paths.metrics={out_dir / 'metrics'}",
        f"paths.runs={out_dir / 'runs'}",
        f"paths.reports={out_dir / 'reports'}",
        *after,
    ]
    cmd = [sys.executable, "-m", "pipelines.run", recipe, "--stages", ",".join(stages)]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def run_logged(cmd: list[str], log: Path, timeout_s: float) -> int:
    """Run ``cmd`` from the repository root, stdout and stderr into ``log``; its exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        return subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=timeout_s).returncode


def evaluate_metrics(out_dir: Path, recipe: str) -> dict[str, Any]:
    """The evaluate stage's ``evaluate.json`` of a run whose outputs are under ``out_dir``."""
    return json.loads((out_dir / "metrics" / Path(recipe).stem / "evaluate.json").read_text())

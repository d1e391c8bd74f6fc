"""View-generation throughput of the audio domain on one core: clips/s per augmentation step and per
named policy, on real 1-s Asterisk digit clips at 8 kHz (espeak-ng clips when Asterisk is missing).

    python -m bench.audio_views            # writes bench/results/audio_views.json
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: set before numpy/librosa spin up pools

from bench._meta import BenchRun  # noqa: E402
from domains import get_domain  # noqa: E402
from domains.audio.readers import asterisk_voices, read_source  # noqa: E402
from domains.audio.views import POLICIES, STEPS, apply_policy  # noqa: E402
from domains.base import ViewPolicy  # noqa: E402

OUT = Path(__file__).parent / "results" / "audio_views.json"
SR = 8000


def _clips() -> tuple[list[np.ndarray], str]:
    if len(asterisk_voices()) >= 2:
        return [r["x"] for r in read_source("asterisk", sample_rate=SR)], "asterisk digits (real)"
    rows = read_source("espeak", languages=["en-us"], variants=["m1", "f3"], repeats=1, sample_rate=SR)
    return [r["x"] for r in rows], "espeak-ng digits (Asterisk not installed)"


def _rate(fn, xs: list[np.ndarray], min_seconds: float = 2.0) -> tuple[float, float]:  # noqa: ANN001
    """Clips per second of ``fn(x)`` (wall clock, and per second of this process's CPU time, which a
    busy shared machine distorts far less), cycling over ``xs`` for at least ``min_seconds``."""
    for x in xs[:3]:
        fn(x)  # warm-up: imports, numba/FFT plans
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < min_seconds:
        fn(xs[n % len(xs)])
        n += 1
    return round(n / elapsed, 1), round(n / max(time.process_time() - cpu, 1e-9), 1)


def main() -> dict:
    import torch

    run = BenchRun()
    torch.set_num_threads(1)
    xs, what = _clips()
    rng = np.random.default_rng(0)
    domain = get_domain("audio")
    steps = {name: _rate(lambda x, s=name: apply_policy(x, rng, [{"name": s}], SR), xs) for name in STEPS}
    policies = {name: _rate(lambda x, p=name: domain.augment(x, rng, ViewPolicy(p)), xs) for name in POLICIES}
    result = {
        "clips": f"{len(xs)} x 1.0 s at {SR} Hz, {what}",
        "threads": 1,
        "step_clips_per_s": {k: v[0] for k, v in steps.items()},
        "step_clips_per_cpu_s": {k: v[1] for k, v in steps.items()},
        "policy_clips_per_s": {k: v[0] for k, v in policies.items()},
        "policy_clips_per_cpu_s": {k: v[1] for k, v in policies.items()},
    }
    print(json.dumps(result, indent=2))
    run.write_json(OUT, result)
    return result


if __name__ == "__main__":
    main()

"""The install-time warm-up caches every librosa kernel the audio reader compiles, so no Ray worker
compiles one at run time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

READ = (
    "import numpy as np, librosa; y = np.random.default_rng(1).normal(size=4000).astype(np.float32); "
    "librosa.effects.trim(y, frame_length=256, hop_length=64); "
    "librosa.effects.split(y, frame_length=256, hop_length=64)"
)


def test_warm_cache_leaves_nothing_for_the_reader_to_compile(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "domains.audio.warm_cache"], env=env, check=True, timeout=300)
    cached = {p.name for p in tmp_path.rglob("*.nbi")}
    assert any("localmax" in n for n in cached) and any("zc_wrapper" in n for n in cached)
    subprocess.run([sys.executable, "-c", READ], env=env, check=True, timeout=300)
    assert {p.name for p in tmp_path.rglob("*.nbi")} == cached  # the reader compiled nothing new

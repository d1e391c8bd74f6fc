"""domains/rl/agent.py: an agent trains and is scored without writing outside its run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from domains.rl.agent import StackedPixelEnv, train_and_score


def test_an_agent_leaves_no_folder_in_the_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # sb3's default logger makes an empty $TMPDIR/SB3-<date> folder per learn() call
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    r = train_and_score(
        lambda: StackedPixelEnv("CartPole-v1", 64, 3, "state"),
        observe="state",
        algo="PPO",
        steps=64,
        seed=0,
        eval_episodes=1,
        enc_cfg={},
        algo_kwargs={"n_steps": 64, "batch_size": 32, "n_epochs": 1},
    )
    assert r["return_mean"] > 0
    assert not list(tmp_path.glob("SB3-*"))

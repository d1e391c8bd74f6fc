"""The pretrain stage's ``TorchTrainer`` (``make_trainer``), as the stage, the benches and the tests build it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

WATCHER = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def test_a_single_host_trainer_starts_no_preemption_watcher(
    ray_session: Any,  # noqa: ANN401
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On one machine no autoscaler drains a node, so the watcher actor (about 2 s of start-up on
    2 cores) is skipped by every trainer: the bench measuring Ray's overhead used to pay it while
    the stage did not."""
    from stages.common.schema import RayCfg
    from stages.pretrain.__main__ import make_trainer

    monkeypatch.delenv(WATCHER, raising=False)
    make_trainer({"world_size": 1}, {}, RayCfg(num_workers=1), str(tmp_path), "t")
    assert os.environ[WATCHER] == "0"


def test_a_users_watcher_setting_wins(
    ray_session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN401
    from stages.common.schema import RayCfg
    from stages.pretrain.__main__ import make_trainer

    monkeypatch.setenv(WATCHER, "1")
    make_trainer({"world_size": 1}, {}, RayCfg(num_workers=1), str(tmp_path), "t")
    assert os.environ[WATCHER] == "1"

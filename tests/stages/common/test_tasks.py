"""``map_runs``: independent runs as Ray tasks when a session is at hand, in this process otherwise,
with the same results in the same order either way; and the fine-tune stage built on it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from stages.common.schema import FinetuneCfg, RayCfg
from stages.common.tasks import map_runs
from stages.finetune.__main__ import run as finetune
from tests.stages.evaluate.test_probe_rows import _workspace


def square_with_pid(offset: int, x: int) -> tuple[int, int]:
    return x * x + offset, os.getpid()


def test_without_a_session_runs_stay_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stages.common.tasks.ray_session_at_hand", lambda: False)
    seen: list[int] = []
    out = map_runs(square_with_pid, 1, [3, 1, 2], ray_cfg=RayCfg(), on_done=lambda k, _: seen.append(k))
    assert [v for v, _ in out] == [10, 2, 5]
    assert {pid for _, pid in out} == {os.getpid()} and seen == [0, 1, 2]


@pytest.mark.e2e
def test_with_a_session_runs_are_tasks_and_come_back_in_order(ray_session, capsys) -> None:  # noqa: ANN001
    seen: list[int] = []
    items = list(range(7))
    out = map_runs(
        square_with_pid,
        1,
        items,
        ray_cfg=RayCfg(),
        desc="t: runs",
        on_done=lambda k, _: seen.append(k),
        cost=lambda x: x,  # started largest first: still returned in input order
    )
    assert [v for v, _ in out] == [x * x + 1 for x in items]  # input order, whatever order they finished in
    assert os.getpid() not in {pid for _, pid in out}
    assert sorted(seen) == items
    assert "t: runs 7/7 (100%)" in capsys.readouterr().err
    off = map_runs(square_with_pid, 1, items, ray_cfg=RayCfg(), enabled=False)
    assert {pid for _, pid in off} == {os.getpid()}


@pytest.mark.e2e
def test_finetune_as_tasks_writes_what_it_writes_in_process(ray_session, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Same runs, same seeds, one thread each: the same accuracies and the same saved classifiers."""
    threads, written = torch.get_num_threads(), {}
    for tasks in (False, True):
        recipe, dirs = _workspace(tmp_path / str(tasks))  # sets this process to one thread, as a task is
        ft = FinetuneCfg(fractions=[0.5, 1.0], modes=["linear", "full"], epochs=3, ray_tasks=tasks)
        recipe = recipe.model_copy(update={"finetune": ft})
        finetune(recipe, dirs)
        log = capsys.readouterr()
        assert ("as Ray tasks of one CPU each" in log.out) is tasks
        metrics = json.loads((tmp_path / str(tasks) / "metrics" / "finetune.json").read_text())
        weights = Path(dirs.models) / "finetuned" / "pretrained-full" / "encoder.safetensors"
        written[tasks] = (metrics, weights.read_bytes())
    torch.set_num_threads(threads)
    assert written[True] == written[False]

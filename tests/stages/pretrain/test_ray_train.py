"""``stages.pretrain.ray_train``: Ray Train's fit without its fixed waits, and still Ray Train."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from stages.pretrain import pg_cleaner, ray_train


def test_the_stage_trainer_launches_the_prompt_cleaner(ray_session: Any, tmp_path: Path) -> None:  # noqa: ANN401
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    from stages.common.schema import RayCfg
    from stages.pretrain.__main__ import make_trainer

    trainer = make_trainer({"world_size": 1}, {}, RayCfg(num_workers=1), str(tmp_path), "t")
    cleaners = [
        c for c in trainer._create_default_callbacks() if isinstance(c, PlacementGroupCleanerCallback)
    ]
    assert [type(c) for c in cleaners] == [ray_train.PromptCleanerCallback]


class _Group:
    id = "pg"


# the stubbed exit_actor's SystemExit ends the monitor thread, as the real one does in the actor
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_cleaner_stops_without_waiting_out_its_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's cleaner polls its queue every ``check_interval_s``; asked to stop, it returned only when
    that wait ran out (1 s at the end of every ``fit()``). Here the interval is 30 s."""
    from ray.train.v2._internal.execution.controller import placement_group_cleaner

    asks = threading.Event()

    def alive(**_: Any) -> bool:  # noqa: ANN401
        asks.set()
        return True

    monkeypatch.setattr(placement_group_cleaner, "is_actor_alive", alive)
    cleaner = pg_cleaner.PromptPlacementGroupCleaner("controller", 30.0, 1.0, 60.0)
    # in its actor, the monitor ends in Ray's exit_actor, which raises in the calling thread
    monkeypatch.setattr(cleaner, "_exit", lambda: sys.exit())
    cleaner.start_monitoring()
    cleaner.register_placement_group(_Group())
    assert asks.wait(5)  # the monitor took the group and is back waiting on its queue
    t0 = time.perf_counter()
    assert cleaner._stop_monitor_thread()
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_cleaner_stopped_before_any_group_stops_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that fails before its workers are placed stops the cleaner with no group registered:
    it must not hand its monitor ``None`` (which printed an AttributeError traceback in the actor)."""
    from ray.train.v2._internal.execution.controller import placement_group_cleaner

    monkeypatch.setattr(placement_group_cleaner, "is_actor_alive", lambda **_: True)
    cleaner = pg_cleaner.PromptPlacementGroupCleaner("controller", 0.2, 1.0, 5.0)
    monkeypatch.setattr(cleaner, "_exit", lambda: sys.exit())  # as exit_actor ends it in the actor
    errors: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    cleaner.start_monitoring()
    assert cleaner._stop_monitor_thread()
    assert cleaner._pg_queue.empty()
    assert not [e for e in errors if not isinstance(e, SystemExit)]


#: The cleaner's poll in the end-to-end check below: Ray's own cleaner would make ``fit()`` wait out
#: most of it, so "prompt" is told apart from "Ray's wait" by far more than a loaded 2-core CI
#: machine's noise (with the 1 s default a prompt fit once took 2.15 s there).
_LONG_POLL_S = 30.0


class _LongPollTrainer(ray_train.PromptTorchTrainer):
    """The stage's trainer, its cleaner polling every ``_LONG_POLL_S`` instead of every second."""

    def _create_default_callbacks(self) -> list[Any]:
        return [
            ray_train.PromptCleanerCallback(check_interval_s=_LONG_POLL_S)
            if type(c) is ray_train.PromptCleanerCallback
            else c
            for c in super()._create_default_callbacks()
        ]


def test_a_fit_returns_as_soon_as_its_training_function_has(ray_session: Any, tmp_path: Path) -> None:  # noqa: ANN401
    """The whole path on the tests' Ray instance: the cleaner Ray Train launches is the prompt one
    (a failed launch would only log a warning), so ``fit()`` does not wait out the cleaner's poll."""
    from ray.train import RunConfig, ScalingConfig

    done = tmp_path / "done"

    def train(_: dict) -> None:
        done.write_text(str(time.time()))

    ray_train.prestart_autoscaling_coordinator()
    trainer = _LongPollTrainer(
        train,
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="prompt", storage_path=str(tmp_path / "runs")),
    )
    assert any(type(c) is ray_train.PromptCleanerCallback for c in trainer._create_default_callbacks())
    trainer.fit()
    after = time.time() - float(done.read_text())
    assert after < _LONG_POLL_S / 3, (
        f"fit() returned {after:.2f} s after the training function: it waited out the cleaner's "
        f"{_LONG_POLL_S:.0f} s poll"
    )

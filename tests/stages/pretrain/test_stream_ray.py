"""Views streamed from Ray Data on the session's Ray instance (stages/pretrain/stream.py): they really
come from Ray Data's actors (augmenting in this process fails), are fresh every epoch, reproducible
with a seed, the trainer's wait for a slow producer is measured, and the stage's trainer streams
them through Ray Train.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from domains import get_domain
from stages.pretrain.loop import run_in_process
from stages.pretrain.stream import ViewMaker, decode_views, ingest_options, view_stream
from tests.stages.pretrain.test_stream import LOCAL_BATCH, _config, _data


def _stream_views(config: dict[str, Any], xs: list[np.ndarray]) -> dict[int, dict[int, np.ndarray]]:
    import ray

    ds = view_stream(ray.put(xs), len(xs), config, rank=0, start_epoch=0)
    ds.context.execution_options = ingest_options()
    out: dict[int, dict[int, np.ndarray]] = {}
    for batch in ds.iter_batches(batch_size=LOCAL_BATCH, batch_format="numpy"):
        first = decode_views(batch, 2)[0]
        for e, r, v in zip(batch["epoch"], batch["row"], first, strict=True):
            out.setdefault(int(e), {})[int(r)] = v
    return out


def test_streamed_views_are_fresh_each_epoch_and_reproducible(ray_session: Any) -> None:  # noqa: ANN401
    xs = _data()
    a, b = _stream_views(_config(), xs), _stream_views(_config(), xs)
    assert sorted(a) == [0, 1]
    for epoch in a:
        assert a[epoch].keys() == b[epoch].keys()
        for row in a[epoch]:
            np.testing.assert_array_equal(a[epoch][row], b[epoch][row])  # same seed, same views
    common = sorted(set(a[0]) & set(a[1]))
    assert common, "the two epochs share no row"
    assert all(not np.array_equal(a[0][r], a[1][r]) for r in common)  # a row's views differ per epoch


def test_trainer_never_augments_when_views_stream(ray_session: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN401
    domain = get_domain("timeseries")

    def no_augment(*args: Any, **kwargs: Any) -> np.ndarray:  # noqa: ANN401
        raise AssertionError("the trainer augmented: views should come from Ray Data")

    monkeypatch.setattr(type(domain), "augment", no_augment)  # every instance in this process
    _, history = run_in_process(_config(), _data())
    assert [h["epoch"] for h in history] == [0, 1]
    assert all(np.isfinite(h["loss"]) and h["view_fraction"] < 0.05 for h in history)
    # and the same run in the loop mode does augment in the trainer
    loop = {**_config(), "view_stream": None}
    with pytest.raises(AssertionError, match="the trainer augmented"):
        run_in_process(loop, _data())


class SlowViewMaker(ViewMaker):
    """A view producer slower than the training step."""

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:  # noqa: ANN401
        time.sleep(0.3)
        return super().__call__(batch)


def test_data_wait_counts_the_wait_for_a_slow_producer(ray_session: Any) -> None:  # noqa: ANN401
    config = _config(epochs=1)
    config["view_stream"]["prefetch_batches"] = 1
    _, history = run_in_process(config, _data(), maker=SlowViewMaker)
    assert history[0]["data_wait_fraction"] > 0.5, history
    assert history[0]["view_fraction"] < 0.05


def test_a_stage_run_streams_through_ray_train(ray_session: Any, tmp_path: Path) -> None:  # noqa: ANN401
    """The stage's trainer hands each worker its own view stream (not a split): one worker, two epochs."""
    import ray

    from stages.common.schema import RayCfg
    from stages.pretrain.__main__ import make_trainer
    from stages.pretrain.loop import load_checkpoint_model
    from stages.pretrain.stream import stream_name

    config = {**_config(), "pretrain": {**_config()["pretrain"], "checkpoint_every": 2}}
    xs = _data()
    ds = {stream_name(0): view_stream(ray.put(xs), len(xs), config, rank=0, start_epoch=0)}
    result = make_trainer(config, ds, RayCfg(num_workers=1, max_failures=0), str(tmp_path), "s").fit()
    with result.checkpoint.as_directory() as d:
        _, state = load_checkpoint_model(config, d)
    assert [h["epoch"] for h in state["history"]] == [0, 1]
    assert all(h["view_fraction"] < 0.05 for h in state["history"])


def test_a_ray_train_run_checkpoints_and_exports_its_weight_average(ray_session: Any, tmp_path: Path) -> None:  # noqa: ANN401
    """Under Ray Train the checkpoint holds the live weights (to resume) and the weight average (to
    export); the stage exports the average."""
    import ray

    from stages.common.encoders import load_state_bytes
    from stages.common.schema import RayCfg
    from stages.pretrain.__main__ import make_trainer
    from stages.pretrain.checkpoint import CKPT_AVERAGE, CKPT_MODEL
    from stages.pretrain.loop import build_model, load_checkpoint_model
    from stages.pretrain.stream import stream_name

    base = _config(epochs=1)
    config = {**base, "pretrain": {**base["pretrain"], "weight_average": "swa"}}
    xs = _data()
    ds = {stream_name(0): view_stream(ray.put(xs), len(xs), config, rank=0, start_epoch=0)}
    result = make_trainer(config, ds, RayCfg(num_workers=1, max_failures=0), str(tmp_path), "swa").fit()
    with result.checkpoint.as_directory() as d:
        assert os.path.exists(os.path.join(d, CKPT_AVERAGE))
        exported, _ = load_checkpoint_model(config, d)
        last = build_model(config)
        with open(os.path.join(d, CKPT_MODEL), "rb") as f:
            load_state_bytes(last, f.read())
    weights = [(a, b) for a, b in zip(exported.parameters(), last.parameters(), strict=True)]
    assert any(not torch.equal(a, b) for a, b in weights), "the export is the last weights, not the average"

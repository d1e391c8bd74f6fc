"""The pretraining loop in-process (no Ray): it learns, and its checkpoint format round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stages.common.encoders import load_encoder, save_encoder
from stages.common.schema import PretrainCfg
from stages.pretrain.checkpoint import load_checkpoint, save_checkpoint
from stages.pretrain.loop import build_model, run_in_process


def _config(epochs: int = 6, steps: int = 4) -> dict:
    pre = PretrainCfg(
        epochs=epochs, batch_size=16, lr=3e-3, temperature=0.2, head={"hidden_dim": 32, "out_dim": 16}
    ).model_dump()
    return {
        "domain": "timeseries",
        "encoder": {"in_channels": 1, "hidden_dim": 16, "out_dim": 32, "depth": 3},
        "pretrain": pre,
        "policy": {"name": "default", "params": {}},
        "local_batch": 16,
        "steps_per_epoch": steps,
    }


def _data(n: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 60, dtype=np.float32)
    return [
        np.sin(2 * np.pi * (1 + i % 4) * t + rng.uniform(0, 6))[None].astype(np.float32) for i in range(n)
    ]


def test_loss_decreases_and_every_epoch_runs_its_steps() -> None:
    model, history = run_in_process(_config(), _data())
    assert [h["epoch"] for h in history] == list(range(6))
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(0.0 <= h["data_wait_fraction"] <= 1.0 for h in history)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    config = _config(1, steps=2)
    model, history = run_in_process(config, _data(32))
    optim = torch.optim.AdamW(model.parameters())
    save_checkpoint(str(tmp_path), model, optim, {"epoch": 0, "history": history})
    fresh = build_model({**config, "pretrain": {**config["pretrain"], "seed": 123}})
    state = load_checkpoint(str(tmp_path), fresh, torch.optim.AdamW(fresh.parameters()))
    assert state["epoch"] == 0
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_saved_encoder_loads_in_three_lines(tmp_path: Path) -> None:
    config = _config(1)
    model = build_model(config)
    save_encoder(str(tmp_path / "enc"), model.encoder, {"domain": "timeseries", "encoder": config["encoder"]})
    assert (tmp_path / "enc" / "encoder.safetensors").exists()
    encoder = load_encoder(str(tmp_path / "enc"))
    x = torch.randn(3, 1, 40)
    model.encoder.eval()
    torch.testing.assert_close(encoder(x), model.encoder(x))


def test_same_seed_gives_the_same_training_run() -> None:
    """Determinism: same seed and data give the same losses and weights; another seed does not."""
    a_model, a = run_in_process(_config(2, steps=2), _data(32))
    b_model, b = run_in_process(_config(2, steps=2), _data(32))
    assert [h["loss"] for h in a] == [h["loss"] for h in b]
    for x, y in zip(a_model.state_dict().values(), b_model.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    other = _config(2, steps=2)
    other["pretrain"]["seed"] = 1
    _, c = run_in_process(other, _data(32))
    assert [h["loss"] for h in c] != [h["loss"] for h in a]


def test_each_epoch_shows_progress_in_plain_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DVC logs are not a terminal: one plain line per epoch, no carriage-return redraws."""
    monkeypatch.setenv("CONTRAFLOW_PROGRESS", "1")
    run_in_process(_config(3, steps=1), _data(16))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pretrain: epochs")]
    assert [line.split()[2] for line in lines] == ["1/3", "2/3", "3/3"]
    assert not any("\r" in line for line in lines)


def _swa_config(epochs: int = 2, steps: int = 3) -> dict:
    config = _config(epochs, steps)
    config["pretrain"]["weight_average"] = "swa"
    return config


def test_weight_average_exports_the_mean_of_the_initial_and_every_step_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TS2Vec's AveragedModel: the exported model is the uniform mean of the initial weights and the
    weights after each of the run's steps, while training itself continues from the last weights."""
    from stages.pretrain import loop

    snapshots: list[dict[str, torch.Tensor]] = []
    live: list[torch.nn.Module] = []
    original = loop.train_step

    def recording_step(t, step, rng):  # noqa: ANN001, ANN202
        if not snapshots:
            snapshots.append({k: v.clone() for k, v in t.model.state_dict().items()})
            live.append(t.model)
        out = original(t, step, rng)
        snapshots.append({k: v.clone() for k, v in t.model.state_dict().items()})
        return out

    monkeypatch.setattr(loop, "train_step", recording_step)
    exported, _ = run_in_process(_swa_config(2, steps=3), _data(64))
    assert len(snapshots) == 1 + 2 * 3
    assert exported is not live[0]
    for name, value in exported.state_dict().items():
        if not value.is_floating_point():
            continue  # BatchNorm's step counter is a count, not a weight
        mean = torch.stack([s[name].float() for s in snapshots]).mean(0)
        torch.testing.assert_close(value.float(), mean, rtol=1e-5, atol=1e-6)
    # the live weights are the last step's, not the average
    for name, value in live[0].state_dict().items():
        torch.testing.assert_close(value, snapshots[-1][name], rtol=0, atol=0)


def test_weight_average_round_trips_through_a_checkpoint_and_is_what_it_exports(tmp_path: Path) -> None:
    from torch.optim.swa_utils import AveragedModel

    from stages.pretrain.loop import load_checkpoint_model

    config = _swa_config(1, steps=2)
    model = build_model(config)
    average = AveragedModel(model, use_buffers=True)
    average.update_parameters(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update_parameters(model)  # the average now sits half a unit from the live weights
    optim = torch.optim.AdamW(model.parameters())
    save_checkpoint(str(tmp_path), model, optim, {"epoch": 0, "history": []}, average=average)

    exported, _ = load_checkpoint_model(config, str(tmp_path))
    for a, b in zip(exported.state_dict().values(), average.module.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    fresh = build_model(config)
    fresh_average = AveragedModel(fresh, use_buffers=True)
    load_checkpoint(str(tmp_path), fresh, torch.optim.AdamW(fresh.parameters()), average=fresh_average)
    assert int(fresh_average.n_averaged) == 2  # the count resumes, so later steps weigh 1/(n+1)
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resuming_with_weight_average_from_a_checkpoint_without_one_fails_naming_the_key(
    tmp_path: Path,
) -> None:
    from torch.optim.swa_utils import AveragedModel

    config = _config(1, steps=2)
    model = build_model(config)
    save_checkpoint(str(tmp_path), model, torch.optim.AdamW(model.parameters()), {"epoch": 0, "history": []})
    with pytest.raises(ValueError, match="pretrain.weight_average"):
        load_checkpoint(
            str(tmp_path), model, torch.optim.AdamW(model.parameters()), average=AveragedModel(model)
        )


def test_without_weight_average_the_checkpoint_exports_the_last_weights(tmp_path: Path) -> None:
    from stages.pretrain.checkpoint import CKPT_AVERAGE
    from stages.pretrain.loop import load_checkpoint_model

    config = _config(1, steps=2)
    model, history = run_in_process(config, _data(32))
    save_checkpoint(
        str(tmp_path), model, torch.optim.AdamW(model.parameters()), {"epoch": 0, "history": history}
    )
    assert not (tmp_path / CKPT_AVERAGE).exists()
    exported, _ = load_checkpoint_model(config, str(tmp_path))
    for a, b in zip(exported.state_dict().values(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

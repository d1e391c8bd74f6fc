"""Device placement in pretraining, checked on the CPU: every tensor a loss, objective or probe
touches follows the model's device, and a resumed optimiser's state lands on the model's device.

There is no GPU here, so a ``TorchFunctionMode`` plays one: the model's parameters and buffers are
tagged as "on the device", tags follow every op's outputs, ``.to(device)`` tags (it would copy to
the GPU), ``.cpu()`` and tensors made from numpy or without ``device=`` are host tensors, and an op
that mixes a device tensor with a host tensor of more than one element fails — as it would on CUDA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stages.common.device import autocast, autocast_dtype, pick_device, to_device
from stages.common.losses import list_losses
from stages.common.schema import PretrainCfg
from stages.pretrain import loop
from stages.pretrain.checkpoint import load_checkpoint, save_checkpoint
from stages.pretrain.loop import build_training, run_in_process
from tests.fake_device import DeviceMismatch, FakeDevice, tag_modules

B = 8


@pytest.fixture
def fake_device(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Runs the loop with the model, the loss and the optimiser tagged as on the device."""
    real = loop.build_training
    mode = FakeDevice(armed=False)

    def build_tagged(config: dict[str, Any], device: torch.device):  # noqa: ANN202
        mode.armed = False  # building and moving the model is where tensors legitimately change place
        model, loss_fn, optim = real(config, device)
        tag_modules(model, loss_fn)
        mode.armed = True
        return model, loss_fn, optim

    monkeypatch.setattr(loop, "build_training", build_tagged)
    with mode:
        yield


def _ts_config(loss: str, **options: Any) -> dict:
    pre = PretrainCfg(
        loss=loss,
        loss_options=options,
        epochs=1,
        batch_size=B,
        temperature=0.2,
        head={"hidden_dim": 16, "out_dim": 8},
        online_knn_rows=0,
    ).model_dump()
    return {
        "domain": "timeseries",
        "encoder": {"in_channels": 1, "hidden_dim": 8, "out_dim": 16, "depth": 2},
        "pretrain": pre,
        "policy": {"name": "default", "params": {}},
        "local_batch": B,
        "steps_per_epoch": 2,
    }


def _ts_data(n: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((1, 40)).astype(np.float32) for _ in range(n)]


#: loss options that keep each loss small or that it needs
OPTIONS: dict[str, dict] = {"moco": {"queue_size": 32}, "swav": {"n_prototypes": 8}}


def test_the_fake_device_catches_cpu_inputs_to_a_device_model() -> None:
    """The check can fail: the bug it guards against (momentum targets fed host inputs) trips it."""
    model, loss_fn, _ = build_training(_ts_config("byol"), torch.device("cpu"))
    tag_modules(model, loss_fn)
    x = torch.randn(2 * B, 1, 40)
    with FakeDevice():
        _, z = model(to_device(x, torch.device("cpu")))
        with pytest.raises(DeviceMismatch):
            loss_fn(z[:B], z[B:], inputs=x)  # host inputs, as the loop passed before


@pytest.mark.parametrize("loss", sorted(set(list_losses()) - {"infonce"}))
def test_every_registry_loss_trains_on_the_model_device(loss: str, fake_device: None) -> None:
    options = OPTIONS.get(loss, {})
    from stages.common.losses import loss_option_names

    options = {k: v for k, v in options.items() if k in loss_option_names(loss)}
    _, history = run_in_process(_ts_config(loss, **options), _ts_data())
    assert np.isfinite(history[-1]["loss"])


def test_ts2vec_objective_trains_on_the_model_device(fake_device: None) -> None:
    _, history = run_in_process(_ts_config("ts2vec"), _ts_data())
    assert np.isfinite(history[-1]["loss"])


def _rl_config(loss: str) -> dict:
    return {
        "domain": "rl",
        "encoder": {"in_channels": 3, "image_size": 24, "num_layers": 2, "num_filters": 4, "feature_dim": 8},
        "pretrain": PretrainCfg(loss=loss, epochs=1, batch_size=B, online_knn_rows=0).model_dump(),
        "policy": {"name": "drq", "params": {}},
        "local_batch": B,
        "steps_per_epoch": 2,
    }


def _rl_data(n: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random((2, 3, 24, 24), dtype=np.float32) for _ in range(n)]


def _knn_probe(xs: list[np.ndarray]) -> dict:
    """The online k-NN probe's bank and queries: the first half of ``xs`` and the second."""
    half = len(xs) // 2
    return {
        "bank_x": xs[:half],
        "bank_y": [i % 2 for i in range(half)],
        "query_x": xs[half:],
        "query_y": [0, 1] * (half // 2),
    }


@pytest.mark.parametrize("loss", ["curl", "atc"])
def test_rl_objectives_train_on_the_model_device(loss: str, fake_device: None) -> None:
    _, history = run_in_process(_rl_config(loss), _rl_data())
    assert np.isfinite(history[-1]["loss"])


def test_online_knn_probe_runs_on_the_model_device(fake_device: None) -> None:
    xs = _ts_data(16)
    _, history = run_in_process({**_ts_config("ntxent"), "online_knn": _knn_probe(xs)}, xs)
    assert 0.0 <= history[-1]["online_knn"] <= 1.0


@pytest.mark.parametrize("loss", ["moco", "byol"])
def test_resume_restores_optimizer_state_on_the_model_device(
    loss: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint written by a CPU run, restored into a model already on another device (``meta``
    stands in for a GPU): Adam's moments and the loss's state follow the model, read weights-only."""
    config = _ts_config(loss, **OPTIONS.get(loss, {}))
    model, loss_fn, optim = build_training(config, torch.device("cpu"))
    x = torch.randn(2 * B, 1, 40)
    _, z = model(x)
    loss_fn(z[:B], z[B:], inputs=x).backward()
    optim.step()
    save_checkpoint(str(tmp_path), model, optim, {"epoch": 0, "history": []}, loss_fn)

    loads: list[dict] = []
    real_load = torch.load

    def recording_load(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        loads.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    meta = torch.device("meta")
    model2, loss2, optim2 = build_training(config, meta)
    load_checkpoint(str(tmp_path), model2, optim2, loss2)
    assert loads and all(kw.get("weights_only") is True for kw in loads)
    states = [s for s in optim2.state.values() if s]
    assert states, "the optimiser state was not restored"
    for s in states:
        assert s["exp_avg"].device == meta and s["exp_avg_sq"].device == meta
    assert all(t.device == meta for t in loss2.state_dict().values())
    assert all(p.device == meta for p in model2.parameters())


def test_bf16_autocasts_on_cuda_only() -> None:
    assert autocast_dtype("bf16", torch.device("cuda", 0)) == torch.bfloat16
    assert autocast_dtype("bf16", torch.device("cpu")) is None
    assert autocast_dtype("fp32", torch.device("cuda", 0)) is None
    with autocast("bf16", torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_bf16_on_cpu_trains_in_fp32_and_says_so(capsys: pytest.CaptureFixture) -> None:
    config = _ts_config("ntxent")
    config["pretrain"]["precision"] = "bf16"
    _, history = run_in_process(config, _ts_data())
    assert np.isfinite(history[-1]["loss"])
    assert "precision=bf16 runs as fp32 on cpu" in capsys.readouterr().out


def test_pick_device_falls_back_to_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device(True) == torch.device("cpu")
    assert pick_device(False) == torch.device("cpu")


def test_to_device_walks_nested_batches() -> None:
    meta = torch.device("meta")
    out = to_device([torch.ones(2), (torch.zeros(1), {"a": torch.ones(3)}), "label"], meta)
    assert out[0].device == meta and out[1][0].device == meta and out[1][1]["a"].device == meta
    assert out[2] == "label"


def test_use_gpu_without_gpus_fails_in_one_line_on_a_local_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from stages.common.cli import StageError
    from stages.common.schema import RayCfg
    from stages.pretrain.__main__ import check_gpus

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0})
    with pytest.raises(StageError, match=r"ray\.use_gpu=true needs 2 GPU\(s\).*the cluster has 0"):
        check_gpus(RayCfg(use_gpu=True, num_workers=2), 2)
    check_gpus(RayCfg(use_gpu=False, num_workers=2), 2)  # CPU training: nothing to check
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0, "GPU": 2.0})
    check_gpus(RayCfg(use_gpu=True, num_workers=2), 2)


def test_use_gpu_asks_ray_train_for_one_gpu_per_worker(tmp_path: Path) -> None:
    from stages.common.schema import RayCfg
    from stages.pretrain.__main__ import make_trainer

    trainer = make_trainer(
        {"world_size": 2}, {}, RayCfg(use_gpu=True, num_workers=2, cpus_per_worker=2), str(tmp_path), "t"
    )
    scaling = trainer.scaling_config
    assert scaling.use_gpu and scaling.num_workers == 2
    assert scaling._resources_per_worker_not_none == {"CPU": 2, "GPU": 1}


def test_embed_follows_the_encoder_device() -> None:
    """Evaluation's feature extraction moves each batch to the encoder's device."""
    from stages.common.encoders import embed

    model, _, _ = build_training(_ts_config("ntxent"), torch.device("cpu"))
    tag_modules(model.encoder)
    with FakeDevice():
        h = embed(model.encoder, "timeseries", _ts_data(5), batch_size=2)
    assert h.shape == (5, model.encoder.embedding_dim)

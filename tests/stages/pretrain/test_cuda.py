"""Pretraining on a real CUDA device: the checks of ``test_device.py`` without the stand-in.

These run where a GPU is visible and are skipped elsewhere (CI has none). On this project's GPU
checks they run with ``python -m pytest tests/stages/pretrain/test_cuda.py`` beside
``bench/gpu_smoke.py``; on the CPU, ``test_device.py``'s fake device guards the same placement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stages.common.device import autocast
from stages.common.losses import list_losses, loss_option_names
from stages.pretrain.checkpoint import load_checkpoint, save_checkpoint
from stages.pretrain.loop import build_training, run_in_process
from tests.stages.pretrain.test_device import (
    OPTIONS,
    B,
    _knn_probe,
    _rl_config,
    _rl_data,
    _ts_config,
    _ts_data,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda", 0)


def _on_cuda(config: dict[str, Any], precision: str = "fp32") -> dict[str, Any]:
    config = {**config, "device": "cuda"}
    config["pretrain"] = {**config["pretrain"], "precision": precision}
    return config


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("loss", sorted(set(list_losses()) - {"infonce"}))
def test_every_registry_loss_trains_on_cuda(loss: str, precision: str) -> None:
    options = {k: v for k, v in OPTIONS.get(loss, {}).items() if k in loss_option_names(loss)}
    model, history = run_in_process(_on_cuda(_ts_config(loss, **options), precision), _ts_data())
    assert np.isfinite(history[-1]["loss"])
    assert all(p.device.type == "cuda" for p in model.parameters())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_ts2vec_objective_trains_on_cuda(precision: str) -> None:
    _, history = run_in_process(_on_cuda(_ts_config("ts2vec"), precision), _ts_data())
    assert np.isfinite(history[-1]["loss"])


@pytest.mark.parametrize("loss", ["curl", "atc"])
def test_rl_objectives_train_on_cuda(loss: str) -> None:
    _, history = run_in_process(_on_cuda(_rl_config(loss), "bf16"), _rl_data())
    assert np.isfinite(history[-1]["loss"])


def test_online_knn_probe_runs_on_cuda() -> None:
    xs = _ts_data(16)
    _, history = run_in_process({**_on_cuda(_ts_config("ntxent")), "online_knn": _knn_probe(xs)}, xs)
    assert 0.0 <= history[-1]["online_knn"] <= 1.0


@pytest.mark.parametrize("saved_on", ["cpu", "cuda"])
@pytest.mark.parametrize("loss", ["moco", "byol"])
def test_resume_restores_optimizer_state_on_cuda(loss: str, saved_on: str, tmp_path: Path) -> None:
    config = _ts_config(loss, **OPTIONS.get(loss, {}))
    device = torch.device(saved_on)
    model, loss_fn, optim = build_training(config, device)
    x = torch.randn(2 * B, 1, 40, device=device)
    _, z = model(x)
    loss_fn(z[:B], z[B:], inputs=x).backward()
    optim.step()
    save_checkpoint(str(tmp_path), model, optim, {"epoch": 0, "history": []}, loss_fn)

    model2, loss2, optim2 = build_training(config, CUDA)
    load_checkpoint(str(tmp_path), model2, optim2, loss2)
    states = [s for s in optim2.state.values() if s]
    assert states and all(s["exp_avg"].is_cuda and s["exp_avg_sq"].is_cuda for s in states)
    assert all(t.is_cuda for t in loss2.state_dict().values())
    # one more step after the resume: a state left on the host would fail here
    _, z = model2(x.to(CUDA))
    loss2(z[:B], z[B:], inputs=x.to(CUDA)).backward()
    optim2.step()


def test_bf16_autocast_runs_matmuls_in_bf16_on_cuda() -> None:
    a = torch.ones(4, 4, device=CUDA)
    with autocast("bf16", CUDA):
        assert (a @ a).dtype == torch.bfloat16
    with autocast("fp32", CUDA):
        assert (a @ a).dtype == torch.float32


def test_embed_runs_on_the_encoder_device() -> None:
    from stages.common.encoders import embed

    model, _, _ = build_training(_ts_config("ntxent"), CUDA)
    h = embed(model.encoder, "timeseries", _ts_data(5), batch_size=2)
    assert h.shape == (5, model.encoder.embedding_dim) and np.isfinite(h).all()


def test_multiworker_model_gets_global_batchnorm_on_cuda() -> None:
    """What each worker of a two-GPU run builds: SyncBatchNorm in the model and BYOL's predictor."""
    config = {**_ts_config("byol"), "world_size": 2}
    model, loss_fn, _ = build_training(config, CUDA)
    kinds = {
        type(m)
        for m in [*model.modules(), *loss_fn.modules()]
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    }
    assert kinds == {torch.nn.SyncBatchNorm}
    h, z = model(torch.randn(2 * B, 1, 40, device=CUDA))  # outside a process group: local statistics
    assert z.is_cuda and torch.isfinite(z).all()

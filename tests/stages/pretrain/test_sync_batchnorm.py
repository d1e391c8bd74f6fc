"""Global BatchNorm under DDP: ``pretrain.sync_batchnorm`` turns the model's BatchNorm layers into
``torch.nn.SyncBatchNorm`` for multi-worker runs on an accelerator, before the momentum target and
the optimiser take the model, and the weights keep loading into the plain model."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from stages.common.schema import PretrainCfg
from stages.pretrain import loop
from tests.stages.pretrain.test_device import _ts_config, _ts_data

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def _config(loss: str = "ntxent", world_size: int = 2, **pretrain: object) -> dict:
    config = _ts_config(loss)  # the projection head is Linear-BatchNorm-ReLU-Linear
    config["pretrain"] = {**config["pretrain"], **pretrain}
    return {**config, "world_size": world_size}


def _batchnorms(module: torch.nn.Module) -> list[type]:
    return [type(m) for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize(
    ("enabled", "device", "world", "want"),
    [
        (True, CUDA, 2, True),
        (True, CUDA, 1, False),  # one worker already sees the whole batch
        (True, CPU, 2, False),  # torch's SyncBatchNorm refuses CPU tensors in a process group
        (False, CUDA, 4, False),
    ],
)
def test_sync_only_with_several_workers_on_an_accelerator(
    enabled: bool, device: torch.device, world: int, want: bool
) -> None:
    assert loop.sync_batchnorm(PretrainCfg(sync_batchnorm=enabled), device, world) is want


def test_cpu_multiworker_runs_keep_plain_batchnorm() -> None:
    model, _, _ = loop.build_training(_config(world_size=2), CPU)
    assert _batchnorms(model) and set(_batchnorms(model)) == {torch.nn.BatchNorm1d}


@pytest.mark.parametrize("loss", ["ntxent", "byol"])
def test_converted_model_trains_and_exports_plain_weights(loss: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # what a two-GPU worker builds, here on the CPU: outside a process group SyncBatchNorm
    # normalises locally, so the loop's steps run
    monkeypatch.setattr(loop, "sync_batchnorm", lambda cfg, device, world: True)
    model, loss_fn, optim = loop.build_training(_config(loss), CPU)
    assert set(_batchnorms(model)) == {torch.nn.SyncBatchNorm}
    if loss == "byol":  # the momentum target is a copy of the converted model
        assert set(_batchnorms(loss_fn)) == {torch.nn.SyncBatchNorm}
    optimised = {id(p) for group in optim.param_groups for p in group["params"]}
    assert {id(p) for p in model.parameters()} <= optimised  # the new layers' parameters train

    trained, history = loop.run_in_process(_config(loss), _ts_data())
    assert set(_batchnorms(trained)) == {torch.nn.SyncBatchNorm} and np.isfinite(history[-1]["loss"])
    bn = next(m for m in trained.modules() if isinstance(m, torch.nn.SyncBatchNorm))
    assert not torch.equal(bn.weight, torch.ones_like(bn.weight))  # its affine weights were stepped
    # a checkpoint of the converted model loads into the plain one (the driver's export, a resume)
    buf = io.BytesIO()
    torch.save(trained.state_dict(), buf)
    plain = loop.build_model(_config(loss))
    plain.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    plain_bn = next(m for m in plain.modules() if isinstance(m, torch.nn.BatchNorm1d))
    assert torch.equal(plain_bn.running_mean, bn.running_mean)

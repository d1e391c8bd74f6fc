"""AutoTCL (``pretrain.loss: autotcl``): trains in the pretrain loop, its mask stays informative, the
reversed gradient makes the augmenter adversarial, its state checkpoints, and the recipe runs on Ray."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from domains.timeseries.autotcl import AutoTCLObjective, reverse_grad
from domains.timeseries.encoders import TS2VecEncoder
from stages.common.schema import PretrainCfg
from stages.pretrain.checkpoint import save_checkpoint
from stages.pretrain.loop import build_model, load_checkpoint_model, run_in_process
from tests.e2e import TinyRun

RECIPE = "timeseries-arrowhead-autotcl"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny tensors: more intra-op threads only oversubscribe a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(epochs: int = 4, steps: int = 4) -> dict:
    pre = PretrainCfg(epochs=epochs, batch_size=8, lr=3e-3, loss="autotcl").model_dump()
    return {
        "domain": "timeseries",
        "encoder": {"in_channels": 1, "hidden_dim": 16, "out_dim": 32, "depth": 3},
        "pretrain": pre,
        "policy": {"name": "default", "params": {}},
        "local_batch": 8,
        "steps_per_epoch": steps,
    }


def _data(n: int = 64, length: int = 48) -> list[np.ndarray]:
    """Sines of 4 frequencies with random phase and a little noise; lengths vary a bit."""
    rng = np.random.default_rng(0)
    xs = []
    for i in range(n):
        t = np.linspace(0, 1, length - i % 3, dtype=np.float32)
        x = np.sin(2 * np.pi * (1 + i % 4) * t + rng.uniform(0, 6)) + 0.05 * rng.normal(size=t.shape)
        xs.append(x[None].astype(np.float32))
    return xs


def _gate_mean(obj: AutoTCLObjective, xs: list[np.ndarray], train: bool) -> float:
    n = min(x.shape[-1] for x in xs)
    x = torch.as_tensor(np.stack([x[..., :n] for x in xs]))
    obj.train(train)
    with torch.no_grad():
        return float(obj.augment(x)[1].mean())


def test_loop_trains_autotcl_and_its_mask_neither_erases_nor_keeps_everything() -> None:
    config = _config()
    initial = {k: v.clone() for k, v in build_model(config).head.state_dict().items()}
    xs = _data(32, 40)
    model, history = run_in_process(config, xs)
    obj = model.head
    assert isinstance(obj, AutoTCLObjective)
    assert len(history) == 4 and all(np.isfinite(h["loss"]) for h in history)
    # the augmenter is part of the model: trained by the one optimiser, and in its state_dict
    trained = obj.state_dict()
    assert set(trained) == set(initial) and all(k.startswith("augmenter.") for k in trained)
    changed = [k for k in trained if not torch.equal(trained[k], initial[k])]
    assert len(changed) >= len(trained) // 2, f"augmenter barely trained: {changed}"
    # the encoder is not registered twice (it is bound by reference only)
    assert not any(k.startswith("head._encoder") for k in model.state_dict())
    for train in (True, False):
        assert 0.05 < _gate_mean(obj, xs, train) < 0.95


def _fixed_batch() -> tuple[AutoTCLObjective, TS2VecEncoder, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    encoder = TS2VecEncoder(1, hidden_dim=16, out_dim=32, depth=3).eval()  # deterministic: no dropout
    obj = AutoTCLObjective(noise_std=0.05)
    obj.bind(encoder)
    x = torch.as_tensor(np.stack([x[..., :38] for x in _data(16, 40)]))
    hx, _ = encoder.forward_timestamps(x)
    return obj, encoder, x, hx


def _contrast(obj: AutoTCLObjective, encoder: TS2VecEncoder, x: torch.Tensor) -> float:
    torch.manual_seed(123)  # the same gate and noise samples for every evaluation
    with torch.no_grad():
        hx, _ = encoder.forward_timestamps(x)
        return float(obj.contrast(hx, x, reverse=False)[0])


def _step(params: list[torch.nn.Parameter], lr: float) -> None:
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad


@pytest.mark.parametrize("part", ["augmenter", "encoder"])
def test_one_step_of_the_reversed_gradient_is_adversarial(part: str) -> None:
    """One SGD step on the objective's full loss (contrast + regulariser): the augmenter's step must
    not decrease the contrastive loss (it ascends it), the encoder's step must decrease it."""
    obj, encoder, x, hx = _fixed_batch()
    before = _contrast(obj, encoder, x)
    torch.manual_seed(123)
    loss = obj.loss(hx, hx[:0], x.shape[-1], x.numpy())
    loss.backward()
    params = list((obj if part == "augmenter" else encoder).parameters())
    assert all(p.grad is not None for p in params)
    _step(params, lr=0.05)
    after = _contrast(obj, encoder, x)
    if part == "augmenter":
        assert after > before + 1e-4, (before, after)
    else:
        assert after < before - 1e-4, (before, after)


def test_without_the_reversal_the_augmenter_step_would_help_the_encoder() -> None:
    """The control for the test above: the same step on the plain (unreversed) contrastive gradient
    lowers the loss, so it is the reversal that makes the augmenter adversarial."""
    obj, encoder, x, hx = _fixed_batch()
    before = _contrast(obj, encoder, x)
    torch.manual_seed(123)
    obj.contrast(hx, x, reverse=False)[0].backward()
    _step(list(obj.parameters()), lr=0.05)
    assert _contrast(obj, encoder, x) < before - 1e-4


def test_reverse_grad_is_identity_forward_and_negates_backward() -> None:
    x = torch.randn(5, requires_grad=True)
    y = reverse_grad(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.arange(5.0)).sum().backward()
    assert torch.allclose(x.grad, -0.5 * torch.arange(5.0))


def test_checkpoint_round_trip_restores_the_augmenter(tmp_path: Path) -> None:
    config = _config(epochs=1, steps=2)
    model, _ = run_in_process(config, _data(32))
    optim = torch.optim.AdamW(model.parameters())
    save_checkpoint(str(tmp_path), model, optim, {"epoch": 0, "history": []})
    loaded, state = load_checkpoint_model(config, str(tmp_path))
    assert state["epoch"] == 0
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # the restored objective makes the same (eval-mode, deterministic) views with the same encoder
    x = torch.as_tensor(np.stack([x[..., :46] for x in _data(8)]))
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model.head.augment(x)[0], loaded.head.augment(x)[0])
        assert loaded.head._encoder[0] is loaded.encoder


@pytest.mark.e2e
def test_tiny_recipe_pretrains_on_two_ray_workers(run_tiny: Callable[..., TinyRun]) -> None:
    # Only up to pretraining: the augmenter's view is encoded outside the DDP forward, which is what
    # needs a real 2-worker run; fine-tuning and evaluation are the time-series domain's own tests.
    run = run_tiny(RECIPE, stages=("ingest", "curate", "views", "pretrain"), timeout=600)
    pretrain = run.metrics("pretrain")
    assert pretrain["epochs"] == 2 and np.isfinite(pretrain["final_loss"])
    assert run.path("models/{name}/pretrained/encoder.safetensors").exists()

"""Every registered loss is selectable by name in a recipe, with its options validated on load,
and trains inside the real pretraining loop (momentum losses included, with their state checkpointed)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.common.config import ConfigError, load_recipe
from stages.common.losses import build_loss, list_losses, loss_option_names
from stages.common.losses.momentum import BYOLLoss
from stages.pretrain.checkpoint import load_checkpoint, save_checkpoint
from stages.pretrain.loop import build_model, run_in_process

REPO = Path(__file__).resolve().parents[3]
RECIPE = REPO / "pipelines" / "timeseries-gunpoint.yaml"


def _load(*overrides: str):  # noqa: ANN202 - a Recipe
    return load_recipe(RECIPE, REPO / "params.yaml", list(overrides))


def test_recipe_selects_a_loss_with_typed_options() -> None:
    recipe = _load(
        "pretrain.loss=mochi",
        "pretrain.loss_options.n_hard=4",
        "pretrain.loss_options.n_mix=8",
        "pretrain.temperature=0.3",
    )
    loss = build_loss(recipe.pretrain.loss, recipe.pretrain.temperature, recipe.pretrain.loss_options)
    assert (type(loss).__name__, loss.n_hard, loss.n_mix, loss.temperature) == (
        "MoCHiLoss",
        4,
        8,
        recipe.pretrain.temperature,
    )


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["pretrain.loss=mochi", "pretrain.loss_options.nhard=4"], "pretrain.loss_options.nhard"),
        (["pretrain.loss=dclw", "pretrain.loss_options.sigma=wide"], "pretrain.loss_options.sigma"),
        (["pretrain.loss=dcl", "pretrain.loss_options.temperature=0.5"], "pretrain.loss_options.temperature"),
        (["pretrain.loss=byol", "pretrain.loss_options.dim=4"], "pretrain.loss_options.dim"),
        (["pretrain.loss=ntxent_individual", "pretrain.loss_options.alpha=2"], "pretrain.loss_options"),
    ],
)
def test_bad_loss_option_is_one_line_naming_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(*overrides)
    msg = str(err.value)
    assert f": {key}" in msg and "\n" not in msg


def test_unknown_option_message_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known: alpha, gather_distributed"):
        _load("pretrain.loss=ntxent_individual", "pretrain.loss_options.beta=1")


def test_every_loss_documents_its_paper_and_cross_worker_behaviour() -> None:
    for name in list_losses():
        doc = build_loss(name, 0.1).__class__.__doc__ or ""
        assert "20" in doc, f"{name}: no paper year in the docstring"
        assert "across workers" in doc.lower(), f"{name}: no cross-worker behaviour documented"
        assert isinstance(loss_option_names(name), list)


def _config(loss: str, epochs: int = 1) -> dict:
    recipe = _load(
        f"pretrain.loss={loss}",
        f"pretrain.epochs={epochs}",
        "pretrain.head={hidden_dim: 16, out_dim: 8}",
    )
    return {
        "domain": "timeseries",
        "encoder": {"in_channels": 1, "hidden_dim": 8, "out_dim": 16, "depth": 2},
        "pretrain": recipe.pretrain.model_dump(),
        "policy": {"name": "default", "params": {}},
        "local_batch": 8,
        "steps_per_epoch": 2,
    }


def _data(n: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((1, 32)).astype(np.float32) for _ in range(n)]


def test_supcon_in_a_recipe_is_refused_because_pretraining_has_no_labels() -> None:
    with pytest.raises(ConfigError, match="pretrain.loss: 'supcon' needs labels"):
        _load("pretrain.loss=supcon")


@pytest.mark.parametrize("loss", sorted(set(list_losses()) - {"infonce", "supcon"}))
def test_every_loss_trains_in_the_pretraining_loop(loss: str) -> None:
    model, history = run_in_process(_config(loss), _data())
    assert len(history) == 1 and np.isfinite(history[0]["loss"])


def test_momentum_loss_state_survives_a_checkpoint(tmp_path: Path) -> None:
    config = _config("byol")
    model = build_model(config)
    loss = BYOLLoss(predictor_hidden_dim=8)
    loss.attach(model)
    params = list(model.parameters()) + [p for p in loss.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in loss.target.parameters():
            p.add_(0.5)  # the target is no longer a copy of the model
    save_checkpoint(str(tmp_path), model, torch.optim.AdamW(params), {"epoch": 0, "history": []}, loss)

    fresh_model = build_model(config)
    fresh = BYOLLoss(predictor_hidden_dim=8)
    fresh.attach(fresh_model)
    fresh_params = list(fresh_model.parameters()) + [p for p in fresh.parameters() if p.requires_grad]
    load_checkpoint(str(tmp_path), fresh_model, torch.optim.AdamW(fresh_params), fresh)
    for a, b in zip(loss.state_dict().values(), fresh.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))


def test_domain_objective_options_reach_the_objective() -> None:
    """pretrain.loss_options configure a domain objective (here AutoTCL) like a registry loss."""
    recipe = _load(
        "pretrain.loss=autotcl",
        "pretrain.loss_options.keep_ratio=0.5",
        "pretrain.loss_options.aug_depth=3",
        "pretrain.loss_options.max_train_length=null",
    )
    config = {
        "domain": recipe.domain,
        "encoder": {**recipe.encoder, "in_channels": 1},
        "pretrain": recipe.pretrain.model_dump(),
    }
    head = build_model(config).head
    assert (type(head).__name__, head.keep_ratio, head.aug_depth, head.max_train_length) == (
        "AutoTCLObjective",
        0.5,
        3,
        None,
    )


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["pretrain.loss=autotcl", "pretrain.loss_options.keep=0.5"], "pretrain.loss_options.keep"),
        (
            ["pretrain.loss=autotcl", "pretrain.loss_options.aug_depth=deep"],
            "pretrain.loss_options.aug_depth",
        ),
        (
            ["pretrain.loss=ts2vec", "pretrain.loss_options.temperature=0.5"],
            "pretrain.loss_options.temperature",
        ),
    ],
)
def test_bad_objective_option_is_one_line_naming_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(*overrides)
    msg = str(err.value)
    assert f": {key}" in msg and "\n" not in msg

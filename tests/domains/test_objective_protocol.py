"""Domain objectives and registry losses are read through typed protocols, not duck typing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from domains import get_domain
from domains.base import (
    LossCapabilities,
    Objective,
    SteppedObjective,
    TrainableObjective,
    check_objective,
)
from stages.common.losses import build_loss


@pytest.mark.parametrize(
    ("domain", "name"),
    [
        ("timeseries", "ts2vec"),
        ("timeseries", "autotcl"),
        ("rl", "curl"),
        ("rl", "atc"),
        ("medical", "ssl_recon"),
    ],
)
def test_every_domain_objective_satisfies_the_protocol(domain: str, name: str) -> None:
    obj = check_objective(name, get_domain(domain).objectives()[name]())
    assert isinstance(obj, Objective)
    # an objective with parameters is the model's head: it must say how to bind to the encoder
    assert isinstance(obj, TrainableObjective) == isinstance(obj, nn.Module)
    assert isinstance(obj, SteppedObjective) == (domain == "rl")  # CURL/ATC update an EMA target


def test_a_broken_objective_is_one_line_naming_the_recipe_key() -> None:
    class Half:
        def make_views(self, batch: list[np.ndarray], rng: np.random.Generator) -> tuple:
            return batch, batch, None

    with pytest.raises(
        TypeError, match=r"^pretrain.loss=half: the domain objective Half lacks loss, instance_embeddings$"
    ):
        check_objective("half", Half())

    class NoBind(nn.Module):
        def make_views(self, batch, rng): ...  # noqa: ANN001, ANN202
        def loss(self, h1, h2, length, ctx): ...  # noqa: ANN001, ANN202
        def instance_embeddings(self, reps, batch, length, ctx): ...  # noqa: ANN001, ANN202

    with pytest.raises(TypeError, match="lacks bind"):
        check_objective("nobind", NoBind())


@pytest.mark.parametrize(
    ("loss", "caps"),
    [
        ("ntxent", LossCapabilities()),
        ("byol", LossCapabilities(needs_inputs=True)),
        ("moco", LossCapabilities(needs_inputs=True)),
        ("swav", LossCapabilities(multi_view=True)),
    ],
)
def test_loss_capabilities_are_declared_by_the_losses(loss: str, caps: LossCapabilities) -> None:
    torch.manual_seed(0)
    assert LossCapabilities.of(build_loss(loss, 0.1)) == caps

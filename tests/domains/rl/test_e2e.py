"""The RL recipe end to end at the `tiny` scale on the shared Ray instance: rollouts collected as Ray
tasks, ATC pretraining under Ray Train, and the state-probe evaluation in the report."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e import TinyRun

pytestmark = pytest.mark.e2e
RECIPE = "rl-cartpole"


def test_tiny_recipe_collects_pretrains_and_probes_state(run_tiny: Callable[..., TinyRun]) -> None:
    # (run_tiny also checks that every output DVC declares exists: fine-tuning has nothing to do for
    # RL, but DVC still needs its outputs)
    run = run_tiny(RECIPE)
    ingest = run.metrics("ingest")
    assert ingest["units"] == 2 and ingest["rows"] > 50 and ingest["rejected"] == 0
    probe = run.evaluation["domain"]["state_probe"]
    for name in ("pretrained", "random_init", "supervised", "raw_pixels"):
        r2 = probe[name]["r2"]
        assert set(r2) == {"x", "x_dot", "theta", "theta_dot", "reward"}
        assert r2["reward"] is None  # CartPole's reward is constant: no R²
        assert all(v is None or v <= 1.0 for v in r2.values())
    # the cart's position is plainly visible: the raw-pixel probe must find it even at tiny scale
    assert probe["raw_pixels"]["r2"]["x"] > 0.5
    assert "svm" not in run.evaluation  # no classification probes for the RL domain
    assert "State probe" in run.report and "theta_dot" in run.report
    assert run.path("models/{name}/pretrained/encoder.safetensors").exists()

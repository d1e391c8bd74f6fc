"""The audio-digits recipe end to end at the `tiny` scale, on the shared Ray instance."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from domains.audio.readers import asterisk_voices
from tests.conftest import requires_data
from tests.e2e import TinyRun

pytestmark = [
    pytest.mark.e2e,
    requires_data(
        len(asterisk_voices()) >= 2, reason="real-speech evaluation data missing: make system-deps (Asterisk)"
    ),
]
RECIPE = "audio-digits"


def test_tiny_recipe_pretrains_and_reports_on_real_speakers(run_tiny: Callable[..., TinyRun]) -> None:
    run = run_tiny(RECIPE)
    ingest = run.metrics("ingest")
    assert ingest["rows"] == 40 + 60 and ingest["rejected"] == 0  # 2 languages x 2 voices x 10 + Asterisk
    ev = run.evaluation
    # the probes are fit on real training speakers only and scored on the two held-out speakers
    assert ev["n_train"] == 40 and ev["n_test"] == 20 and ev["n_classes"] == 10
    for enc in ("pretrained", "random_init"):
        assert 0.0 <= ev[enc]["linear"] <= 1.0
    assert 0.0 <= ev["supervised"]["accuracy"] <= 1.0
    dom = ev["domain"]
    assert dom["test_speakers"] == ["Carlo", "June"] and len(dom["speakers"]) == 5
    assert set(dom["loso"]) == {"mfcc_logreg", "pretrained", "random_init"}
    assert set(dom["split"]["mfcc_logreg"]["per_speaker"]) == {"Carlo", "June"}
    assert "Speech digits on real speakers" in run.report and "Frozen-feature probes" in run.report
    assert run.path("models/{name}/pretrained/encoder.safetensors").exists()

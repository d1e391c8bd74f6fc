"""The UCR cost estimate times the recipe's real step and adds windows only where they bite."""

from __future__ import annotations

import numpy as np
import pytest

from bench import ucr_archive as ua
from bench import ucr_cost


def _rows(n: int, length: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((1, length)).astype(np.float32), "split": "train"} for _ in range(n)]


def test_a_window_is_timed_only_on_sets_it_cuts_and_totals_fall_back_to_the_recipes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ua, "load_set", lambda name: _rows(12, {"Short": 40, "Long": 300}[name]))
    monkeypatch.setattr(
        ucr_cost, "step_seconds", lambda xs, batch, window, steps: min(window, xs[0].shape[1]) / 1000
    )
    rows = ucr_cost.measure(["Short", "Long"], [3000, 100], steps=1)
    short, long_ = rows
    assert "step_s@100" not in short and short["step_s@3000"] == 0.04  # 40 steps: a 100 cap is a no-op
    assert long_["step_s@100"] == 0.1 and long_["step_s@3000"] == 0.3
    assert short["iterations"] == 200 and short["pretrain_s@3000"] == 8.0  # 200 × 0.04 s
    tot = ucr_cost.totals(rows, [3000, 100], 3000)
    assert tot == {3000: pytest.approx(68.0), 100: pytest.approx(28.0)}
    text = ucr_cost.report(rows, [3000, 100], 3000)
    assert "| 3000 (the recipe) | 0.02 h |" in text and "| Long | 12 | 300 | 200 | 0.3 | 0.1 |" in text


def test_the_step_is_the_recipes_real_training_step() -> None:
    xs = [r["x"] for r in _rows(8, 64)]
    assert 0 < ucr_cost.step_seconds(xs, batch=4, window=32, steps=1) < 30

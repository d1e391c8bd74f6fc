"""The one view-policy engine (domains/views.py) behind all five domains' view policies."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from domains.base import ViewPolicy
from domains.views import PolicyError, UnknownParameter, UnknownPolicy, ViewEngine

DOMAINS = ("timeseries", "audio", "medical", "pointcloud", "rl")


def _engine(domain: str) -> ViewEngine:
    return importlib.import_module(f"domains.{domain}.views").ENGINE


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_domain_uses_the_engine_and_its_named_policies_validate(domain: str) -> None:
    engine = _engine(domain)
    assert isinstance(engine, ViewEngine) and engine.policies
    for name in engine.policies:
        assert engine.resolve(name) == engine.policies[name]
    # the parameters a recipe may set are the step function's (or MONAI constructor's) own
    for step in engine.steps:
        assert "p" not in engine.parameters(step) and "rng" not in engine.parameters(step)


@pytest.mark.parametrize("domain", DOMAINS)
def test_bad_policies_fail_with_one_line_naming_the_recipe_key(domain: str) -> None:
    engine = _engine(domain)
    first = next(iter(engine.steps))
    with pytest.raises(UnknownPolicy) as e:
        engine.resolve("nope")
    assert str(e.value).startswith(f"views.policy: unknown {engine.label} view policy 'nope'")
    assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)
    with pytest.raises(UnknownPolicy, match=r"^views\.policy\[1\]: unknown .* augmentation 'warp'; known: "):
        engine.resolve(ViewPolicy("custom", {"steps": [{"name": first}, {"name": "warp"}]}))
    with pytest.raises(
        UnknownParameter, match=rf"^views\.policy\[0\]: {first}: unknown parameter\(s\) \['sigmaa'\]"
    ):
        engine.check([{"name": first, "sigmaa": 1, "p": 0.01}])  # even when p would skip it
    with pytest.raises(PolicyError, match=r"^views\.policy\[0\]\.p: .*p must be in \[0, 1\], got 2"):
        engine.check([{"name": first, "p": 2}])
    for err in (UnknownPolicy, UnknownParameter):
        with pytest.raises(PolicyError) as e:
            engine.check([{"name": "warp"}] if err is UnknownPolicy else [{"name": first, "zz": 0}])
        assert "\n" not in str(e.value) and not str(e.value).startswith("'")


def test_steps_are_applied_in_order_with_probability_and_context() -> None:
    calls: list[tuple[str, dict]] = []

    def add(x: np.ndarray, rng: np.random.Generator, amount: float = 1.0) -> np.ndarray:
        calls.append(("add", {"amount": amount}))
        return x + amount

    def rate(x: np.ndarray, rng: np.random.Generator, sr: int = 0) -> np.ndarray:
        calls.append(("rate", {"sr": sr}))
        return x * sr

    engine = ViewEngine(
        "toy",
        {"add": add, "rate": rate},
        {"both": [{"name": "add", "amount": 2}, {"name": "rate"}]},
        context=("sr",),
    )
    x = np.ones(3, np.float32)
    out = engine.view(x, np.random.default_rng(0), "both", sr=10)
    np.testing.assert_array_equal(out, 30.0)
    assert calls == [("add", {"amount": 2}), ("rate", {"sr": 10})]
    assert engine.parameters("rate") == ()  # a context parameter is not the recipe's to set
    np.testing.assert_array_equal(x, 1.0)  # the input is never written to
    skipped = engine.apply(x, np.random.default_rng(0), [{"name": "add", "p": 0.0}])
    np.testing.assert_array_equal(skipped, x)
    assert not np.shares_memory(skipped, x)
    # seeded: the same generator state gives the same draws of p
    draws = [engine.apply(x, np.random.default_rng(s), [{"name": "add", "p": 0.5}])[0] for s in range(20)]
    assert draws == [
        engine.apply(x, np.random.default_rng(s), [{"name": "add", "p": 0.5}])[0] for s in range(20)
    ]
    assert set(draws) == {1.0, 2.0}


def test_the_views_stage_reports_a_bad_policy_as_one_line(tmp_path) -> None:  # noqa: ANN001
    from stages.views.__main__ import policy_error

    e = UnknownParameter("views.policy[0]: jitter: unknown parameter(s) ['sigmaa']; accepted: ['sigma']")
    assert policy_error(e) == str(e)
    assert (
        policy_error(ValueError("expected a [channels, time] array"))
        == "views.policy: expected a [channels, time] array"
    )

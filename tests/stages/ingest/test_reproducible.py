"""A recipe ingests the same rows every time: bit for bit, whichever order a worker reads its units in.

DVC caches a stage by its outputs' hashes and the payoff benches compare seeds on one data set: a
reader whose output depends on the clock or on what the process read before (espeak-ng did, until
domains/audio/synth.py reloaded and seeded it per unit) changes every later figure between runs.
"""

from __future__ import annotations

import hashlib

import pytest

from domains import get_domain
from stages.common.config import load_recipe, read_yaml
from tests.conftest import REPO

# the demo recipes (params.yaml's `domains:`), at the tests' scale
RECIPES = list(read_yaml(REPO / "params.yaml")["domains"])


def _digests(source, units: list) -> dict[str, str]:  # noqa: ANN001
    out = {}
    for unit in units:
        for row in source.read_unit(unit):
            out[row["id"]] = hashlib.sha1(row["x"].tobytes()).hexdigest()
    return out


@pytest.mark.parametrize("name", RECIPES)
def test_a_recipe_reads_the_same_rows_in_any_unit_order(name: str) -> None:
    recipe = load_recipe(REPO / "pipelines" / f"{name}.yaml", REPO / "params.yaml", ["scale=tiny"])
    source = get_domain(recipe.domain).sources[recipe.data.source]
    try:
        units = list(source.list_units(**recipe.data.options))
    except FileNotFoundError as e:  # data this machine lacks (e.g. the Asterisk prompts): named
        pytest.skip(str(e).splitlines()[0])
    units = units[:6]  # a few units are enough to see carried-over state; keeps the test fast
    forward = _digests(source, units)
    backward = _digests(source, units[::-1])
    assert forward and forward == backward

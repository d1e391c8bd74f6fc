"""Every option-model mistake in a recipe is one line naming the full key, before any work starts.

``data.options``, ``encoder`` and ``evaluate.domain`` are typed per domain (``domains/<d>/options.py``);
before, an encoder typo surfaced as a TypeError inside a Ray worker after three stages, and unknown
``evaluate.domain`` keys were a traceback (point clouds, medical) or silently ignored (the others).
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from domains import get_domain, list_domains
from stages.common.config import ConfigError, load_recipe

REPO = Path(__file__).resolve().parents[2]
DEMO = {
    "timeseries": ("timeseries-gunpoint", "data.options.splits=3"),
    "audio": ("audio-digits", "data.options.sample_rate=fast"),
    "medical": ("medical-brainpatches", "data.options.patch_size=big"),
    "pointcloud": ("pointcloud-sweethome3d", "data.options.points=many"),
    "rl": ("rl-cartpole", "data.options.episodes=many"),
}
MISTAKES = {
    "unknown data.options key": ("data.options.pathz=x", "data.options.pathz: unknown key (known: "),
    "wrong type": (None, None),  # per domain, from DEMO
    "unknown encoder key": ("encoder.hiden_dim=3", "encoder.hiden_dim: unknown key (known: "),
    "unknown encoder": ("encoder.name=transformer9000", "encoder.name: unknown"),
    "unknown evaluate.domain key": ("evaluate.domain.nope=1", "evaluate.domain.nope: unknown key (known: "),
}


@pytest.mark.parametrize("domain", sorted(DEMO))
@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_option_mistake_is_one_line_naming_the_key(domain: str, mistake: str) -> None:
    recipe, wrong_type = DEMO[domain]
    override, expected = MISTAKES[mistake]
    if override is None:
        override, expected = wrong_type, wrong_type.split("=")[0] + ": Input should be"
    with pytest.raises(ConfigError) as err:
        load_recipe(REPO / "pipelines" / f"{recipe}.yaml", REPO / "params.yaml", [override])
    msg = str(err.value)
    assert "\n" not in msg and expected in msg, msg


def test_nested_option_mistakes_name_the_nested_key() -> None:
    cases = {
        "audio-digits": (
            "data.options.synthetic.languagez=[en]",
            "data.options.synthetic.languagez: unknown key",
        ),
        "rl-cartpole": ("evaluate.domain.agent.algo=PPOO", "evaluate.domain.agent.algo: Input should be"),
        "medical-brainpatches": ("data.options.intensity=pet", "data.options.intensity: Input should be"),
    }
    for recipe, (override, expected) in cases.items():
        with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
            load_recipe(REPO / "pipelines" / f"{recipe}.yaml", REPO / "params.yaml", [override])


def configure_cli(recipe: str | Path, *sets: str) -> tuple[int, list[str]]:
    """``python -m pipelines.configure`` as a user runs it: its exit code and stderr lines."""
    argv = [sys.executable, "-m", "pipelines.configure", "--recipe", str(recipe)]
    for s in sets:
        argv += ["--set", s]
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    return out.returncode, out.stderr.strip().splitlines()


def test_a_mistake_through_the_real_cli_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, lines = configure_cli(
        "pipelines/timeseries-gunpoint.yaml", "encoder.hiden_dim=3", f"paths.data={tmp_path}"
    )
    assert code == 2
    assert len(lines) == 1 and "encoder.hiden_dim: unknown key (known: " in lines[0], lines
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_mistyped_params_path_is_an_error_not_the_defaults() -> None:
    with pytest.raises(ConfigError, match="--params .*paramz.yaml: file not found"):
        load_recipe(REPO / "pipelines/timeseries-gunpoint.yaml", REPO / "paramz.yaml")


@pytest.mark.parametrize("name", list_domains())
def test_source_models_are_the_readers_signatures(name: str) -> None:
    """The models are derived from the code that reads the options: same names, same defaults."""
    domain = get_domain(name)
    assert set(domain.source_options) == set(domain.sources)
    for src, model in domain.source_options.items():
        params = {
            p.name: p.default
            for p in inspect.signature(domain.sources[src].list_units).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
        assert params.keys() <= model.model_fields.keys(), src
        for key, default in params.items():
            if default is not inspect.Parameter.empty:
                assert model.model_fields[key].default == default, (src, key)
    assert domain.encoder_options and domain.evaluate_options is not None

"""Recipes are validated before work starts; every problem is one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.configure import stage_configs
from stages.common.config import ConfigError, deep_merge, load_recipe, parse_set

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
@pytest.mark.parametrize("scale", ["demo", "tiny"])
def test_every_recipe_is_valid_at_every_scale(recipe: Path, scale: str) -> None:
    r = load_recipe(recipe, REPO / "params.yaml", [f"scale={scale}"])
    assert r.name == recipe.stem and r.scale == scale


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("pretrain.temperature=-1", "pretrain.temperature"),
        ("pretrain.temprature=0.5", "pretrain.temprature"),
        ("finetune.fractions=[0.5, 2.0]", "finetune"),
        ("ray.num_workers=0", "ray.num_workers"),
        ("views.n_views=1", "views.n_views"),
        ("data.source=nope", "data.source"),
        ("domain=quantum", "domain"),
        ("pretrain.loss=telepathy", "pretrain.loss"),
    ],
)
def test_bad_parameter_is_one_line_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_recipe(REPO / "pipelines/timeseries-gunpoint.yaml", REPO / "params.yaml", [override])
    msg = str(err.value)
    assert "\n" not in msg and key in msg


def test_scale_overrides_recipe_and_set_overrides_scale() -> None:
    recipe = REPO / "pipelines/timeseries-gunpoint.yaml"
    tiny = load_recipe(recipe, REPO / "params.yaml", ["scale=tiny"])
    assert tiny.pretrain.epochs == 2
    assert load_recipe(recipe, REPO / "params.yaml", ["scale=tiny", "pretrain.epochs=5"]).pretrain.epochs == 5


def test_unknown_scale_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="scale"):
        load_recipe(REPO / "pipelines/timeseries-gunpoint.yaml", REPO / "params.yaml", ["scale=galactic"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad, REPO / "params.yaml")


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError):
        load_recipe(evil, REPO / "params.yaml")


def test_merge_and_set_parsing() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    assert parse_set(["x.y=0.5", "z=[1, 2]"]) == {"x": {"y": 0.5}, "z": [1, 2]}
    with pytest.raises(ConfigError):
        parse_set(["novalue"])


def test_stage_configs_isolate_parameters() -> None:
    """A pretrain-only change must leave the upstream stages' config files untouched."""
    recipe = REPO / "pipelines/timeseries-gunpoint.yaml"
    a = stage_configs(load_recipe(recipe, REPO / "params.yaml"))
    b = stage_configs(load_recipe(recipe, REPO / "params.yaml", ["pretrain.temperature=0.7"]))
    changed = {s for s in a if a[s] != b[s]}
    assert changed == {"pretrain"}


def test_paths_place_every_output_root_reports_included(tmp_path: Path) -> None:
    from stages.common.cli import Dirs

    roots = ("data", "models", "metrics", "runs", "reports")
    sets = [f"paths.{k}={tmp_path / ('out-' + k)}" for k in roots]
    recipe = load_recipe(REPO / "pipelines" / "timeseries-gunpoint.yaml", REPO / "params.yaml", sets)
    dirs = Dirs.of(recipe)
    for k in roots:
        assert getattr(dirs, k) == str(tmp_path / f"out-{k}" / "timeseries-gunpoint")


TEMPLATES = sorted((REPO / "pipelines" / "templates").glob("*.yaml"))
#: the paths option of each template's source and a file of the format it reads
TEMPLATE_DATA = {
    "timeseries": ("paths", "site-a/series.csv"),
    "audio": ("paths", "day1/clip.flac"),
    "medical": ("images", "sub-01/t1.nii.gz"),
    "pointcloud": ("paths", "chairs/a.off"),
    "rl": ("paths", "run1/episode-000.npz"),
}


def test_there_is_a_your_data_template_per_domain() -> None:
    from domains import list_domains

    assert sorted(load_recipe(t, REPO / "params.yaml").domain for t in TEMPLATES) == list_domains()


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.stem)
@pytest.mark.parametrize("scale", ["demo", "tiny"])
def test_every_template_is_valid_pointed_at_a_folder(template: Path, scale: str, tmp_path: Path) -> None:
    """Copied to pipelines/<name>.yaml and pointed at a folder, a template is a valid recipe whose
    source lists the folder's files (the README's "Pretrain on your own data" steps)."""
    from stages.common.config import list_source_units

    copy = tmp_path / "my-data.yaml"
    copy.write_text(template.read_text())
    key, name = TEMPLATE_DATA[load_recipe(copy, REPO / "params.yaml").domain]
    (tmp_path / "folder" / name).parent.mkdir(parents=True)
    (tmp_path / "folder" / name).write_bytes(b"")
    (tmp_path / "folder" / "README.txt").write_text("not data")
    recipe = load_recipe(
        copy, REPO / "params.yaml", [f"scale={scale}", f"data.options.{key}={tmp_path / 'folder'}"]
    )
    assert recipe.name == "my-data"  # named after its file, as dvc.yaml expects
    units = list_source_units(recipe)
    assert [u.get("path") or u.get("image") for u in units] == [str(tmp_path / "folder" / name)]

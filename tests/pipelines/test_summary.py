"""`make repro`'s last screen: one readable row per recipe, from the metrics a tiny run writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.summary import figure, main, summary_rows

RECIPES = {
    "timeseries-gunpoint": {"domain": "timeseries"},
    "audio-digits": {"domain": "audio"},
    "medical-brainpatches": {"domain": "medical"},
    "rl-cartpole": {"domain": "rl"},
    "pointcloud-sweethome3d": {"domain": "pointcloud"},
}


def _write(root: Path, recipe: str, metrics: dict) -> None:
    path = root / "metrics" / recipe / "evaluate.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"domains": RECIPES, "paths": {"metrics": "metrics"}})
    )
    # three seeds, as the evaluate stage writes them: mean, <key>_std, <key>_seeds
    _write(
        tmp_path,
        "timeseries-gunpoint",
        {
            "pretrained": {"svm": 0.9, "svm_std": 0.02, "svm_seeds": [0.88, 0.9, 0.92]},
            "random_init": {"svm": 0.7, "svm_std": 0.05, "svm_seeds": [0.65, 0.7, 0.75]},
            "supervised": {"accuracy": 0.8, "accuracy_std": 0.0},
        },
    )
    split = {
        n: {"logreg": v, "knn": 0.1}
        for n, v in [("pretrained", 0.61), ("random_init", 0.32), ("mfcc_logreg", 0.55)]
    }
    _write(tmp_path, "audio-digits", {"domain": {"split": split}})
    _write(
        tmp_path,
        "medical-brainpatches",
        {
            "pretrained": {"svm": 0.8, "svm_std": 0.0, "svm_seeds": [0.8]},
            "random_init": {"svm": 0.5},
            "supervised": {"accuracy": 0.65},
            "domain": {
                "dice": {
                    "pretrained": {"4_patches": 0.70, "64_patches": 0.82, "16_patches": 0.75},
                    "random_init": {"4_patches": 0.69, "64_patches": 0.81, "16_patches": 0.74},
                    "intensity": {"4_patches": 0.93, "64_patches": 0.94, "16_patches": 0.93},
                }
            },
        },
    )
    _write(
        tmp_path,
        "rl-cartpole",
        {
            "domain": {
                "state_probe": {
                    "pretrained": {"state_r2_mean": {"mean": 0.5, "std": 0.1}},
                    "random_init": {"state_r2_mean": -1.26},
                    "supervised": {"state_r2_mean": 0.59},
                }
            }
        },
    )
    return tmp_path  # the point-cloud recipe has not run yet


def test_figures_read_floats_mean_std_dicts_and_std_siblings() -> None:
    m = {"a": {"x": 0.5, "x_std": 0.1, "y": {"mean": 0.2, "std": 0.3}, "z": None, "5_p": 1.0, "40_p": 2.0}}
    assert figure(m, "a.x") == (0.5, 0.1)
    assert figure(m, "a.y") == (0.2, 0.3)
    assert figure(m, "a.z") is None and figure(m, "a.missing") is None and figure(m, "b.x") is None
    assert figure(m, "a.@max") == (2.0, None)  # the largest numbered key (label budget)


def test_one_row_per_recipe_with_its_fields_headline(project: Path) -> None:
    rows = {r[0] or "medical-brainpatches (probe)": r for r in summary_rows(project)}
    ts = rows["timeseries-gunpoint"]
    assert ts[1:5] == ["SVM acc", "0.900 ± 0.020", "0.700 ± 0.050", "0.800 ± 0.000 supervised"]
    assert ts[5] == "reports/timeseries-gunpoint/report.md"
    assert rows["audio-digits"][1:5] == ["speaker-split acc", "0.610", "0.320", "0.550 MFCC"]
    med = rows["medical-brainpatches"]
    assert med[1:5] == ["Dice", "0.820", "0.810", "0.940 intensity"]  # the largest label budget
    # one seed: its std of 0 is not a spread, so none is shown
    assert rows["medical-brainpatches (probe)"][1:5] == ["SVM acc", "0.800", "0.500", "0.650 supervised"]
    assert rows["rl-cartpole"][1:5] == ["state-probe R²", "0.500 ± 0.100", "-1.260", "0.590 supervised"]
    assert rows["pointcloud-sweethome3d"][1] == "not run yet"


def test_the_printed_table_is_narrow_and_points_at_dvc_metrics(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", str(project)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["recipe", "metric", "pretrained", "random", "init", "baseline"]
    assert max(len(line) for line in lines) <= 100
    assert sum(line.startswith(tuple(RECIPES)) for line in lines) == len(RECIPES)
    assert "  timeseries-gunpoint     reports/timeseries-gunpoint/report.md" in lines
    assert "dvc metrics show" in out
    assert main(["--root", str(project), "--md"]) == 0
    assert capsys.readouterr().out.startswith("| recipe | metric |")


def test_broken_metrics_name_the_file(project: Path) -> None:
    (project / "metrics" / "audio-digits" / "evaluate.json").write_text("{not json")
    with pytest.raises(SystemExit, match=r"metrics/audio-digits/evaluate.json is not valid JSON"):
        summary_rows(project)


def test_at_min_picks_the_smallest_numbered_key() -> None:
    m = {"dice": {"16_patches": 0.8, "4_patches": 0.7, "64_patches": 0.9}}
    assert figure(m, "dice.@min") == (0.7, None) and figure(m, "dice.@max") == (0.9, None)

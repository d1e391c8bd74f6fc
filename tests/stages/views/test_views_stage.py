"""The views stage in-process (online mode, no Ray): plan, preview, progress, one-line policy errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from stages.common.cli import Dirs, StageError
from stages.common.rows import rows_to_table
from stages.common.schema import DataCfg, Recipe, ViewsCfg
from stages.common.storage import join, write_table
from stages.views.__main__ import run


def _workspace(tmp_path, policy):  # noqa: ANN001, ANN202
    rng = np.random.default_rng(0)
    rows = [
        {
            "id": f"r{i}",
            "x": rng.normal(size=(2, 60)).astype(np.float32),
            "label": "a",
            "split": s,
            "group": None,
            "meta": {},
        }
        for i, s in enumerate(["train"] * 6 + ["test"] * 2 + [None] * 2)
    ]
    dirs = Dirs(*(str(tmp_path / d) for d in ("data", "models", "metrics", "runs", "reports")))
    write_table(join(dirs.data, "curated", "part-0.parquet"), rows_to_table(rows))
    recipe = Recipe(
        name="v",
        domain="timeseries",
        data=DataCfg(source="none"),
        views=ViewsCfg(policy=policy, preview_pairs=4),
    )
    return recipe, dirs


def test_the_stage_writes_its_plan_and_preview_and_logs_plain_progress(tmp_path, capsys) -> None:  # noqa: ANN001
    recipe, dirs = _workspace(tmp_path, "tstcc_weak")
    run(recipe, dirs)
    plan = json.loads((tmp_path / "data" / "views" / "plan.json").read_text())
    assert plan["policy"] == "tstcc_weak" and plan["mode"] == "online" and plan["n_views"] == 2
    assert Image.open(tmp_path / "data" / "views" / "preview.png").size[1] > 300  # 4 rows of panels
    err = capsys.readouterr().err
    assert "views: preview rows 4/4 (100%)" in err and "\r" not in err


def test_a_bad_step_fails_the_stage_with_one_line_naming_the_key(tmp_path) -> None:  # noqa: ANN001
    recipe, dirs = _workspace(tmp_path, [{"name": "jitter", "sigmaa": 0.1}])
    with pytest.raises(StageError) as e:
        run(recipe, dirs)
    assert str(e.value).startswith("views.policy[0]: jitter: unknown parameter(s) ['sigmaa']")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "data" / "views").exists()  # nothing half-written

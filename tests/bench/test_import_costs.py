"""bench/import_costs.py: times fresh-interpreter imports per tree and writes a ratio table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import import_costs


def test_measure_alternates_trees_and_reports_the_ratio(tmp_path: Path) -> None:
    # two "trees" with a module each: one imports nothing, the other sleeps on import
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    for tree, body in ((fast, ""), (slow, "import time\ntime.sleep(0.3)\n")):
        tree.mkdir()
        (tree / "probe_mod.py").write_text(body)
    out = import_costs.measure({"before": slow, "after": fast}, {"probe": "import probe_mod"}, reps=2)
    row = out["probe"]
    assert len(row["before"]["runs_s"]) == len(row["after"]["runs_s"]) == 2
    assert row["before"]["median_s"] - row["after"]["median_s"] > 0.2
    assert row["ratio"] < 1.0
    md = import_costs.render_md({"trees": ["before", "after"], "against": "x", "reps": 2, "cases": out})
    assert "| probe |" in md and "after / before" in md


def test_writes_json_and_markdown_for_the_working_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_FORCE", "1")  # the suite itself loads the machine
    js, md = tmp_path / "r.json", tmp_path / "r.md"
    code = import_costs.main(
        [
            "--reps",
            "1",
            "--settle-s",
            "0",
            "--cases",
            "Ray worker setup hook",
            "--out-json",
            str(js),
            "--out-md",
            str(md),
        ]
    )
    assert code == 0
    result = json.loads(js.read_text())
    assert result["trees"] == ["now"] and {"load_average_start", "load_average_end"} <= set(result["meta"])
    assert result["cases"]["Ray worker setup hook"]["now"]["median_s"] > 0
    assert "Ray worker setup hook" in md.read_text()


def test_an_unknown_case_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert import_costs.main(["--cases", "nope"]) == 2
    assert "unknown case" in capsys.readouterr().err

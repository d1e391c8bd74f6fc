"""bench/validate_choice.py: a baseline/candidate choice on validation data, by a rule fixed first."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bench import validate_choice as vc


def _sets(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, c in enumerate(cmd) if c == "--set"]


class FakeRuns:
    """Stands in for ``python -m pipelines.run``: writes evaluate.json with a per-(arm, seed) score."""

    def __init__(self, scores: dict[tuple[str, int], float], fail_at: tuple[str, int] | None = None) -> None:
        self.scores, self.fail_at, self.calls = scores, fail_at, []

    def __call__(self, cmd: list[str], **_: Any) -> subprocess.CompletedProcess:  # noqa: ANN401
        sets = dict(s.split("=", 1) for s in _sets(cmd))
        arm = "candidate" if "pretrain.epochs=40" in _sets(cmd) else "baseline"
        seed = int(sets["pretrain.seed"])
        self.calls.append((arm, seed, cmd[cmd.index("--stages") + 1], _sets(cmd)))
        if (arm, seed) == self.fail_at:
            return subprocess.CompletedProcess(cmd, 1)
        out = Path(sets["paths.metrics"]) / "toy" / "evaluate.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        Path(sets["paths.data"]).mkdir(parents=True, exist_ok=True)
        score = self.scores[(arm, seed)]
        out.write_text(json.dumps({"domain": {"pretrained": {"svm": score}, "random_init": {"svm": 0.5}}}))
        return subprocess.CompletedProcess(cmd, 0)


def _argv(tmp_path: Path, rule: Path, seeds: int = 2, min_gain: float = 0.013) -> list[str]:
    return [
        "toy_epochs",
        "--recipe", "pipelines/toy.yaml",
        "--rule", str(rule),
        "--candidate", "pretrain.epochs=40",
        "--metric", "domain.pretrained.svm",
        "--guard", "domain.random_init.svm",
        "--min-gain", str(min_gain),
        "--seeds", str(seeds),
        "--settle-s", "0",
        "--run-dir", str(tmp_path / "runs"),
        "--results", str(tmp_path / "results"),
    ]  # fmt: skip


@pytest.fixture
def rule(tmp_path: Path) -> Path:
    path = tmp_path / "rule.md"
    path.write_text("adopt 40 epochs if >= 1.3 points ahead on validation and ahead of random init\n")
    old = time.time() - 60  # written before the runs
    os.utime(path, (old, old))
    return path


def test_arms_alternate_on_the_validation_split_and_the_rule_decides(
    tmp_path: Path, rule: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRuns(
        {("baseline", 0): 0.80, ("candidate", 0): 0.83, ("baseline", 1): 0.82, ("candidate", 1): 0.83}
    )
    monkeypatch.setattr(vc.subprocess, "run", fake)
    assert vc.main(_argv(tmp_path, rule)) == 0
    assert [(a, s) for a, s, *_ in fake.calls] == [
        ("baseline", 0),
        ("candidate", 0),
        ("baseline", 1),
        ("candidate", 1),
    ]
    # each arm prepares its own data with its first seed; every run is on the validation split, last
    assert [st for *_, st, _ in fake.calls] == ["ingest,curate,views,pretrain,finetune,evaluate"] * 2 + [
        "pretrain,finetune,evaluate"
    ] * 2
    assert all(sets[-1] == "data.holdout=validation" for *_, sets in fake.calls)
    res = json.loads((tmp_path / "results" / "toy_epochs_validation.json").read_text())
    assert res["summary"]["candidate"]["metric"] == {"mean": 0.83, "std": 0.0, "seeds": [0.83, 0.83]}
    assert res["decision"]["decision"] == "adopted" and res["decision"]["gain"] == 0.02
    assert res["rule"]["sha256"] and "adopt 40 epochs" in res["rule"]["text"]
    assert all({"load_average_start", "load_average_end"} <= set(r["meta"]) for r in res["runs"])
    assert res["meta"]["valid"] == all(r["meta"]["valid"] for r in res["runs"])
    assert res["meta"]["load_average_start"] == res["runs"][0]["meta"]["load_average_start"]
    assert res["meta"]["load_average_end"] == res["runs"][-1]["meta"]["load_average_end"]
    # what other work took over all runs: the end load counts the runs' own Ray workers
    other = res["meta"]["other_cpu"]
    assert other["wall_s"] == pytest.approx(
        sum(r["meta"]["other_cpu"]["wall_s"] for r in res["runs"]), abs=0.2
    )
    assert other["other_cpu_s"] == pytest.approx(
        sum(r["meta"]["other_cpu"]["other_cpu_s"] for r in res["runs"]), abs=0.2
    )
    assert all(r["code"] == vc.code_version() for r in res["runs"])  # this checkout's (None without git)
    assert "**adopted**" in (tmp_path / "results" / "toy_epochs_validation.md").read_text()


def test_a_gain_under_the_stated_margin_is_not_adopted(
    tmp_path: Path, rule: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRuns({("baseline", 0): 0.80, ("candidate", 0): 0.81})
    monkeypatch.setattr(vc.subprocess, "run", fake)
    vc.main(_argv(tmp_path, rule, seeds=1))
    res = json.loads((tmp_path / "results" / "toy_epochs_validation.json").read_text())
    assert res["decision"]["decision"] == "not adopted"


def test_an_interrupted_choice_resumes_with_what_it_measured(
    tmp_path: Path, rule: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scores = {("baseline", 0): 0.8, ("candidate", 0): 0.9, ("baseline", 1): 0.8, ("candidate", 1): 0.9}
    monkeypatch.setattr(vc.subprocess, "run", FakeRuns(scores, fail_at=("baseline", 1)))
    with pytest.raises(SystemExit, match="baseline seed 1 failed"):
        vc.main(_argv(tmp_path, rule))
    res = json.loads((tmp_path / "results" / "toy_epochs_validation.json").read_text())
    assert res["decision"] == {"decision": "incomplete"} and len(res["runs"]) == 2
    again = FakeRuns(scores)
    monkeypatch.setattr(vc.subprocess, "run", again)
    vc.main(_argv(tmp_path, rule))
    # only the missing runs, and the baseline's data stages are not rerun
    assert [(a, s, st) for a, s, st, _ in again.calls] == [
        ("baseline", 1, "pretrain,finetune,evaluate"),
        ("candidate", 1, "pretrain,finetune,evaluate"),
    ]


def test_a_rule_edited_after_runs_were_recorded_is_refused(
    tmp_path: Path, rule: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vc.subprocess, "run", FakeRuns({("baseline", 0): 0.8, ("candidate", 0): 0.7}))
    vc.main(_argv(tmp_path, rule, seeds=1))
    rule.write_text("adopt 40 epochs if it is not worse\n")
    with pytest.raises(vc.RuleError, match="changed after 2 run"):
        vc.main(_argv(tmp_path, rule, seeds=1))


def test_no_rule_no_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRuns({})
    monkeypatch.setattr(vc.subprocess, "run", fake)
    with pytest.raises(vc.RuleError, match="write the rule before the runs"):
        vc.main(_argv(tmp_path, tmp_path / "missing.md"))
    assert fake.calls == []


def test_a_candidate_not_ahead_of_its_own_random_init_is_not_adopted(
    tmp_path: Path, rule: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ahead of the baseline by 5 points, but the guard (random init, 0.5 in FakeRuns) is not beaten
    monkeypatch.setattr(vc.subprocess, "run", FakeRuns({("baseline", 0): 0.40, ("candidate", 0): 0.45}))
    vc.main(_argv(tmp_path, rule, seeds=1))
    res = json.loads((tmp_path / "results" / "toy_epochs_validation.json").read_text())
    assert res["decision"]["decision"] == "not adopted" and res["decision"]["gain"] == 0.05


def test_resuming_with_another_statistic_is_refused(
    tmp_path: Path, rule: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded runs hold the old statistic's values: mixing them with a new one would be wrong."""
    monkeypatch.setattr(vc.subprocess, "run", FakeRuns({("baseline", 0): 0.8, ("candidate", 0): 0.7}))
    vc.main(_argv(tmp_path, rule, seeds=1))
    argv = _argv(tmp_path, rule, seeds=1)
    argv[argv.index("--metric") + 1] = "domain.random_init.svm"
    with pytest.raises(vc.RuleError, match="different metric"):
        vc.main(argv)


def test_holdout_recipe_runs_the_shared_protocol_and_says_the_tool_did_not_enforce_it(
    tmp_path: Path, rule: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipe whose labelled rows are all test rows (audio) validates on persons left out by --set."""
    fake = FakeRuns({("baseline", 0): 0.8, ("candidate", 0): 0.7})
    monkeypatch.setattr(vc.subprocess, "run", fake)
    argv = [*_argv(tmp_path, rule, seeds=1), "--holdout", "recipe"]
    with pytest.raises(SystemExit):  # no shared --set: no validation protocol at all
        vc.main(argv)
    assert fake.calls == []
    vc.main([*argv, "--set", "data.options.real.exclude_speakers=[Carlo,June]"])
    for *_, sets in fake.calls:
        assert (
            "data.holdout=validation" not in sets
            and "data.options.real.exclude_speakers=[Carlo,June]" in sets
        )
    res = json.loads((tmp_path / "results" / "toy_epochs_validation.json").read_text())
    assert res["holdout"] == "recipe"
    assert "not enforced by this tool" in (tmp_path / "results" / "toy_epochs_validation.md").read_text()


def test_a_result_written_before_holdout_existed_resumes_as_validation(
    tmp_path: Path, rule: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vc.subprocess, "run", FakeRuns({("baseline", 0): 0.8, ("candidate", 0): 0.7}))
    vc.main(_argv(tmp_path, rule, seeds=1))
    out = tmp_path / "results" / "toy_epochs_validation.json"
    old = json.loads(out.read_text())
    del old["holdout"]
    out.write_text(json.dumps(old))
    vc.main(_argv(tmp_path, rule, seeds=1))  # same comparison: nothing refused, nothing rerun
    with pytest.raises(vc.RuleError, match="different .*holdout"):
        vc.main([*_argv(tmp_path, rule, seeds=1), "--holdout", "recipe", "--set", "a=b"])


def test_the_comparisons_other_work_is_summed_over_its_runs() -> None:
    def run(wall: float, own: float, other: float | None) -> dict[str, Any]:
        reading = None if other is None else {"wall_s": wall, "own_cpu_s": own, "other_cpu_s": other}
        return {"meta": {"machine": {"cpu_count": 2}, "other_cpu": reading}}

    total = vc.overall_other_cpu([run(100.0, 150.0, 2.0), run(300.0, 500.0, 6.0)])
    assert total == {"wall_s": 400.0, "own_cpu_s": 650.0, "other_cpu_s": 8.0, "other_share": 0.01}
    assert vc.overall_other_cpu([run(100.0, 150.0, 2.0), run(100.0, 150.0, None)]) is None

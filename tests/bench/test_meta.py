"""Benchmark hygiene: every bench records the machine and the load, and a busy machine's run is not
written as a result (or, forced, is written marked invalid)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import _meta
from bench._meta import BenchRun

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(monkeypatch: pytest.MonkeyPatch, value: float) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (value, value, value))


def test_quiet_machine_writes_result_with_machine_and_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _load(monkeypatch, 0.5)
    run = BenchRun()
    _load(monkeypatch, 1.5)
    assert run.write_json(tmp_path / "r.json", {"step_s": 0.1})
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["step_s"] == 0.1
    meta = out["meta"]
    assert meta["valid"] is True
    assert meta["load_average_start"] == 0.5 and meta["load_average_end"] == 1.5
    assert meta["machine"]["cpu_count"] == os.cpu_count()
    assert meta["machine"]["cpu_model"] and meta["machine"]["torch"] and meta["machine"]["ray"]


def test_busy_machine_refuses_to_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv(_meta.FORCE_ENV, raising=False)
    _load(monkeypatch, (os.cpu_count() or 1) + 0.5)
    run = BenchRun()
    assert not run.valid
    assert not run.write_json(tmp_path / "r.json", {"x": 1})
    assert not run.write_text(tmp_path / "r.md", "| a |\n")
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.md").exists()
    assert "exceeds" in capsys.readouterr().out


def test_forced_busy_run_is_written_marked_invalid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_meta.FORCE_ENV, "1")
    _load(monkeypatch, (os.cpu_count() or 1) * 3.0)
    run = BenchRun()
    assert run.write_json(tmp_path / "r.json", [{"row": 1}])
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["meta"]["valid"] is False and out["rows"] == [{"row": 1}]
    assert run.write_text(tmp_path / "r.md", "| a |\n")
    assert "INVALID" in (tmp_path / "r.md").read_text()


def test_every_bench_writes_through_bench_run() -> None:
    """A bench that writes results must start a BenchRun (the UCR benches have their own owner)."""
    skip = {"__init__.py", "_meta.py", "_runs.py"}  # helpers, not benches
    benches = [p for p in BENCH.glob("*.py") if p.name not in skip and not p.name.startswith("ucr_")]
    assert benches
    missing = [p.name for p in benches if "BenchRun(" not in p.read_text()]
    assert not missing, f"benches without bench._meta.BenchRun: {missing}"


def test_a_settling_run_waits_for_the_load_to_fall_and_says_how_long(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = iter([9.0, 9.0, 9.0, 0.5, 0.5, 0.5])
    monkeypatch.setattr(os, "getloadavg", lambda: (next(loads), 0.0, 0.0))
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr(_meta.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(_meta.time, "sleep", lambda s: None)
    run = BenchRun(settle_s=60)
    assert run.valid and run.load_start == 0.5
    assert run.meta()["settle_wait_s"] > 0
    _load(monkeypatch, 9.0)
    assert not BenchRun(settle_s=0).valid  # no wait: a busy start stays invalid


def test_non_finite_numbers_are_written_as_null_so_the_result_is_standard_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    _load(monkeypatch, 0.5)
    run = BenchRun()
    rows = [{"probe_std": float("nan"), "loss": np.float64("inf"), "curve": [(0, float("-inf")), (1, 0.5)]}]
    assert run.write_json(tmp_path / "r.json", {"rows": rows, "ok": 1.25})

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    out = json.loads((tmp_path / "r.json").read_text(), parse_constant=refuse)
    assert out["rows"] == [{"probe_std": None, "loss": None, "curve": [[0, None], [1, 0.5]]}]
    assert out["ok"] == 1.25


def test_committed_results_are_standard_json() -> None:
    """NaN / Infinity are Python's extension, not JSON: other readers (jq, JavaScript) reject them."""
    bad = []
    for path in sorted((BENCH / "results").glob("*.json")):
        try:
            json.loads(
                path.read_text(), parse_constant=lambda token, name=path.name: bad.append(f"{name}: {token}")
            )
        except ValueError as e:  # not JSON at all
            bad.append(f"{path.name}: {e}")
    assert not bad, f"results that are not standard JSON: {bad}"


_SPIN = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end: pass\n"


def _spin_outside_our_tree(seconds: float, n: int) -> None:
    """``n`` busy processes that are not our descendants: the shell that starts them exits at once,
    so they are re-parented (as a test suite or a user's job beside a bench would be)."""
    code = _SPIN.format(s=seconds).replace("'", "")
    cmd = " ".join(f"{sys.executable} -c '{code}' >/dev/null 2>&1 &" for _ in range(n))
    subprocess.run(["sh", "-c", cmd], check=True)


def test_other_work_during_a_run_marks_it_invalid_but_keeps_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The start load cannot see work launched after it: the run measures what processes outside
    its own tree took, and a result measured beside them is written, marked invalid."""
    _load(monkeypatch, 0.5)  # a quiet start
    run = BenchRun()
    _spin_outside_our_tree(2.5, os.cpu_count() or 1)  # every CPU busy with someone else's work
    time.sleep(2.5)
    assert not run.valid
    assert run.write_json(tmp_path / "r.json", {"step_s": 0.1})
    meta = json.loads((tmp_path / "r.json").read_text())["meta"]
    assert meta["other_cpu"]["other_share"] > _meta.OTHER_SHARE_MAX
    assert meta["valid"] is False and "other work took" in meta["invalid_reason"]
    assert "marked invalid" in capsys.readouterr().out
    assert run.write_text(tmp_path / "r.md", "| a |\n")
    assert "INVALID: other work took" in (tmp_path / "r.md").read_text()


def test_the_benchs_own_processes_are_not_other_work() -> None:
    """CPU time of the bench's own process and its children (Ray's workers are) counts as its own."""
    other = _meta.OtherCpu()
    try:
        child = subprocess.Popen([sys.executable, "-c", _SPIN.format(s=1.5)])
        exec(_SPIN.format(s=1.5))  # this process, busy too
        child.wait(timeout=30)
        reading = other.reading()
    finally:
        other.stop()
    # both spins (about 3 CPU seconds; the child's exit loses at most one sampling interval)
    assert reading["own_cpu_s"] >= 1.8
    assert reading["wall_s"] >= 1.5 and reading["other_share"] is not None


def test_short_lived_children_are_the_benchs_own_work() -> None:
    """A bench of short subprocesses (bench.import_costs: 1-2 s interpreters) owns all of their CPU
    time, not only what a 1 s sampling interval happened to see before each exited."""
    other = _meta.OtherCpu()
    try:
        t0 = time.monotonic()
        for _ in range(6):
            subprocess.run([sys.executable, "-c", _SPIN.format(s=0.4)], check=True)
        reading = other.reading()
        wall = time.monotonic() - t0
    finally:
        other.stop()
    assert reading["own_cpu_s"] >= 6 * 0.4 * 0.9
    assert reading["own_cpu_s"] <= wall * (os.cpu_count() or 1)  # nothing counted twice

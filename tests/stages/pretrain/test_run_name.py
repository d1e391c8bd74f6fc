"""The run name decides what a pretraining run resumes from: same config, rows and code only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.common.sources import domain_package
from stages.pretrain.__main__ import code_fingerprint, run_name


def _tree(root: Path) -> None:
    for rel in (
        "stages/pretrain/loop.py",
        "stages/common/losses.py",
        "domains/base.py",
        "domains/timeseries/views.py",
        "domains/audio/views.py",
        "stages/finetune/__main__.py",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n")


def test_code_fingerprint_follows_the_code_the_run_executes(tmp_path: Path) -> None:
    _tree(tmp_path)
    pkg = tmp_path / "domains" / "timeseries"
    before = code_fingerprint("timeseries", tmp_path, pkg)
    assert code_fingerprint("timeseries", tmp_path, pkg) == before  # stable: an interrupted run resumes
    # code other stages or domains run does not void a run
    (tmp_path / "stages/finetune/__main__.py").write_text("changed = True\n")
    (tmp_path / "domains/audio/views.py").write_text("changed = True\n")
    assert code_fingerprint("timeseries", tmp_path, pkg) == before
    # a change to the domain's views, the loop, the losses or the shared domain code makes a new run
    for rel in (
        "domains/timeseries/views.py",
        "stages/pretrain/loop.py",
        "stages/common/losses.py",
        "domains/base.py",
    ):
        old = (tmp_path / rel).read_text()
        (tmp_path / rel).write_text(old + "fixed = True\n")
        assert code_fingerprint("timeseries", tmp_path, pkg) != before, rel
        (tmp_path / rel).write_text(old)
    assert code_fingerprint("timeseries", tmp_path, pkg) == before


def test_code_fingerprint_is_keyed_by_where_a_file_sits_not_by_its_name(tmp_path: Path) -> None:
    _tree(tmp_path)
    pkg = tmp_path / "domains" / "timeseries"
    (pkg / "sub").mkdir()
    (pkg / "sub" / "views.py").write_text("inner = True\n")
    before = code_fingerprint("timeseries", tmp_path, pkg)
    # the two views.py trade contents: same names, same bytes, other code at each import path
    outer, inner = (pkg / "views.py").read_text(), (pkg / "sub" / "views.py").read_text()
    (pkg / "views.py").write_text(inner)
    (pkg / "sub" / "views.py").write_text(outer)
    assert code_fingerprint("timeseries", tmp_path, pkg) != before
    (pkg / "views.py").write_text(outer)
    (pkg / "sub" / "views.py").write_text(inner)
    # a module moved to a subfolder is another module
    (pkg / "sub" / "views.py").rename(pkg / "sub" / "extra.py")
    moved = code_fingerprint("timeseries", tmp_path, pkg)
    (pkg / "sub" / "extra.py").rename(pkg / "extra.py")
    assert code_fingerprint("timeseries", tmp_path, pkg) != moved


def test_code_fingerprint_is_the_same_in_every_clone(tmp_path: Path) -> None:
    # the checkout's location is not part of the hash: two clones of one commit resume each
    # other's runs by name only if they hash alike
    a, b = tmp_path / "a", tmp_path / "elsewhere" / "b"
    for root in (a, b):
        _tree(root)
    assert code_fingerprint("timeseries", a, a / "domains" / "timeseries") == code_fingerprint(
        "timeseries", b, b / "domains" / "timeseries"
    )


def test_run_name_changes_with_config_rows_and_code() -> None:
    rows = [{"id": "a", "x": np.zeros(3, np.float32)}, {"id": "b", "x": np.ones(3, np.float32)}]
    name = run_name({"lr": 1e-3}, rows, "code1")
    assert name == run_name({"lr": 1e-3}, rows, "code1")
    assert name != run_name({"lr": 1e-2}, rows, "code1")
    assert name != run_name({"lr": 1e-3}, rows[:1], "code1")
    assert name != run_name({"lr": 1e-3}, rows, "code2")


def test_the_repository_fingerprint_is_computed_from_its_sources() -> None:
    # the real tree: every domain package hashes, and differently from another domain's
    prints = {d: code_fingerprint(d) for d in ("timeseries", "audio", "medical", "pointcloud", "rl")}
    assert len(set(prints.values())) == 5
    # the domain's package is found from the registered domain (plug-ins outside domains/ too)
    assert domain_package("audio") == Path(__file__).resolve().parents[3] / "domains" / "audio"

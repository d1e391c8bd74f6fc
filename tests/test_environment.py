"""The pinned environment (``.ci/constraints.txt``, installed by ``make setup``) covers what the
project needs, agrees with ``pyproject.toml``'s ranges, and is what the tests run in."""

from __future__ import annotations

import os
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / ".ci" / "constraints.txt"
#: what `make setup` installed from (the Makefile's CONSTRAINTS; empty: pyproject.toml's ranges alone)
INSTALLED_FROM = os.environ.get("CONTRAFLOW_CONSTRAINTS", str(CONSTRAINTS))


def pins(path: Path = CONSTRAINTS) -> dict[str, Version]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            out[canonicalize_name(name)] = Version(version)
    return out


def project_requirements() -> list[Requirement]:
    """``pyproject.toml``'s dependencies and its ``dev`` extra (what ``make setup`` installs)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def needed(requirements: list[Requirement]) -> dict[str, set[str]]:
    """Every distribution the requirements pull in, transitively, with the extras asked of it,
    markers evaluated for this interpreter (what pip resolved when it installed them)."""
    seen: dict[str, set[str]] = {}
    todo = [(r, "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        new = set(req.extras) - seen.get(name, set()) if name in seen else set(req.extras) | {""}
        if not new:
            continue
        seen.setdefault(name, set()).update(new)
        for r in metadata.distribution(name).requires or []:
            for e in new:
                todo.append((Requirement(r), e))
    return seen


def test_every_distribution_the_project_needs_is_pinned_once() -> None:
    pinned = pins()
    unpinned = load_pin().UNPINNED  # the project itself, torch (the Makefile pins it) and pip's own
    missing = sorted(set(needed(project_requirements())) - set(pinned) - unpinned)
    assert not missing, f"not in .ci/constraints.txt (run `make constraints`): {missing}"
    lines = [ln for ln in CONSTRAINTS.read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == len(pinned), "a distribution is pinned twice"
    assert not set(pinned) & unpinned, "torch is pinned by the Makefile, not here"


def test_the_pins_satisfy_pyproject_ranges() -> None:
    pinned = pins()
    outside = {
        r.name: str(pinned[canonicalize_name(r.name)])
        for r in project_requirements()
        if canonicalize_name(r.name) in pinned and pinned[canonicalize_name(r.name)] not in r.specifier
    }
    assert not outside, f"pins outside pyproject.toml's ranges: {outside}"


@pytest.mark.skipif(
    INSTALLED_FROM == "", reason="installed from pyproject.toml's ranges (make setup CONSTRAINTS=)"
)
def test_the_tests_run_in_the_pinned_environment() -> None:
    """What CI measures is what a fresh clone installs: a hand-upgraded package shows here."""
    drift = {}
    for name, version in pins(REPO / INSTALLED_FROM).items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue  # needed on another platform or Python only
        if installed != version:
            drift[name] = f"{installed} installed, {version} pinned"
    assert not drift, f"the environment is not the pinned one (`make setup` installs it): {drift}"


def load_pin():  # noqa: ANN201 - .ci/pin.py is a script, not a package module
    import importlib.util

    spec = importlib.util.spec_from_file_location("pin", REPO / ".ci" / "pin.py")
    pin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pin)
    return pin


def test_pin_keeps_every_resolved_distribution_but_torch_and_the_project() -> None:
    report = {
        "install": [
            {"metadata": {"name": n, "version": v}}
            for n, v in [
                ("Ray", "2.60.0"),
                ("torch", "2.13.0"),
                ("contraflow", "0.1.0"),
                ("Typing_Extensions", "4.15.0"),
            ]
        ]
    }
    assert load_pin().pins_from_report(report) == {"ray": "2.60.0", "typing-extensions": "4.15.0"}


def test_pin_replaces_the_file_only_when_the_resolve_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin = load_pin()
    out = tmp_path / "constraints.txt"
    monkeypatch.setattr("sys.argv", ["pin.py", str(out)])
    monkeypatch.setattr(pin, "resolve", lambda: {"numpy": "2.3.5", "ray": "2.60.0"})
    pin.main()
    assert [ln for ln in out.read_text().splitlines() if not ln.startswith("#")] == [
        "numpy==2.3.5",
        "ray==2.60.0",
    ]

    def fails() -> dict[str, str]:
        raise RuntimeError("resolver failed")

    monkeypatch.setattr(pin, "resolve", fails)
    with pytest.raises(RuntimeError):
        pin.main()
    assert "ray==2.60.0" in out.read_text()

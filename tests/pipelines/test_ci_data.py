"""Under CI=true a test whose data is missing fails instead of skipping; `make system-deps` fails
when it cannot install the Debian packages the tests need."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = """
from tests.conftest import requires_data

@requires_data(False, reason="Debian package xyz missing")
def test_needs_data():
    pass
"""


def _pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    test = tmp_path / "test_sample_data.py"
    test.write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.conftest",  # the sample lives outside tests/: load the project's hooks explicitly
            "--rootdir",
            str(REPO),
            "--confcutdir",
            str(REPO),
            str(test),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_data_skips_locally_but_fails_under_ci(tmp_path: Path) -> None:
    local = _pytest(tmp_path, None)
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    ci = _pytest(tmp_path, "true")
    assert ci.returncode == 1 and "1 error" in ci.stdout, ci.stdout  # fails at setup: never a skip
    assert "CI=true and data the test needs is missing: Debian package xyz missing" in ci.stdout


@pytest.mark.skipif(
    shutil.which("make") is None or shutil.which("dpkg") is None, reason="needs make and dpkg"
)
def test_system_deps_fails_when_it_cannot_install(tmp_path: Path) -> None:
    # a package that is surely not installed, and a PATH where neither apt-get nor sudo can work
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("sudo", "apt-get", "id"):
        (fake / tool).write_text("#!/bin/sh\n" + ("echo 1000\n" if tool == "id" else "exit 1\n"))
        (fake / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["make", "-s", "system-deps", "DEB_PACKAGES=contraflow-no-such-package", "STAMP=/dev/null"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "cannot install the Debian packages" in proc.stderr and "contraflow-no-such-package" in proc.stderr

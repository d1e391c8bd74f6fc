"""Write the pinned environment ``make setup`` installs: ``python .ci/pin.py [OUT]`` (``make constraints``).

``pyproject.toml`` states the ranges the code supports. Installing from ranges alone gives each
fresh machine whatever is newest that day, and figures followed the install, not the code (the
audio MFCC baseline moved 0.210 -> 0.240 -> 0.210 between environments: README, audio). So
``make setup`` installs with ``-c .ci/constraints.txt``: every distribution the project needs, pinned.
This script resolves ``pyproject.toml``'s ranges afresh (newest allowed, ignoring what is installed)
with pip's own resolver (``pip install --dry-run --report``) and writes one ``name==version`` line
per distribution. torch is left out: the Makefile pins it (``torch==2.13.0``, the CPU build on disk).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / ".ci" / "constraints.txt"
#: pinned elsewhere (torch) or part of the installer, not the project
UNPINNED = {"contraflow", "torch", "pip", "setuptools", "wheel"}

HEADER = """\
# The environment `make setup` installs (pip -c): every distribution the project needs, pinned, so
# that a fresh machine computes what CI and the fresh-clone checks computed. pyproject.toml keeps the
# supported ranges. Regenerate (newest versions the ranges allow): `make constraints`, then
# `make setup` and `make test`. Install from the ranges alone: `make setup CONSTRAINTS=`.
# Resolved for CPython {python} on {platform}; torch is pinned by the Makefile.
"""


def installed_torch() -> str:
    """The torch the Makefile installed here (``torch==2.13.0``, the CPU build ``2.13.0+cpu``), as a
    requirement, so the pins are resolved beside the torch they will be installed with."""
    return f"torch=={Version(metadata.version('torch')).base_version}"


def resolve() -> dict[str, str]:
    """``{name: version}`` pip would install for ``.[dev]`` in an empty environment."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp, "report.json")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--ignore-installed",
                "-q",
                "--report",
                str(report),
                "-e",
                f"{REPO}[dev]",
                installed_torch(),
            ],
            check=True,
        )
        return pins_from_report(json.loads(report.read_text()))


def pins_from_report(report: dict) -> dict[str, str]:
    """``{name: version}``, sorted by name, from a ``pip install --report`` document, without the
    project itself and what the Makefile pins or pip brings."""
    pins = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}
    return {n: v for n, v in sorted(pins.items()) if n not in UNPINNED}


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    header = HEADER.format(python=platform.python_version(), platform=f"{sys.platform}-{platform.machine()}")
    lines = [f"{n}=={v}" for n, v in resolve().items()]
    tmp = out.with_suffix(".tmp")
    tmp.write_text(header + "\n".join(lines) + "\n")
    tmp.replace(out)  # atomically: a failed resolve leaves the old pins
    print(f"pin: {len(lines)} distributions -> {out}")


if __name__ == "__main__":
    main()

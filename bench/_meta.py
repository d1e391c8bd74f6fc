"""What every bench records beside its numbers, and the rule that keeps a busy machine's numbers out.

Start a :class:`BenchRun` first thing in a bench's ``main`` and write results through it::

    run = BenchRun()
    ...  # measure
    run.write_json(OUT, result)  # adds result["meta"]; refuses when the machine was busy

``meta`` holds the machine (CPU count and model, OS, Python, torch, Ray and numpy versions), the
1-minute load average at the start and at the end, and ``valid``. A run whose load average at the
start exceeds the CPU count measured a shared machine: its timings are not figures, so nothing is
written (one line says why) unless ``BENCH_FORCE=1``, and then the result says ``"valid": false``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

#: set to 1 to write a result measured on a busy machine anyway (marked "valid": false)
FORCE_ENV = "BENCH_FORCE"


def load_average_1m() -> float:
    return round(os.getloadavg()[0], 2)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """The machine a result was measured on; no host name (results are committed)."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        **{name: _version(name) for name in ("torch", "ray", "numpy")},
    }
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


class BenchRun:
    """One bench run: the machine and the load average at its start, checked when writing."""

    def __init__(self, settle_s: float = 0.0) -> None:
        """``settle_s``: wait up to this long for the load average to fall to the CPU count first.
        Benches run back to back (one domain after another) otherwise start inside the previous
        run's 1-minute load average and mark themselves invalid although nothing else is running."""
        self.machine = machine()
        cores = self.machine["cpu_count"] or 1
        t0 = time.monotonic()
        while load_average_1m() > cores and time.monotonic() - t0 < settle_s:
            time.sleep(5)
        self.waited_s = round(time.monotonic() - t0, 1)
        self.load_start = load_average_1m()
        self.started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    @property
    def valid(self) -> bool:
        """False when more runnable processes than CPUs competed with the bench when it started."""
        return self.load_start <= (self.machine["cpu_count"] or 1)

    def meta(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "started": self.started,
            "load_average_1m": {"start": self.load_start, "end": load_average_1m()},
            "valid": self.valid,
            **({"waited_for_load_s": self.waited_s} if self.waited_s >= 1 else {}),
        }

    def may_write(self, what: str) -> bool:
        """Whether to write ``what``; prints why not when the machine was busy at the start."""
        if self.valid:
            return True
        cores = self.machine["cpu_count"]
        if os.environ.get(FORCE_ENV) == "1":
            print(f"bench: load {self.load_start} > {cores} CPUs at start: {what} written, marked invalid")
            return True
        print(
            f"bench: load average {self.load_start} at start exceeds {cores} CPUs: {what} not written "
            f'(run the bench alone, or set {FORCE_ENV}=1 to write it marked "valid": false)',
            flush=True,
        )
        return False

    def write_json(self, path: Path, result: dict[str, Any] | list, indent: int = 2) -> bool:
        """Write ``result`` with this run's ``meta`` (a dict gets ``result["meta"]``; a list of rows is
        wrapped as ``{"meta": ..., "rows": [...]}``), atomically; False when refused."""
        if not self.may_write(str(path)):
            return False
        # meta first: the conditions a timing was measured under are the first thing a reader sees
        rest = result if isinstance(result, dict) else {"rows": result}
        body = {"meta": self.meta(), **{k: v for k, v in rest.items() if k != "meta"}}
        # allow_nan=False: a NaN or infinity (a std over one seed, the loss of an untrained model)
        # is written as null, so every result parses as standard JSON, not only with Python's json
        _atomic_write(Path(path), json.dumps(finite_json(body), indent=indent, allow_nan=False) + "\n")
        return True

    def footer(self) -> str:
        """One Markdown line naming the machine and the load, for text reports."""
        m, meta = self.machine, self.meta()
        flag = "" if self.valid else " **INVALID: machine busy at start**"
        return (
            f"\n_Measured {self.started} on {m['cpu_count']} × {m['cpu_model']}, torch {m['torch']}, "
            f"ray {m['ray']}; 1-min load {meta['load_average_1m']['start']} at start, "
            f"{meta['load_average_1m']['end']} at end._{flag}\n"
        )

    def write_text(self, path: Path, text: str) -> bool:
        """Write a Markdown report with :meth:`footer` appended, atomically; False when refused."""
        if not self.may_write(str(path)):
            return False
        _atomic_write(Path(path), text.rstrip("\n") + "\n" + self.footer())
        return True


def finite_json(value: Any) -> Any:  # noqa: ANN401
    """``value`` with every non-finite float (NaN, ±inf) in its dicts, lists and tuples as None."""
    if isinstance(value, float):  # numpy's float64 is a float too
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def fmt_number(value: float | None, spec: str = ".3f") -> str:
    """``value`` formatted for a Markdown table; "—" for a missing or non-finite one (null in JSON)."""
    if value is None or not math.isfinite(value):
        return "—"
    return format(value, spec)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

"""What every bench records beside its numbers, and the rule that keeps a busy machine's numbers out.

Start a :class:`BenchRun` first thing in a bench's ``main`` and write results through it::

    run = BenchRun()
    ...  # measure
    run.write_json(OUT, result)  # adds result["meta"]; refuses when the machine was busy

``meta`` holds the machine (CPU count and model, OS, Python, torch, Ray and numpy versions), the
1-minute load average at the start and at the end, the CPU time other work took while the bench ran
(``other_cpu``) and ``valid``. A run whose load average at the start exceeds the CPU count measured
a shared machine: its timings are not figures, so nothing is written (one line says why) unless
``BENCH_FORCE=1``, and then the result says ``"valid": false``.

The load average at the start cannot see work that starts later (a test suite launched beside an
hour-long bench), and the one at the end counts the bench's own threads. So the run also measures
what everything *outside* its own process tree took: the machine's busy CPU time less the tree's
(Ray's workers included). Above :data:`OTHER_SHARE_MAX` of the machine the result is still written,
with ``"valid": false`` and ``invalid_reason`` saying how much was taken: the numbers exist, and the
mark keeps them out of figures.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import threading
import time
import weakref
from importlib import metadata
from pathlib import Path
from typing import Any

#: set to 1 to write a result measured on a busy machine anyway (marked "valid": false)
FORCE_ENV = "BENCH_FORCE"
#: the largest share of the machine's CPU time that other work may take while a bench runs before
#: its timings are marked invalid: one busy core of two is 0.5; this idle VM's own daemons take ~0.01
OTHER_SHARE_MAX = 0.10
#: shorter runs get no ``other_share``: over a fraction of a second the two clocks' ticks dominate
_OTHER_MIN_WALL_S = 1.0


def load_average_1m() -> float:
    return round(os.getloadavg()[0], 2)


def load_fields(start: float) -> dict[str, float]:
    """The 1-min load average at a run's start (given) and now, its end: two flat numbers under the
    names every result uses (``meta`` and the per-row records alike), so a reader of any result finds
    the load where it looks for it. The names carry no digit: readers that look for a key
    ``load[_a-z]*`` (the project's before-stop check) found none in ``load_average_1m_start``."""
    return {"load_average_start": start, "load_average_end": load_average_1m()}


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


def other_cpu_reading(wall: float, own: float, other: float, cores: int) -> dict[str, float | None]:
    """An ``other_cpu`` record: wall, own and other CPU seconds, and ``other_share``, other work's CPU
    time over the machine's (wall × CPUs); None for runs shorter than a second."""
    share = other / (wall * cores) if wall >= _OTHER_MIN_WALL_S else None
    return {
        "wall_s": round(wall, 1),
        "own_cpu_s": round(own, 1),
        "other_cpu_s": round(other, 1),
        "other_share": None if share is None else round(share, 3),
    }


def summed_other_cpu(readings: list[dict[str, Any]], cores: int) -> dict[str, float | None]:
    """Several runs' ``other_cpu`` records as one, as if the runs were one run of their summed wall
    time (a comparison of many runs, each metered on its own)."""
    return other_cpu_reading(
        sum(r["wall_s"] for r in readings),
        sum(r["own_cpu_s"] for r in readings),
        sum(r["other_cpu_s"] for r in readings),
        cores,
    )


class CpuMeter:
    """CPU seconds (user + system) of this process and every descendant, Ray's workers included.

    Two lower bounds of the same quantity, and the larger one is taken (so the meter errs towards
    counting the bench's own work as other work, never the reverse):
    * **sampled:** Ray Train's worker processes exit after each fit, taking their CPU time with them
      (they are the raylet's children, not ours, so ``RUSAGE_CHILDREN`` never sees them while the
      raylet lives, nor after Ray's shutdown kills it): a thread samples the process tree every
      ``interval`` seconds and keeps each process's last reading, so a process that exits loses at
      most its last interval;
    * **reaped:** the live tree's readings plus ``RUSAGE_CHILDREN``, the kernel's exact total of
      every descendant this process reaped (``subprocess.run``'s children). Sampling alone lost most
      of a 1-2 s subprocess to its interval: ``bench.import_costs``, whose work is such
      interpreters, read 15 % of its own CPU time as other work on an idle machine.
    """

    def __init__(self, interval: float = 1.0) -> None:
        import psutil

        self._root = psutil.Process()
        self._seen: dict[tuple[int, float], float] = {}
        self._alive: set[tuple[int, float]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = interval
        self._reaped0 = reaped_children_cpu_s()
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="cpu-meter", daemon=True)
        self._thread.start()

    def sample(self) -> None:
        import psutil

        procs = [self._root]
        with contextlib.suppress(psutil.Error):
            procs += self._root.children(recursive=True)
        readings = {}
        for p in procs:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    readings[(p.pid, p.create_time())] = t.user + t.system
            except psutil.Error:  # exited between listing and reading
                continue
        with self._lock:
            self._seen.update(readings)
            self._alive = set(readings)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def total(self) -> float:
        """CPU seconds so far (a fresh sample first): the larger of the two lower bounds."""
        self.sample()
        reaped = reaped_children_cpu_s() - self._reaped0
        with self._lock:
            sampled = sum(self._seen.values())
            live = sum(self._seen[k] for k in self._alive)
        return max(sampled, live + reaped)

    def stop(self) -> None:
        self._stop.set()


def reaped_children_cpu_s() -> float:
    """CPU seconds of every descendant this process has reaped (each counting what it reaped)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy since boot (every state but idle and iowait;
    ``steal``, time a hypervisor gave to other guests, counts as busy: the bench did not get it)."""
    import psutil

    t = psutil.cpu_times()
    return sum(v for k, v in t._asdict().items() if k not in ("idle", "iowait", "guest", "guest_nice"))


class OtherCpu:
    """The CPU time other work took over an interval: the machine's busy time less this process
    tree's (:class:`CpuMeter`). A tree process that exits loses at most its last sampling interval,
    which errs towards counting the bench's own work as other work, never the reverse."""

    def __init__(self, meter: CpuMeter | None = None) -> None:
        self.meter = meter if meter is not None else CpuMeter()
        self._owned = meter is None
        self._t0 = time.monotonic()
        self._busy0 = busy_cpu_s()
        self._own0 = self.meter.total()

    def reading(self) -> dict[str, float | None]:
        """``wall_s``, ``own_cpu_s``, ``other_cpu_s`` since the start, and ``other_share``: other
        work's CPU time over the machine's (wall × CPUs); None for runs shorter than a second."""
        wall = time.monotonic() - self._t0
        own = self.meter.total() - self._own0
        other = max(0.0, busy_cpu_s() - self._busy0 - own)
        return other_cpu_reading(wall, own, other, os.cpu_count() or 1)

    def stop(self) -> None:
        if self._owned:
            self.meter.stop()


class BenchRun:
    """One bench run: the machine, the load average at its start and the CPU time other work takes
    while it runs (:class:`OtherCpu`), checked when writing."""

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
        self.other = OtherCpu()
        weakref.finalize(self, self.other.stop)  # the meter's thread ends with the run

    @property
    def busy_at_start(self) -> bool:
        """More runnable processes than CPUs when the bench started."""
        return self.load_start > (self.machine["cpu_count"] or 1)

    @property
    def invalid_reason(self) -> str | None:
        """Why this run's timings are not figures (None when they are)."""
        return self._reason(self.other.reading())

    def _reason(self, reading: dict[str, float | None]) -> str | None:
        """:attr:`invalid_reason` for one :meth:`OtherCpu.reading` (a caller that also records the
        reading passes the same one, so the reason and the recorded share agree)."""
        if self.busy_at_start:
            return f"load average {self.load_start} at start exceeds {self.machine['cpu_count']} CPUs"
        share = reading["other_share"]
        if share is not None and share > OTHER_SHARE_MAX:
            return (
                f"other work took {share:.0%} of the CPU time while the bench ran "
                f"(over {OTHER_SHARE_MAX:.0%}: run benches alone)"
            )
        return None

    @property
    def valid(self) -> bool:
        """False when the machine was busy at the start, or other work took more than
        :data:`OTHER_SHARE_MAX` of it while the bench ran."""
        return self.invalid_reason is None

    def meta(self) -> dict[str, Any]:
        reading = self.other.reading()
        reason = self._reason(reading)
        return {
            "machine": self.machine,
            "started": self.started,
            **load_fields(self.load_start),
            "other_cpu": reading,
            "valid": reason is None,
            **({"invalid_reason": reason} if reason else {}),
            # seconds spent waiting for the load to fall to the CPU count before the start (not a load)
            **({"settle_wait_s": self.waited_s} if self.waited_s >= 1 else {}),
        }

    def may_write(self, what: str) -> bool:
        """Whether to write ``what``. A machine busy at the start: no, unless forced (prints why).
        Other work during the run: yes, marked invalid (prints why): the bench has already run."""
        if not self.busy_at_start:
            reason = self.invalid_reason
            if reason is not None:
                print(f"bench: {reason}: {what} written, marked invalid", flush=True)
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
        # is written as null (the stages' own json_safe), so every result parses as standard JSON,
        # not only with Python's json
        from stages.common.storage import json_safe

        _atomic_write(Path(path), json.dumps(json_safe(body), indent=indent, allow_nan=False) + "\n")
        return True

    def footer(self) -> str:
        """One Markdown line naming the machine and the load, for text reports."""
        m, meta = self.machine, self.meta()
        reason = meta.get("invalid_reason")
        flag = f" **INVALID: {reason}**" if reason else ""
        return (
            f"\n_Measured {self.started} on {m['cpu_count']} × {m['cpu_model']}, torch {m['torch']}, "
            f"ray {m['ray']}; 1-min load {meta['load_average_start']} at start, "
            f"{meta['load_average_end']} at end{_other_clause(meta['other_cpu'])}._{flag}\n"
        )

    def write_text(self, path: Path, text: str) -> bool:
        """Write a Markdown report with :meth:`footer` appended, atomically; False when refused."""
        if not self.may_write(str(path)):
            return False
        _atomic_write(Path(path), text.rstrip("\n") + "\n" + self.footer())
        return True


def _other_clause(reading: dict[str, float | None]) -> str:
    share = reading["other_share"]
    return "" if share is None else f"; other work {share:.0%} of the CPU time"


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

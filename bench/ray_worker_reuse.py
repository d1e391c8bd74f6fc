"""Does an actor land in one of the idle workers Ray prestarts, or start a new process?

Ray Train's controller and workers are actors; on a 2-core machine each new Python process costs
about a second before its imports (bench/SPEED.md). A local Ray instance prestarts one idle worker
per CPU. This probe asks, for a job started with and without a job-level ``runtime_env`` (the
stages pass one: PYTHONPATH, OMP_NUM_THREADS, a setup hook), whether an actor created with a given
``runtime_env`` runs in one of those prestarted processes, and how long it takes to answer its first
call. The actors import nothing, so the times are process start-up and scheduling only.

Each job runs in its own interpreter (one ``ray.init`` per process)::

    python -m bench.ray_worker_reuse

Writes ``bench/results/ray_worker_reuse.{json,md}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench._meta import BenchRun

RESULTS = Path(__file__).parent / "results"

#: the job-level runtime_env of each case (``None``: none); the stages' has env vars and a setup hook
JOBS: dict[str, dict[str, Any] | None] = {
    "job without runtime_env": None,
    "job with env_vars {FOO: 1}": {"env_vars": {"FOO": "1"}},
}
#: the actor's own runtime_env in each probe (``None``: none)
ACTORS: dict[str, dict[str, Any] | None] = {
    "no runtime_env": None,
    "env_vars {}": {"env_vars": {}},
    "env_vars {FOO: 1} (the second job's own)": {"env_vars": {"FOO": "1"}},
    "env_vars {BAR: 1} (any other variable, as Ray Train's controller adds)": {"env_vars": {"BAR": "1"}},
}

# Runs in a fresh interpreter: prints one JSON line per actor probe.
_PROBE = r"""
import json, os, sys, time
import psutil, ray
job, actors = json.loads(sys.argv[1]), json.loads(sys.argv[2])
kw = {} if job is None else {"runtime_env": job}
ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", **kw)

def idle():
    return {p.pid for p in psutil.process_iter(["cmdline"]) if "ray::IDLE" in " ".join(p.info["cmdline"] or [])}

t0 = time.monotonic()
while len(idle()) < 2 and time.monotonic() - t0 < 30:  # the prestarted workers (one per CPU)
    time.sleep(0.5)
time.sleep(2)

@ray.remote(num_cpus=0)
class Probe:
    def pid(self):
        return os.getpid()

handles = []
for name, env in actors.items():
    before = idle()
    t = time.perf_counter()
    a = Probe.options(**({} if env is None else {"runtime_env": env})).remote()
    pid = ray.get(a.pid.remote())
    handles.append(a)  # kept alive: a reused worker must not return to the pool for the next probe
    print(json.dumps({"actor": name, "reused_prestarted": pid in before, "first_call_s": round(time.perf_counter() - t, 3), "idle_before": len(before)}))
ray.shutdown()
"""


def probe(job: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One job's actor probes, run in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(job), json.dumps(ACTORS)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def markdown(res: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "# Ray: do actors use the workers Ray prestarts?",
        "",
        "A local instance (2 CPUs) prestarts one idle worker per CPU. Per job configuration, actors "
        "that import nothing are created one after another (each kept alive) and asked for their "
        "process id; `reused` says whether it was one of the idle prestarted workers just before. "
        "Written by `python -m bench.ray_worker_reuse`.",
        "",
        "| job | actor's runtime_env | idle workers before | reused a prestarted worker | first call (s) |",
        "|---|---|---|---|---|",
    ]
    for job, rows in res.items():
        for r in rows:
            lines.append(
                f"| {job} | {r['actor']} | {r['idle_before']} | {'yes' if r['reused_prestarted'] else 'no'} "
                f"| {r['first_call_s']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    run = BenchRun(settle_s=60)
    res = {name: probe(job) for name, job in JOBS.items()}
    out = RESULTS / "ray_worker_reuse.json"
    if run.write_json(out, {"jobs": res}):
        run.write_text(out.with_suffix(".md"), markdown(res))
    print(markdown(res) + run.footer())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

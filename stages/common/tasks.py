"""Independent runs of a stage (fine-tunes per label fraction, seed and init) as Ray tasks.

A stage that trains many small models one after another uses one node's cores, however many
nodes a cluster has. On 2 cores the gain is small: two 1-thread medical fine-tunes side by side
give 1.13x the throughput of one 2-thread run, and the stage went 172.5 s -> 162.9 s (README,
performance). ``map_runs`` sends each run to a Ray task of ``threads`` CPUs when a Ray session is at
hand (``make repro``'s shared instance, ``pipelines.run``, a cluster job: ``RAY_ADDRESS`` set or
Ray already initialised) and runs them in this process otherwise, where starting a local instance
(about 8 s here) would cost more than it saves on a stage started alone. The results come back in
the order of ``items`` either way, so what a stage writes does not depend on the path taken.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from stages.common.progress import progress
from stages.common.schema import RayCfg

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741 - the item type
R = TypeVar("R")


def ray_session_at_hand() -> bool:
    """Whether this process already has, or has been pointed at, a Ray session."""
    if os.environ.get("RAY_ADDRESS"):
        return True
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return ray.is_initialized()


def tasks_wanted(setting: bool | None, scale: str) -> bool:
    """Whether a stage's runs go to Ray tasks: ``setting`` (``finetune.ray_tasks``) when given, else
    at every scale but ``tiny`` (its sub-second runs would wait longer for a task's worker process
    to start and import than they take), and in both cases only with a Ray session at hand."""
    return (scale != "tiny" if setting is None else setting) and ray_session_at_hand()


def _call(fn: Callable[[S, I], R], shared: S, item: I, threads: int) -> R:
    import torch

    torch.set_num_threads(threads)
    return fn(shared, item)


def importable(fn: Callable[..., R]) -> Callable[..., R]:
    """``fn`` as its module's importable name knows it: a function of a stage run as
    ``python -m stages.<stage>`` (as DVC runs it) lives in ``__main__``, which cloudpickle would
    ship by value with every global it reaches, and some of those (loaded modules' state) do not
    pickle. Tasks then import the stage's module by its real name instead."""
    if fn.__module__ != "__main__":
        return fn
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is None or not spec.name:  # a script file: nothing to import it by
        return fn
    return getattr(importlib.import_module(spec.name), fn.__qualname__)


def _slots(threads: int) -> int:
    """Runs in flight at once: the session's CPUs over ``threads``, capped by this machine's cores
    when the session is one node (a local instance may declare more CPUs than the machine has)."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    if len([n for n in ray.nodes() if n.get("Alive")]) <= 1:
        cpus = min(cpus, os.cpu_count() or 1)
    return max(1, cpus // threads)


def map_runs(
    fn: Callable[[S, I], R],
    shared: S,
    items: Sequence[I],
    *,
    ray_cfg: RayCfg,
    enabled: bool = True,
    threads: int = 1,
    desc: str = "runs",
    on_done: Callable[[int, R], None] | None = None,
    cost: Callable[[I], float] | None = None,
) -> list[R]:
    """``[fn(shared, item) for item in items]``, as Ray tasks of ``threads`` CPUs when enabled and a
    session is at hand (``shared`` is put in the object store once), else in this process.

    ``fn`` must be a module-level function (tasks import it by name). Progress is reported under
    ``desc``; ``on_done(index, result)`` is called in this process as each run finishes (in
    completion order), e.g. to log it. ``cost(item)``, a rough relative run time, makes tasks start
    longest first, so the longest runs do not start last and leave one core working alone.
    """
    as_tasks = enabled and len(items) > 1 and ray_session_at_hand()
    order = list(range(len(items)))
    if cost is not None:
        order.sort(key=lambda k: -cost(items[k]))
    runs = (
        _as_tasks(fn, shared, items, order, ray_cfg, threads) if as_tasks else _in_process(fn, shared, items)
    )
    results: dict[int, R] = {}
    # with costs, the time left follows them: longest first, item counts would overstate it
    work = None if cost is None else (lambda out: cost(items[out[0]]), sum(cost(i) for i in items))
    for k, result in progress(runs, desc, total=len(items), work=work):
        results[k] = result
        if on_done is not None:
            on_done(k, result)
    return [results[k] for k in range(len(items))]


def _in_process(fn: Callable[[S, I], R], shared: S, items: Sequence[I]) -> Iterator[tuple[int, R]]:
    for k, item in enumerate(items):
        yield k, fn(shared, item)


def _as_tasks(
    fn: Callable[[S, I], R], shared: S, items: Sequence[I], order: list[int], ray_cfg: RayCfg, threads: int
) -> Iterator[tuple[int, R]]:
    import ray

    from stages.common.ray_session import init_ray

    init_ray(ray_cfg)  # connects to RAY_ADDRESS, or keeps the session this process already has
    task = ray.remote(_call).options(num_cpus=threads, num_gpus=1 if ray_cfg.use_gpu else 0)
    shared_ref, remote_fn = ray.put(shared), importable(fn)
    slots = _slots(threads)
    pending: dict[Any, int] = {}
    queue = list(order)
    while queue or pending:
        while queue and len(pending) < slots:  # keep the cores, and only them, busy
            k = queue.pop(0)
            pending[task.remote(remote_fn, shared_ref, items[k], threads)] = k
        done, _ = ray.wait(list(pending), num_returns=1)
        k = pending.pop(done[0])
        yield k, ray.get(done[0])

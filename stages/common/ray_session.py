"""One way to get a Ray session: an existing cluster if told, else an embedded local instance."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: every Ray worker imports this module for its setup hook
    from stages.common.schema import RayCfg

REPO_ROOT = str(Path(__file__).resolve().parents[2])


def init_ray(cfg: RayCfg) -> None:
    """Connect to ``RAY_ADDRESS`` / ``ray.address`` or start a local instance (idempotent).

    The dashboard stays off unless the recipe enables it, and then binds to localhost by default.
    """
    import ray

    if not ray.is_initialized():
        _start_or_connect(cfg)
    configure_ray_data()


def worker_pythonpath() -> str:
    """This checkout first, then the driver's own ``PYTHONPATH``: a runtime_env variable replaces the
    worker's, so packages the driver finds through ``PYTHONPATH`` (a cluster image's extra site dir,
    a user's plug-in folder) would otherwise be missing in every worker."""
    # relative entries are the driver's (a worker starts elsewhere): made absolute here
    own = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys([REPO_ROOT, *own]))


def _start_or_connect(cfg: RayCfg) -> None:
    import ray

    # Workers must import `domains` and `stages`: on a local instance point them at this checkout;
    # under `ray job submit --working-dir .` the job's working dir already provides them.
    runtime_env = {
        "env_vars": {
            "PYTHONPATH": worker_pythonpath(),
            "OMP_NUM_THREADS": "1",
            # Ray Train's print patch both tees a worker's print to its stderr and logs it, so every
            # progress line reached the driver (and DVC's log) twice
            "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
        },
        "worker_process_setup_hook": "stages.common.ray_session.setup_worker",
    }
    # Ray Train's controller collects reports when it polls the workers (every 2 s by default);
    # a shorter poll keeps short epochs from waiting on it.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    address = os.environ.get("RAY_ADDRESS") or cfg.address
    common = dict(runtime_env=runtime_env, logging_level=logging.WARNING, log_to_driver=True)
    if address:
        # Ray's own helpers inside the job (Ray Train's placement-group cleaner uses the state API)
        # find the cluster by auto-detection, which fails when a machine runs several Ray instances.
        runtime_env["env_vars"]["RAY_ADDRESS"] = address
        ray.init(address=address, **common)
        return
    ray.init(
        # "local": a new instance even when `ray start` left another one on this machine (Ray's
        # default would join that one, the newest, whatever its resources)
        address="local",
        num_cpus=local_num_cpus(cfg),
        include_dashboard=cfg.include_dashboard,
        dashboard_host=cfg.dashboard_host,
        **common,
    )


#: Ray Train's placement-group cleaner: a detached actor that asks the state API every second
#: whether the Train controller still lives, to remove its placement group if it died ungracefully.
#: The state API comes with the dashboard, which is off by default, so every ask logged a warning:
#: hundreds per pretraining stage on `make repro`'s screen (347 in one demo). Ray still removes a
#: job's placement groups when the job ends.
PG_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
#: Where Ray's state and job clients look for the cluster before they auto-detect one.
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"


def setup_worker() -> None:
    """Every Ray worker of a stage runs this first (``runtime_env``'s ``worker_process_setup_hook``).

    * The placement-group cleaner's warnings go down to errors only (see ``PG_CLEANER_LOGGER``).
    * Ray's own state-API clients in the job are pointed at the cluster this worker belongs to.
      Without an address they auto-detect one from ``/tmp/ray/ray_current_cluster``, which names the
      last head ``ray start`` started, alive or not: after a stopped or killed one (a test's, or a
      user's cluster session) the cleaner's every ask waited 40 s for a dead GCS, and Ray Train's
      controller then waited out the cleaner's 12 s stop timeout at the end of every training run:
      12 of the 22 s a trivial two-worker ``fit()`` took on an embedded instance.
    """
    import ray

    logging.getLogger(PG_CLEANER_LOGGER).setLevel(logging.ERROR)
    os.environ.setdefault(API_SERVER_ENV, ray.get_runtime_context().gcs_address)


def local_num_cpus(cfg: RayCfg) -> int:
    """Logical CPUs of an embedded instance: ``ray.num_cpus``, else the workers plus two for Ray Data."""
    return cfg.num_cpus or int(cfg.num_workers * cfg.cpus_per_worker) + 2


def configure_ray_data() -> None:
    """Ray Data settings every stage shares (the driver's context travels with its datasets).

    Measured on Ray 2.60, 2 CPUs (see README, performance): the V2 Parquet reader's listing task
    waits 1.5-4 s per read even for one local file (the V1 reader: 0.2-0.3 s), and the default
    hash shuffle starts aggregator actors on every ``groupby`` (4.5 s for 100 rows; the
    sort-based pull shuffle 0.15 s, and 3.2 s against 5.2 s at 1M rows).
    """
    import ray
    from ray.data.context import ShuffleStrategy

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # they drown the stage's own output in DVC logs
    ctx.use_datasource_v2 = False
    ctx.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED


def shard_names():  # noqa: ANN201 - a ray.data FilenameProvider (imported lazily)
    """Deterministic Parquet names for ``Dataset.write_parquet``: identical inputs give identical
    outputs, so DVC's hash of a stage's output only changes when its content does."""
    from ray.data.datasource import FilenameProvider

    class ShardNames(FilenameProvider):
        def get_filename_for_block(self, block, write_uuid: str, task_index: int, block_index: int) -> str:  # noqa: ANN001
            return f"part-{task_index:05d}-{block_index:05d}.parquet"

    return ShardNames()

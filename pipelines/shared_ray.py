"""Run a command (``dvc repro``) inside one local Ray instance that all its stages share.

``python -m pipelines.shared_ray [--params params.yaml] -- dvc repro``

Under DVC every stage is its own process, and without this each stage that uses Ray starts and
stops its own local instance: about 8 s to start and 1.5 s to stop on the 2-core machine, against
0.5 s to connect to a running one. Here the instance starts once, with the most logical CPUs any
recipe under ``domains:`` would start on its own (``init_ray``'s rule), the command gets its address
as ``RAY_ADDRESS`` (which ``init_ray`` follows), and the instance stops when the command ends, also
after Ctrl-C, once the command has finished its own clean-up. With ``RAY_ADDRESS`` already set (a
cluster of your own), the command runs against that cluster and nothing is started.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from stages.common.config import ConfigError, load_recipe, read_yaml
from stages.common.ray_session import configure_ray_data, local_num_cpus

PIPELINES = Path(__file__).resolve().parent


def recipes_num_cpus(params: str) -> int:
    """The most logical CPUs any recipe under ``params``' ``domains:`` would give its own instance."""
    names = list(read_yaml(Path(params)).get("domains") or {})
    return max(
        (local_num_cpus(load_recipe(PIPELINES / f"{n}.yaml", params, []).ray) for n in names), default=3
    )


def wait(proc: subprocess.Popen) -> int:
    """The command's exit code. Ctrl-C reaches the command too (same process group): wait for it to
    finish its own clean-up rather than pull Ray from under it; SIGTERM is passed on."""
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.shared_ray")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        parser.error("no command given (e.g. -- dvc repro)")
    if os.environ.get("RAY_ADDRESS"):
        return wait(subprocess.Popen(cmd))
    import ray

    try:
        num_cpus = recipes_num_cpus(args.params)
    except ConfigError as e:  # the same one line the first stage would print, before Ray starts
        print(f"shared_ray: error: {e}", file=sys.stderr)
        return 2
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    configure_ray_data()
    try:
        address = ray.get_runtime_context().gcs_address
        print(
            f"shared_ray: one local Ray instance ({num_cpus} CPUs) at {address} for: {' '.join(cmd)}",
            flush=True,
        )
        return wait(subprocess.Popen(cmd, env={**os.environ, "RAY_ADDRESS": address}))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
